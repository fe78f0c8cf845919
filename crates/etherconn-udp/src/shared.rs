//! [`SharedEtherConn`]: one MAC and VLAN stack whose UDP datagrams the relay thread hands to
//! the conns bound on it (the conns, and binding them, are in `sharing`).

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use etherconn_core::wire::{EtherType, MacAddr, VlanTag};
use etherconn_core::L4RecvKey;
use etherconn_relay::{EtherConn, EtherConnConfig};
use etherconn_relay::{L4Demux, PacketRelay, RelayError, RxQueue};

use crate::config::{NextHopResolver, SharedConfig};
use crate::error::UdpError;
use crate::neighbour::{NeighbourAddr, Neighbours};
use crate::rudp::{EPHEMERAL_COUNT, EPHEMERAL_FIRST};

/// One L2 endpoint (a MAC and a VLAN stack) carrying many UDP endpoints, the
/// [`SharingRUdpConn`](crate::SharingRUdpConn)s bound on it.
///
/// The relay thread demultiplexes received UDP datagrams by destination address and port
/// ([`L4RecvKey`]: the exact IP first, then the wildcard `0.0.0.0` / `::` of that family)
/// straight into the bound conn's queue; datagrams no conn is bound to go to the default
/// receiver if there is one ([`bind_default`](Self::bind_default)), else are counted in
/// `RelayStats::rx_l4_miss`. Non-UDP frames (ARP, ICMP, IP fragments) go to the
/// [`ether_conn`](Self::ether_conn)'s own queue.
///
/// Held in an `Arc`: every bound conn keeps its endpoint alive.
pub struct SharedEtherConn {
    pub(crate) ether: EtherConn,
    pub(crate) resolver: NextHopResolver,
    next_port: AtomicU32,
    /// The neighbour responder its conns' addresses are registered in, if any.
    neighbours: Option<Neighbours>,
    /// The first address bound of each family (IPv4, IPv6): where the resolver's requests
    /// come from.
    sources: Arc<[OnceLock<IpAddr>; 2]>,
}

impl fmt::Debug for SharedEtherConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedEtherConn")
            .field("mac", &self.ether.local_mac())
            .field("vlans", &self.ether.vlans())
            .field("bound", &self.bound())
            .finish_non_exhaustive()
    }
}

impl SharedEtherConn {
    /// Registers the L2 endpoint `mac` + `vlans` (outermost first, at most three) on `relay` for
    /// ARP, IPv4 and IPv6 (those of them the relay receives: an IPv4-only relay gives an
    /// IPv4-only endpoint), with UDP demultiplexing on.
    ///
    /// Errors: [`UdpError::Relay`] when the relay refuses the endpoint
    /// (`RelayError::EtherTypeFiltered` when it receives neither IPv4 nor IPv6).
    pub fn new(
        relay: Arc<dyn PacketRelay>,
        mac: MacAddr,
        vlans: &[VlanTag],
        config: SharedConfig,
    ) -> Result<Arc<SharedEtherConn>, UdpError> {
        let wanted = [EtherType::ARP, EtherType::IPV4, EtherType::IPV6];
        let received: Vec<EtherType> = wanted
            .into_iter()
            .filter(|&et| relay.receives(et))
            .collect();
        let ip = |et: &EtherType| *et == EtherType::IPV4 || *et == EtherType::IPV6;
        // With no IP family left the full list goes, and the relay's refusal names one.
        let ethertypes = if received.iter().any(ip) {
            &received[..]
        } else {
            &wanted[..]
        };
        let ether_config = EtherConnConfig::default()
            .ethertypes(ethertypes)
            .recv_multicast(config.recv_multicast)
            .queue_depth(config.queue_depth)
            .replace(config.replace)
            .l4_demux(true);
        let ether = EtherConn::new(relay, mac, vlans, ether_config)?;
        let Some(nd) = config.neighbours.clone() else {
            return Self::from_ether_conn(ether, config.resolver);
        };
        nd.serve(&ether)?;
        let sources: Arc<[OnceLock<IpAddr>; 2]> = Arc::default();
        let resolver = if config.resolves_with_neighbours() {
            let (nd, sources) = (nd.clone(), Arc::clone(&sources));
            let vlans = ether.vlans().to_vec();
            Arc::new(move |dst: IpAddr| {
                let src = *sources[usize::from(dst.is_ipv6())].get()?;
                nd.resolve(mac, &vlans, src, dst)
            })
        } else {
            config.resolver
        };
        Self::build(ether, resolver, Some(nd), sources)
    }

    /// Shares an existing `EtherConn`, which must have been created with
    /// `EtherConnConfig::l4_demux` on ([`UdpError::InvalidConfig`] otherwise).
    pub fn from_ether_conn(
        ether: EtherConn,
        resolver: NextHopResolver,
    ) -> Result<Arc<SharedEtherConn>, UdpError> {
        if ether.l4_demux().is_none() {
            return Err(UdpError::InvalidConfig(
                "a SharedEtherConn needs an EtherConn created with l4_demux",
            ));
        }
        Self::build(ether, resolver, None, Arc::default())
    }

    fn build(
        ether: EtherConn,
        resolver: NextHopResolver,
        neighbours: Option<Neighbours>,
        sources: Arc<[OnceLock<IpAddr>; 2]>,
    ) -> Result<Arc<SharedEtherConn>, UdpError> {
        // Start the ephemeral search at a different port per endpoint.
        let start = u32::from(ether.local_mac().0[5]) * 61;
        Ok(Arc::new(SharedEtherConn {
            ether,
            resolver,
            next_port: AtomicU32::new(start),
            neighbours,
            sources,
        }))
    }

    pub(crate) fn demux(&self) -> &L4Demux {
        self.ether
            .l4_demux()
            .expect("checked in from_ether_conn: the EtherConn has l4_demux")
    }

    /// Registers `ip` in the neighbour responder, if there is one and `ip` is specified.
    pub(crate) fn answer_for(&self, ip: IpAddr) -> Result<Option<Box<NeighbourAddr>>, UdpError> {
        let Some(nd) = &self.neighbours else {
            return Ok(None);
        };
        if ip.is_unspecified() {
            return Ok(None);
        }
        let addr = nd.add(self.ether.local_mac(), self.ether.vlans(), ip)?;
        // Set once: a plain load for every send's resolver after that.
        let _ = self.sources[usize::from(ip.is_ipv6())].set(ip);
        Ok(Some(Box::new(addr)))
    }

    pub(crate) fn register_ephemeral(
        &self,
        ip: IpAddr,
        queue: &Arc<RxQueue>,
    ) -> Result<u16, UdpError> {
        for _ in 0..EPHEMERAL_COUNT {
            let n = self.next_port.fetch_add(1, Ordering::Relaxed) % EPHEMERAL_COUNT;
            // n < 16384, so the sum stays below 65536.
            let port = EPHEMERAL_FIRST + n as u16;
            match self
                .demux()
                .register(L4RecvKey::udp(ip, port), queue, false)
            {
                Ok(()) => return Ok(port),
                Err(RelayError::L4KeyInUse(_)) => continue,
                Err(e) => return Err(UdpError::Relay(e)),
            }
        }
        Err(UdpError::NoFreePort(ip))
    }

    /// The underlying `EtherConn`: its own queue receives the endpoint's non-UDP frames (ARP
    /// requests for its addresses, ICMP, fragments), and it can send any frame from the
    /// endpoint's MAC and VLANs.
    pub fn ether_conn(&self) -> &EtherConn {
        &self.ether
    }

    /// The endpoint's MAC.
    pub fn local_mac(&self) -> MacAddr {
        self.ether.local_mac()
    }

    /// The endpoint's VLAN stack, outermost first.
    pub fn vlans(&self) -> &[VlanTag] {
        self.ether.vlans()
    }

    /// The relay the endpoint is on.
    pub fn relay(&self) -> &Arc<dyn PacketRelay> {
        self.ether.relay()
    }

    /// The neighbour responder the endpoint's addresses are answered by
    /// ([`SharedConfig::neighbours`](crate::SharedConfig::neighbours)).
    pub fn neighbours(&self) -> Option<&Neighbours> {
        self.neighbours.as_ref()
    }

    /// Number of UDP endpoints bound.
    pub fn bound(&self) -> usize {
        self.demux().len()
    }
}
