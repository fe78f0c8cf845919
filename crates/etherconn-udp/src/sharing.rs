//! [`SharedEtherConn`] and [`SharingRUdpConn`]: many UDP endpoints over one MAC and VLAN stack.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use etherconn_core::classify::UdpInfo;
use etherconn_core::wire::{EtherType, MacAddr, VlanTag};
use etherconn_core::L4RecvKey;
use etherconn_relay::{EtherConn, EtherConnConfig, MemoryBudget, Reservation};
use etherconn_relay::{
    L4Demux, PacketRelay, RelayError, RxFrame, RxQueue, Watchable, WatchedQueue,
};

use crate::config::{NextHopResolver, SharedConfig, SharingConfig};
use crate::error::UdpError;
use crate::neighbour::{NeighbourAddr, Neighbours};
use crate::rudp::{check_dscp, EPHEMERAL_COUNT, EPHEMERAL_FIRST};
use crate::rx::{self, deliver, RecvMeta};
use crate::tx::{max_payload, Egress};
use etherconn_relay::timeouts::Timeouts;

/// One L2 endpoint (a MAC and a VLAN stack) carrying many UDP endpoints, the
/// [`SharingRUdpConn`]s bound on it.
///
/// The relay thread demultiplexes received UDP datagrams by destination address and port
/// ([`L4RecvKey`]: the exact IP first, then the wildcard `0.0.0.0` / `::` of that family)
/// straight into the bound conn's queue; datagrams no conn is bound to are counted in
/// `RelayStats::rx_l4_miss`. Non-UDP frames (ARP, ICMP, IP fragments) go to the
/// [`ether_conn`](Self::ether_conn)'s own queue.
///
/// Held in an `Arc`: every bound conn keeps its endpoint alive.
pub struct SharedEtherConn {
    ether: EtherConn,
    resolver: NextHopResolver,
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
    /// Registers the L2 endpoint `mac` + `vlans` (outermost first, at most two) on `relay` for
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

    fn demux(&self) -> &L4Demux {
        self.ether
            .l4_demux()
            .expect("checked in from_ether_conn: the EtherConn has l4_demux")
    }

    /// Binds a UDP endpoint to `local` on this L2 endpoint.
    ///
    /// An unspecified IP (`0.0.0.0`, `::`) receives datagrams to that port for any IP of its
    /// family that no conn bound exactly; port 0 picks a free ephemeral port (49152 to 65535,
    /// see [`SharingRUdpConn::local_addr`]).
    ///
    /// Errors: [`UdpError::AddrInUse`] when a conn is already bound to `local` (unless
    /// `config.replace`), [`UdpError::NoFreePort`], [`UdpError::Relay`] once the relay stopped
    /// or when the queue would take the relay past its memory budget
    /// ([`RelayError::OverBudget`]) or for a queue depth of 0 ([`RelayError::InvalidConfig`]),
    /// [`UdpError::InvalidConfig`] for a DSCP above 63.
    pub fn bind(
        self: &Arc<Self>,
        local: SocketAddr,
        config: SharingConfig,
    ) -> Result<SharingRUdpConn, UdpError> {
        check_dscp(config.dscp)?;
        RxQueue::check_depth(config.queue_depth)?;
        if self.ether.relay().dispatcher().is_stopped() {
            return Err(UdpError::Relay(RelayError::Stopped));
        }
        // Reserved before the queue is allocated: a refusal allocates nothing.
        let reservation = self
            .ether
            .relay()
            .dispatcher()
            .budget()
            .reserve(MemoryBudget::conn_cost(config.queue_depth))?;
        let queue = Arc::new(RxQueue::new(config.queue_depth));
        // Set before the queue is registered: no martian can reach it before the flag does.
        queue.set_drop_martians(!config.accept_martians);
        let port = if local.port() == 0 {
            self.register_ephemeral(local.ip(), &queue)?
        } else {
            let key = L4RecvKey::udp(local.ip(), local.port());
            self.demux()
                .register(key, &queue, config.replace)
                .map_err(|e| match e {
                    RelayError::L4KeyInUse(k) => UdpError::AddrInUse(k),
                    e => UdpError::Relay(e),
                })?;
            local.port()
        };
        let neighbour = self.answer_for(local.ip())?;
        Ok(SharingRUdpConn {
            neighbour,
            shared: Arc::clone(self),
            queue,
            local: SocketAddr::new(local.ip(), port),
            timeouts: Timeouts::default(),
            ttl: config.ttl,
            dscp: config.dscp,
            _budget: reservation,
        })
    }

    /// Registers `ip` in the neighbour responder, if there is one and `ip` is specified.
    fn answer_for(&self, ip: IpAddr) -> Result<Option<Box<NeighbourAddr>>, UdpError> {
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

    fn register_ephemeral(&self, ip: IpAddr, queue: &Arc<RxQueue>) -> Result<u16, UdpError> {
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

/// One UDP endpoint on a [`SharedEtherConn`], shaped like [`std::net::UdpSocket`]; made by
/// [`SharedEtherConn::bind`].
///
/// It sends from the shared endpoint's MAC and VLAN stack, with the shared endpoint's
/// next-hop resolver, and receives the datagrams the relay demultiplexed to its address,
/// except, as a host, those with a martian address or port 0 (see
/// [`RUdpConn`](crate::RUdpConn) and [`SharingConfig::accept_martians`]).
/// Dropping it unbinds the address. An idle conn costs its struct plus a receive queue of
/// [`SharingConfig::queue_depth`] slots: about 1.7 KiB at the default depth of 4 (see the
/// crate docs).
pub struct SharingRUdpConn {
    shared: Arc<SharedEtherConn>,
    queue: Arc<RxQueue>,
    local: SocketAddr,
    timeouts: Timeouts,
    ttl: u8,
    dscp: u8,
    /// The queue's share of the relay's memory budget, given back when the conn drops.
    _budget: Reservation,
    /// The conn's address in the neighbour responder, answered for while the conn lives
    /// (boxed: a conn without one pays a pointer, not the handle).
    neighbour: Option<Box<NeighbourAddr>>,
}

/// A `SharingRUdpConn` can be waited on with others in a
/// [`ReadySet`](etherconn_relay::ReadySet).
impl Watchable for SharingRUdpConn {
    fn watched_queue(&self) -> WatchedQueue {
        WatchedQueue::new(self.queue.clone())
    }

    fn rx_queue(&self) -> &RxQueue {
        &self.queue
    }
}

impl fmt::Debug for SharingRUdpConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharingRUdpConn")
            .field("local", &self.local)
            .field("mac", &self.shared.local_mac())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl SharingRUdpConn {
    fn egress(&self) -> Egress<'_> {
        Egress {
            relay: self.shared.ether.relay(),
            src_mac: self.shared.ether.local_mac(),
            vlans: self.shared.ether.vlans(),
            ttl: self.ttl,
            dscp: self.dscp,
            resolver: &self.shared.resolver,
        }
    }

    /// The key the conn is registered under.
    pub fn key(&self) -> L4RecvKey {
        L4RecvKey::udp(self.local.ip(), self.local.port())
    }

    /// The local address and port (the chosen port when bound to port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// The shared L2 endpoint the conn is bound on.
    pub fn shared(&self) -> &Arc<SharedEtherConn> {
        &self.shared
    }

    /// The largest payload one datagram can carry (no fragmentation).
    pub fn max_payload(&self) -> usize {
        max_payload(
            &**self.shared.ether.relay(),
            self.shared.ether.vlans(),
            self.local.is_ipv6(),
        )
    }

    /// Datagrams waiting to be received.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether the neighbour responder answers for the conn's address
    /// ([`SharedConfig::neighbours`](crate::SharedConfig::neighbours)).
    pub fn answered_by_neighbours(&self) -> bool {
        self.neighbour.is_some()
    }

    /// Sends `payload` to `dst` from the local address (the unspecified address when bound to
    /// a wildcard IP: use [`send_to_from`](Self::send_to_from) to choose one); returns the
    /// payload length. Errors as for [`RUdpConn::send_to`](crate::RUdpConn::send_to).
    pub fn send_to(&self, payload: &[u8], dst: SocketAddr) -> io::Result<usize> {
        self.egress()
            .send(payload, self.local, dst, self.timeouts.write_wait())
    }

    /// Like [`send_to`](Self::send_to) from another source address and port.
    pub fn send_to_from(
        &self,
        payload: &[u8],
        src: SocketAddr,
        dst: SocketAddr,
    ) -> io::Result<usize> {
        self.egress()
            .send(payload, src, dst, self.timeouts.write_wait())
    }

    /// Sends several datagrams; returns how many were sent before the first failure, and that
    /// failure only when none was sent.
    pub fn send_batch(&self, datagrams: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
        self.egress()
            .send_batch(datagrams, self.local, self.timeouts.write_wait())
    }

    fn next(&self, wait: Option<Duration>) -> io::Result<(RxFrame, UdpInfo)> {
        loop {
            let rx = self.queue.pop(wait)?;
            // The demultiplexer queues only UDP datagrams; anything else would not be ours.
            if let Some(udp) = rx.info.udp() {
                return Ok((rx, udp));
            }
        }
    }

    /// Polls for a datagram: copies it into `buf` when one waits, or registers the task to be
    /// woken. The building block of the async API (feature `tokio`).
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        loop {
            let rx = match self.queue.poll_pop(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => return Poll::Pending,
            };
            // The demultiplexer queues only UDP datagrams; anything else would not be ours.
            if let Some(udp) = rx.info.udp() {
                let meta = deliver(&rx, &udp, buf);
                return Poll::Ready(Ok((meta.len, meta.remote)));
            }
        }
    }

    /// Sends without waiting for room in the transmit path (`WouldBlock` when there is none),
    /// whatever the conn's blocking mode.
    pub fn try_send_to(&self, payload: &[u8], dst: SocketAddr) -> io::Result<usize> {
        self.egress()
            .send(payload, self.local, dst, Some(Duration::ZERO))
    }

    /// Receives one datagram's payload into `buf`; returns its length and the sender. Bytes
    /// that do not fit in `buf` are discarded.
    ///
    /// Errors: `WouldBlock` in non-blocking mode when nothing waits, `TimedOut` when the read
    /// timeout expires, `NotConnected` once the relay stopped.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (rx, udp) = self.next(self.timeouts.read_wait())?;
        let meta = deliver(&rx, &udp, buf);
        Ok((meta.len, meta.remote))
    }

    /// Receives up to `min(bufs.len(), meta.len())` datagrams: waits for the first, then takes
    /// those already queued without waiting; returns how many.
    pub fn recv_batch(&self, bufs: &mut [&mut [u8]], meta: &mut [RecvMeta]) -> io::Result<usize> {
        rx::recv_batch(
            bufs,
            meta,
            || self.next(self.timeouts.read_wait()),
            || self.next(Some(Duration::ZERO)).ok(),
        )
    }

    /// Sets the receive timeout (`None`: block forever); a zero duration is an error.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeouts.set_read(timeout)
    }

    /// Sets the send timeout (`None`: block forever); a zero duration is an error.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeouts.set_write(timeout)
    }

    /// The receive timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.timeouts.read())
    }

    /// The send timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.timeouts.write())
    }

    /// Makes receives and sends return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.timeouts.set_nonblocking(nonblocking);
        Ok(())
    }
}

impl Drop for SharingRUdpConn {
    fn drop(&mut self) {
        self.shared.demux().deregister(&self.key(), &self.queue);
        self.queue.close();
    }
}
