//! Neighbour discovery for emulated endpoints: one [`Neighbours`] per relay answers ARP
//! requests and IPv6 neighbour solicitations (and pings) for every address its endpoints hold,
//! and resolves their next hops with ARP requests and neighbour solicitations sent from each
//! endpoint's own MAC and address, caching the answers for all of them.
//!
//! How frames reach it, with no thread, kernel socket or key per endpoint: it is a member of
//! the broadcast group of each VLAN stack it serves for ARP and IPv6 (requests and
//! solicitations sent to `ff:ff:ff:ff:ff:ff` and to the solicited-node groups
//! `33:33:ff:xx:xx:xx`), and each served conn diverts the ARP, ICMP and ICMPv6 frames sent
//! to its own MAC to the responder's queue (`EtherConn::divert_neighbour_frames`: unicast
//! requests, answers to the resolver, pings). One thread answers them all and sends the
//! retries. See docs/neighbours.md.
//!
//! The modules build on each other in this order: `config`, `table`, `cache`, `frames`
//! (leaves), `shared` (all four), `worker` (shared), this one.

mod cache;
mod config;
mod frames;
mod shared;
mod table;
mod worker;

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use etherconn_core::key::VlanIds;
use etherconn_core::wire::vlan::VlanStack;
use etherconn_core::wire::{MacAddr, VlanTag};
use etherconn_relay::{EtherConn, NeighbourTap, PacketRelay};

pub use config::{NeighbourConfig, NeighbourStats};

use cache::{Asker, Known};
use shared::Shared;
use table::AddrKey;

use crate::error::UdpError;

/// The ARP and IPv6 neighbour discovery responder and resolver of one relay's endpoints: it
/// answers ARP requests and neighbour solicitations (broadcast, solicited-node and unicast)
/// and pings for every address registered on it, on that address's VLAN stack, and resolves
/// next hops from each endpoint's own MAC and address into one cache every endpoint shares,
/// with one thread per relay and nothing per endpoint but a table entry (docs/neighbours.md).
/// Cheap to clone (a handle); the thread stops when the last clone and the last address
/// registered ([`NeighbourAddr`]) are dropped, or the relay stops.
///
/// # Example: two endpoints that know each other only by IP
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use etherconn_relay::{LoopbackRelay, PacketRelay};
/// use etherconn_core::wire::VlanTag;
/// use etherconn_udp::{NeighbourConfig, Neighbours, RUdpConfig, RUdpConn};
///
/// let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
/// // One responder and resolver for every endpoint of the relay.
/// let nd = Neighbours::new(relay.clone(), NeighbourConfig::default())?;
/// let cfg = RUdpConfig::default().neighbours(&nd);
/// let vlans = [VlanTag::dot1q(100).unwrap()];
/// let a = RUdpConn::new(relay.clone(), "02:00:00:00:00:01".parse()?, &vlans,
///                       "[2001:db8::1]:5000".parse()?, cfg.clone())?;
/// let b = RUdpConn::new(relay.clone(), "02:00:00:00:00:02".parse()?, &vlans,
///                       "[2001:db8::2]:6000".parse()?, cfg)?;
/// b.set_read_timeout(Some(Duration::from_secs(1)))?;
///
/// // No resolver closure, no static table: a's first send solicits b's MAC (a neighbour
/// // solicitation to b's solicited-node group on VLAN 100), which the responder answers
/// // for b.
/// a.send_to(b"hello", b.local_addr()?)?;
/// let mut buf = [0u8; 64];
/// let (n, from) = b.recv_from(&mut buf)?;
/// assert_eq!((&buf[..n], from), (&b"hello"[..], a.local_addr()?));
/// assert_eq!(nd.lookup(&vlans, "2001:db8::2".parse()?), Some(b.local_mac()));
/// println!("{}", nd.stats()); // na_replies=1 requests=1 learned=1 ...
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
#[derive(Clone)]
pub struct Neighbours {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.entry.queue.close();
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = worker {
            let _ = w.join();
        }
    }
}

impl fmt::Debug for Neighbours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Neighbours")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn stack(vlans: &[VlanTag]) -> Result<VlanStack, UdpError> {
    VlanStack::from_slice(vlans)
        .map_err(|_| UdpError::InvalidConfig(etherconn_core::wire::vlan::TOO_MANY_TAGS))
}

impl Neighbours {
    /// Starts a responder and resolver on `relay` (one thread).
    ///
    /// Errors: [`UdpError::InvalidConfig`] for a zero retry interval or queue depth,
    /// [`UdpError::Io`] when the thread cannot be started.
    pub fn new(
        relay: Arc<dyn PacketRelay>,
        config: NeighbourConfig,
    ) -> Result<Neighbours, UdpError> {
        if config.retry_interval.is_zero() || config.queue_depth == 0 {
            return Err(UdpError::InvalidConfig(
                "the retry interval and the queue depth must not be zero",
            ));
        }
        if relay.dispatcher().is_stopped() {
            return Err(UdpError::Relay(etherconn_relay::RelayError::Stopped));
        }
        let shared = Arc::new(Shared::new(relay, config));
        let for_worker = Arc::clone(&shared);
        let worker = std::thread::Builder::new()
            .name("etherconn-nd".into())
            .spawn(move || worker::run(for_worker))
            .map_err(UdpError::Io)?;
        Ok(Neighbours {
            handle: Arc::new(Handle {
                shared,
                worker: Mutex::new(Some(worker)),
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Answers ARP (IPv4) or neighbour solicitations (IPv6) for `ip` at `mac` on `vlans` until
    /// the returned registration is dropped. Several registrations of one address at one MAC
    /// are counted (the address is answered until the last goes).
    ///
    /// Answering unicast requests to `mac` also needs the conn that receives them to divert
    /// its ARP and ICMP frames here ([`serve`](Self::serve)); `RUdpConn` and
    /// `SharedEtherConn` do both when their config names this responder.
    ///
    /// Errors: [`UdpError::NeighbourInUse`] when another MAC holds `ip` on these VLANs,
    /// [`UdpError::InvalidConfig`] for an unspecified or multicast IP, a group MAC or more than
    /// three tags, [`UdpError::Relay`] once the relay stopped.
    pub fn add(
        &self,
        mac: MacAddr,
        vlans: &[VlanTag],
        ip: IpAddr,
    ) -> Result<NeighbourAddr, UdpError> {
        let key = self.shared().add(mac, &stack(vlans)?, ip)?;
        Ok(NeighbourAddr {
            handle: Arc::clone(&self.handle),
            key,
        })
    }

    /// Makes `conn` divert the ARP, ICMP and ICMPv6 frames it receives to this responder, which
    /// then answers unicast requests to its MAC and learns the answers sent to it; its own
    /// reader no longer sees them.
    ///
    /// Errors: [`UdpError::Relay`] when the conn already diverts them to another responder.
    pub fn serve(&self, conn: &EtherConn) -> Result<(), UdpError> {
        let tap: NeighbourTap = self.shared().entry.clone();
        conn.divert_neighbour_frames(&tap)?;
        Ok(())
    }

    /// A next-hop resolver for an endpoint at `mac` on `vlans` with address `src`, for
    /// [`RUdpConfig::resolver`](crate::RUdpConfig::resolver) or
    /// [`SharedConfig::resolver`](crate::SharedConfig::resolver): the destination's MAC
    /// from the shared cache, or resolved by a request from the endpoint (waiting up to
    /// [`NeighbourConfig::resolve_wait`]). Destinations of the other IP family get `None`.
    ///
    /// It resolves the destination itself, which must be on the link; for one behind a
    /// router, wrap it: `move |dst| if on_link(dst) { r(dst) } else { r(gateway) }`.
    ///
    /// Errors: [`UdpError::InvalidConfig`] for more than three tags.
    pub fn resolver(
        &self,
        mac: MacAddr,
        vlans: &[VlanTag],
        src: IpAddr,
    ) -> Result<Arc<dyn Fn(IpAddr) -> Option<MacAddr> + Send + Sync>, UdpError> {
        let asker = Asker {
            mac,
            vlans: stack(vlans)?,
            ip: src,
        };
        let shared = Arc::clone(self.shared());
        let wait = shared.config.resolve_wait;
        Ok(Arc::new(move |dst: IpAddr| {
            shared.resolve(&asker, dst, wait)
        }))
    }

    /// Resolves `target` from the endpoint at `mac` on `vlans` with address `src`, waiting up
    /// to [`NeighbourConfig::resolve_wait`]; what [`resolver`](Self::resolver)'s closures call.
    pub fn resolve(
        &self,
        mac: MacAddr,
        vlans: &[VlanTag],
        src: IpAddr,
        target: IpAddr,
    ) -> Option<MacAddr> {
        let asker = Asker {
            mac,
            vlans: stack(vlans).ok()?,
            ip: src,
        };
        self.shared()
            .resolve(&asker, target, self.shared().config.resolve_wait)
    }

    /// The MAC cached for `ip` on `vlans`, without sending anything (fresh or awaiting
    /// confirmation).
    pub fn lookup(&self, vlans: &[VlanTag], ip: IpAddr) -> Option<MacAddr> {
        let key: AddrKey = (VlanIds::from_tags(vlans)?, ip);
        match self.shared().cache.known(&key, self.shared().lifetime_ms()) {
            Known::Fresh(m) | Known::Stale(m) => Some(m),
            Known::Unknown => None,
        }
    }

    /// Whether `ip` on `vlans` is being resolved.
    pub fn is_resolving(&self, vlans: &[VlanTag], ip: IpAddr) -> bool {
        VlanIds::from_tags(vlans).is_some_and(|ids| self.shared().cache.is_pending(&(ids, ip)))
    }

    /// The counters, with the number of addresses answered for and cached now.
    pub fn stats(&self) -> NeighbourStats {
        let s = self.shared();
        let mut stats = s.counters.snapshot();
        stats.addresses = s.table.len() as u64;
        stats.cached = s.cache.len() as u64;
        stats
    }

    /// Resolutions under way.
    pub fn resolving(&self) -> usize {
        self.shared().cache.pending_len()
    }

    /// Whether `self` and `other` are the same responder.
    pub fn same_as(&self, other: &Neighbours) -> bool {
        Arc::ptr_eq(&self.handle.shared, &other.handle.shared)
    }
}

/// An address a [`Neighbours`] answers for, until this is dropped; made by
/// [`Neighbours::add`] (and held by conns whose config names a responder). It keeps the
/// responder running: a conn is answered for as long as it lives, whatever became of the
/// `Neighbours` it was configured with.
pub struct NeighbourAddr {
    handle: Arc<Handle>,
    key: AddrKey,
}

impl NeighbourAddr {
    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.key.1
    }
}

impl fmt::Debug for NeighbourAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NeighbourAddr({} on {:?})", self.key.1, self.key.0)
    }
}

impl Drop for NeighbourAddr {
    fn drop(&mut self) {
        self.handle.shared.remove(self.key);
    }
}
