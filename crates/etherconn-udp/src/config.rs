//! Options of [`RUdpConn`](crate::RUdpConn), [`SharedEtherConn`](crate::SharedEtherConn) and
//! [`SharingRUdpConn`](crate::SharingRUdpConn), and the next-hop MAC resolver they share.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use etherconn_core::wire::MacAddr;

use crate::neighbour::Neighbours;

/// Maps a destination IP to the MAC of the next hop (the destination itself on the same link,
/// a gateway otherwise); `None` when it is not known, which fails the send with
/// `io::ErrorKind::AddrNotAvailable`.
///
/// It is called once per datagram sent to a unicast destination, on the sending thread, so it
/// should be a table lookup, not a network exchange. Multicast destinations never reach it
/// (see [`multicast_mac`]), nor does `255.255.255.255` (always `ff:ff:ff:ff:ff:ff`).
pub type NextHopResolver = Arc<dyn Fn(IpAddr) -> Option<MacAddr> + Send + Sync>;

/// The default resolver: the broadcast MAC for every destination.
///
/// Every station on the link (and VLAN) receives such frames, so it works without any
/// neighbour table, at the cost of flooding.
pub fn broadcast_resolver() -> NextHopResolver {
    Arc::new(|_| Some(MacAddr::BROADCAST))
}

/// The Ethernet group address an IP multicast or limited-broadcast destination maps to:
/// `01:00:5e` and the low 23 bits of an IPv4 group (RFC 1112), `33:33` and the low 32 bits of
/// an IPv6 group (RFC 2464), `ff:ff:ff:ff:ff:ff` for `255.255.255.255`; `None` for unicast.
///
/// ```
/// use etherconn_udp::multicast_mac;
/// let v4 = multicast_mac("239.129.1.2".parse().unwrap()).unwrap();
/// assert_eq!(v4.to_string(), "01:00:5e:01:01:02");
/// let v6 = multicast_mac("ff02::1:2".parse().unwrap()).unwrap();
/// assert_eq!(v6.to_string(), "33:33:00:01:00:02");
/// assert!(multicast_mac("192.0.2.1".parse().unwrap()).is_none());
/// ```
pub fn multicast_mac(ip: IpAddr) -> Option<MacAddr> {
    match ip {
        IpAddr::V4(a) if a.is_broadcast() => Some(MacAddr::BROADCAST),
        IpAddr::V4(a) if a.is_multicast() => {
            let o = a.octets();
            Some(MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]))
        }
        IpAddr::V6(a) if a.is_multicast() => {
            let o = a.octets();
            Some(MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]]))
        }
        _ => None,
    }
}

/// Default TTL / hop limit of sent datagrams.
pub const DEFAULT_TTL: u8 = 255;

/// Default receive queue depth of a [`RUdpConn`](crate::RUdpConn), in datagrams.
pub const DEFAULT_RUDP_QUEUE_DEPTH: usize = 16;

/// Default receive queue depth of a [`SharingRUdpConn`](crate::SharingRUdpConn), in
/// datagrams: small, so that 100,000 idle endpoints fit in a few hundred MiB.
pub const DEFAULT_SHARING_QUEUE_DEPTH: usize = 4;

/// Default depth of a [`SharedEtherConn`](crate::SharedEtherConn)'s own queue (non-UDP
/// frames such as ARP).
pub const DEFAULT_SHARED_QUEUE_DEPTH: usize = 16;

struct ResolverDebug<'a>(&'a NextHopResolver);

impl fmt::Debug for ResolverDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<resolver {:p}>", Arc::as_ptr(self.0))
    }
}

/// Options of a [`RUdpConn`](crate::RUdpConn).
#[derive(Clone)]
#[non_exhaustive]
pub struct RUdpConfig {
    /// Accept every UDP datagram the conn's `EtherConn` receives, whatever its destination
    /// address and port (a DHCP client needs this: offers go to an address it does not have
    /// yet). Off: datagrams not addressed to the local IP and port are dropped.
    pub accept_any: bool,
    /// TTL / hop limit of sent datagrams. Default 255.
    pub ttl: u8,
    /// DSCP of sent datagrams (0 to 63). Default 0.
    pub dscp: u8,
    /// Receive broadcast/multicast frames on the conn's VLAN stack too; datagrams in them
    /// addressed to the local port are then accepted.
    pub recv_multicast: bool,
    /// Receive queue depth in frames (allocated up front; a full queue drops and counts).
    pub queue_depth: usize,
    /// The next-hop MAC for unicast destinations. Default [`broadcast_resolver`].
    pub resolver: NextHopResolver,
    /// Also receive the UDP datagrams a host drops: a martian source or destination address
    /// (`255.255.255.255`, multicast, loopback, `0.0.0.0` except to `255.255.255.255`, class
    /// E; IPv6 multicast, `::1`, `::`, IPv4-mapped) or port 0. The rules are
    /// [`etherconn_core::martian`]'s. Off by default: the relay drops them before the conn's
    /// queue and counts them in `RelayStats::rx_martian`, so that a forged sender cannot make
    /// the conn's owner answer a broadcast or a group. On only for a tool that must see forged
    /// traffic (a capture, a test of another stack's filters).
    pub accept_martians: bool,
    /// The neighbour responder and resolver of the relay ([`RUdpConfig::neighbours`]).
    pub neighbours: Option<Neighbours>,
    /// Whether `neighbours` also resolves next hops (replacing `resolver`).
    resolve_with_neighbours: bool,
}

impl Default for RUdpConfig {
    fn default() -> Self {
        RUdpConfig {
            accept_any: false,
            accept_martians: false,
            ttl: DEFAULT_TTL,
            dscp: 0,
            recv_multicast: false,
            queue_depth: DEFAULT_RUDP_QUEUE_DEPTH,
            resolver: broadcast_resolver(),
            neighbours: None,
            resolve_with_neighbours: false,
        }
    }
}

impl fmt::Debug for RUdpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RUdpConfig")
            .field("accept_any", &self.accept_any)
            .field("ttl", &self.ttl)
            .field("dscp", &self.dscp)
            .field("recv_multicast", &self.recv_multicast)
            .field("queue_depth", &self.queue_depth)
            .field("resolver", &ResolverDebug(&self.resolver))
            .field("accept_martians", &self.accept_martians)
            .field("neighbours", &self.neighbours.is_some())
            .finish()
    }
}

impl RUdpConfig {
    /// These options with a neighbour responder and resolver (one per relay, shared by its
    /// conns): the conn's address is answered for (ARP or neighbour solicitations, broadcast
    /// and unicast, and pings) as long as the conn lives, and its next hops are resolved with
    /// `nd` from the conn's MAC and address, replacing `resolver`. Calling
    /// [`resolver`](Self::resolver) afterwards keeps the answering and puts that resolver
    /// back (wrap `nd.resolver(..)` in it to route through a gateway).
    pub fn neighbours(mut self, nd: &Neighbours) -> Self {
        self.neighbours = Some(nd.clone());
        self.resolve_with_neighbours = true;
        self
    }

    /// Whether the conn's next hops are resolved by `neighbours`.
    pub(crate) fn resolves_with_neighbours(&self) -> bool {
        self.resolve_with_neighbours && self.neighbours.is_some()
    }

    /// These options with `accept_any` set.
    pub fn accept_any(mut self, on: bool) -> Self {
        self.accept_any = on;
        self
    }

    /// These options with `accept_martians` set.
    pub fn accept_martians(mut self, on: bool) -> Self {
        self.accept_martians = on;
        self
    }

    /// These options with the TTL / hop limit.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// These options with the DSCP (0 to 63).
    pub fn dscp(mut self, dscp: u8) -> Self {
        self.dscp = dscp;
        self
    }

    /// These options with `recv_multicast` set.
    pub fn recv_multicast(mut self, on: bool) -> Self {
        self.recv_multicast = on;
        self
    }

    /// These options with the receive queue depth.
    pub fn queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth;
        self
    }

    /// These options with a next-hop resolver.
    pub fn resolver(
        mut self,
        resolver: impl Fn(IpAddr) -> Option<MacAddr> + Send + Sync + 'static,
    ) -> Self {
        self.resolver = Arc::new(resolver);
        self.resolve_with_neighbours = false;
        self
    }
}

/// Options of a [`SharedEtherConn`](crate::SharedEtherConn): the L2 endpoint its
/// [`SharingRUdpConn`](crate::SharingRUdpConn)s send and receive through.
#[derive(Clone)]
#[non_exhaustive]
pub struct SharedConfig {
    /// Receive broadcast/multicast frames on the endpoint's VLAN stack too (UDP in them goes
    /// to the conn bound to its destination address, or to the wildcard one of its port).
    pub recv_multicast: bool,
    /// Depth of the endpoint's own queue, which receives its non-UDP frames (ARP, ICMP).
    pub queue_depth: usize,
    /// Take over keys another conn holds on the relay instead of failing.
    pub replace: bool,
    /// The next-hop MAC for unicast destinations, used by every conn bound on the endpoint.
    /// Default [`broadcast_resolver`].
    pub resolver: NextHopResolver,
    /// The neighbour responder and resolver of the relay ([`SharedConfig::neighbours`]).
    pub neighbours: Option<Neighbours>,
    /// Whether `neighbours` also resolves next hops (replacing `resolver`).
    resolve_with_neighbours: bool,
}

impl Default for SharedConfig {
    fn default() -> Self {
        SharedConfig {
            recv_multicast: false,
            queue_depth: DEFAULT_SHARED_QUEUE_DEPTH,
            replace: false,
            resolver: broadcast_resolver(),
            neighbours: None,
            resolve_with_neighbours: false,
        }
    }
}

impl fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedConfig")
            .field("recv_multicast", &self.recv_multicast)
            .field("queue_depth", &self.queue_depth)
            .field("replace", &self.replace)
            .field("resolver", &ResolverDebug(&self.resolver))
            .field("neighbours", &self.neighbours.is_some())
            .finish()
    }
}

impl SharedConfig {
    /// These options with a neighbour responder and resolver: the address of every conn bound
    /// on the endpoint (but `0.0.0.0` / `::`) is answered for while the conn lives, and next
    /// hops are resolved with `nd` from the endpoint's MAC and the first address bound of the
    /// destination's family, replacing `resolver` (see [`RUdpConfig::neighbours`]).
    pub fn neighbours(mut self, nd: &Neighbours) -> Self {
        self.neighbours = Some(nd.clone());
        self.resolve_with_neighbours = true;
        self
    }

    /// Whether the endpoint's next hops are resolved by `neighbours`.
    pub(crate) fn resolves_with_neighbours(&self) -> bool {
        self.resolve_with_neighbours && self.neighbours.is_some()
    }

    /// These options with `recv_multicast` set.
    pub fn recv_multicast(mut self, on: bool) -> Self {
        self.recv_multicast = on;
        self
    }

    /// These options with the depth of the non-UDP queue.
    pub fn queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth;
        self
    }

    /// These options with `replace` set.
    pub fn replace(mut self, on: bool) -> Self {
        self.replace = on;
        self
    }

    /// These options with a next-hop resolver.
    pub fn resolver(
        mut self,
        resolver: impl Fn(IpAddr) -> Option<MacAddr> + Send + Sync + 'static,
    ) -> Self {
        self.resolver = Arc::new(resolver);
        self.resolve_with_neighbours = false;
        self
    }
}

/// Options of one [`SharingRUdpConn`](crate::SharingRUdpConn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharingConfig {
    /// Receive queue depth in datagrams (allocated up front). Default
    /// [`DEFAULT_SHARING_QUEUE_DEPTH`].
    pub queue_depth: usize,
    /// TTL / hop limit of sent datagrams. Default 255.
    pub ttl: u8,
    /// DSCP of sent datagrams (0 to 63). Default 0.
    pub dscp: u8,
    /// Take the address over from a conn already bound to it instead of failing with
    /// [`UdpError::AddrInUse`](crate::UdpError::AddrInUse).
    pub replace: bool,
    /// Also receive the UDP datagrams a host drops (martian addresses, port 0); see
    /// [`RUdpConfig::accept_martians`]. Per conn: the other conns on the shared endpoint keep
    /// dropping them.
    pub accept_martians: bool,
}

impl Default for SharingConfig {
    fn default() -> Self {
        SharingConfig {
            queue_depth: DEFAULT_SHARING_QUEUE_DEPTH,
            ttl: DEFAULT_TTL,
            dscp: 0,
            replace: false,
            accept_martians: false,
        }
    }
}

impl SharingConfig {
    /// These options with the receive queue depth.
    pub fn queue_depth(mut self, depth: usize) -> Self {
        self.queue_depth = depth;
        self
    }

    /// These options with the TTL / hop limit.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// These options with the DSCP (0 to 63).
    pub fn dscp(mut self, dscp: u8) -> Self {
        self.dscp = dscp;
        self
    }

    /// These options with `replace` set.
    pub fn replace(mut self, on: bool) -> Self {
        self.replace = on;
        self
    }

    /// These options with `accept_martians` set.
    pub fn accept_martians(mut self, on: bool) -> Self {
        self.accept_martians = on;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Option<String> {
        multicast_mac(s.parse().unwrap()).map(|m| m.to_string())
    }

    #[test]
    fn group_macs() {
        // Only the low 23 bits of an IPv4 group survive: 224.128.0.1 and 224.0.0.1 share a MAC.
        assert_eq!(m("224.128.0.1").as_deref(), Some("01:00:5e:00:00:01"));
        assert_eq!(m("224.0.0.1").as_deref(), Some("01:00:5e:00:00:01"));
        assert_eq!(m("239.255.255.250").as_deref(), Some("01:00:5e:7f:ff:fa"));
        assert_eq!(m("255.255.255.255").as_deref(), Some("ff:ff:ff:ff:ff:ff"));
        assert_eq!(m("ff02::1").as_deref(), Some("33:33:00:00:00:01"));
        assert_eq!(m("ff05::1:3").as_deref(), Some("33:33:00:01:00:03"));
        for unicast in ["10.0.0.255", "0.0.0.0", "2001:db8::1", "::", "fe80::1"] {
            assert_eq!(m(unicast), None, "{unicast}");
        }
    }

    #[test]
    fn defaults() {
        let c = RUdpConfig::default();
        assert_eq!((c.accept_any, c.ttl, c.dscp), (false, 255, 0));
        assert!(!c.accept_martians && !SharingConfig::default().accept_martians);
        assert_eq!(
            (c.resolver)("192.0.2.1".parse().unwrap()),
            Some(MacAddr::BROADCAST)
        );
        assert!(format!("{c:?}").contains("resolver"));
        assert_eq!(
            SharingConfig::default().queue_depth,
            DEFAULT_SHARING_QUEUE_DEPTH
        );
    }
}
