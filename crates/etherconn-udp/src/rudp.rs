//! [`RUdpConn`]: one UDP endpoint over an [`EtherConn`] of its own.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use etherconn_core::classify::UdpInfo;
use etherconn_core::wire::{EtherType, MacAddr, VlanTag};
use etherconn_relay::{EtherConn, EtherConnConfig};
use etherconn_relay::{PacketRelay, RxFrame, RxQueue, Watchable, WatchedQueue};

use crate::config::{multicast_mac, NextHopResolver, RUdpConfig};
use crate::error::UdpError;
use crate::neighbour::{NeighbourAddr, Neighbours};
use crate::peer::PeerState;
use crate::rx::{self, deliver, RecvMeta};
use crate::tx::{max_payload, Egress};
use etherconn_relay::timeouts::Timeouts;

/// First port of the ephemeral range (IANA, RFC 6335), used when binding port 0.
pub(crate) const EPHEMERAL_FIRST: u16 = 49152;
/// Number of ephemeral ports.
pub(crate) const EPHEMERAL_COUNT: u32 = 16384;

/// An ephemeral port for a conn with an L2 endpoint of its own, where no port can clash.
fn ephemeral_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % EPHEMERAL_COUNT;
    // n < 16384, so the sum stays below 65536.
    EPHEMERAL_FIRST + n as u16
}

pub(crate) fn check_dscp(dscp: u8) -> Result<(), UdpError> {
    if dscp > 63 {
        return Err(UdpError::InvalidConfig("DSCP above 63"));
    }
    Ok(())
}

fn ethertype_of(addr: SocketAddr) -> EtherType {
    if addr.is_ipv4() {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    }
}

/// A UDP endpoint with its own MAC and VLAN stack: an [`EtherConn`] plus an IP address and
/// port, shaped like [`std::net::UdpSocket`].
///
/// Sending adds UDP, IPv4/IPv6 (checksums, TTL, DSCP), VLAN tags and Ethernet headers, with the
/// next-hop MAC from the configured resolver (multicast and `255.255.255.255` destinations map
/// to their group MACs). Receiving returns datagrams addressed to the local address and port
/// (any datagram with [`RUdpConfig::accept_any`]); other frames the `EtherConn` gets are
/// dropped and counted in [`rx_filtered`](Self::rx_filtered). IP fragments are never
/// delivered: the relay does not reassemble, and counts them in `RelayStats::rx_fragments`.
///
/// Like a host's IP stack, the conn never receives a datagram with a martian source or
/// destination address or port 0 (the rules: [`etherconn_core::martian`]), nor any frame from
/// a group source MAC: the relay drops them before they reach the conn's queue and counts
/// them in `RelayStats::rx_martian` and `rx_group_source` (the relay's counters, not the
/// conn's). [`RUdpConfig::accept_martians`] lets the martian datagrams through.
///
/// Every call takes `&self`; the conn can be shared between threads (in an `Arc`).
pub struct RUdpConn {
    ether: EtherConn,
    local: SocketAddr,
    accept_any: bool,
    recv_multicast: bool,
    ttl: u8,
    dscp: u8,
    resolver: NextHopResolver,
    timeouts: Timeouts,
    rx_filtered: AtomicU64,
    /// The conn's address in the neighbour responder, answered for while the conn lives
    /// (boxed: a conn without one pays a pointer, not the handle).
    neighbour: Option<Box<NeighbourAddr>>,
    /// The connected peer and a peeked datagram.
    peer: PeerState,
    /// The responder and resolver choice, kept to move the conn's address.
    nd_config: Option<Box<(Neighbours, bool, NextHopResolver)>>,
}

/// An `RUdpConn` can be waited on with others in a
/// [`ReadySet`](etherconn_relay::ReadySet).
impl Watchable for RUdpConn {
    fn watched_queue(&self) -> WatchedQueue {
        self.ether.watched_queue()
    }

    fn rx_queue(&self) -> &RxQueue {
        self.ether.rx_queue()
    }
}

impl fmt::Debug for RUdpConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RUdpConn")
            .field("local", &self.local)
            .field("mac", &self.ether.local_mac())
            .field("vlans", &self.ether.vlans())
            .field("accept_any", &self.accept_any)
            .finish_non_exhaustive()
    }
}

impl RUdpConn {
    /// Creates an endpoint for `mac` and `vlans` (outermost first, at most three) on `relay`,
    /// bound to `local`. Port 0 picks an ephemeral port (see [`local_addr`](Self::local_addr));
    /// an unspecified IP (`0.0.0.0`, `::`) receives for any IP of its family and sends from
    /// the unspecified address (a DHCP client before it has a lease).
    ///
    /// The `EtherConn` registers only the EtherType of `local`'s family, so another conn can
    /// take ARP (or the other family) for the same MAC.
    ///
    /// Errors: [`UdpError::Relay`] when the relay refuses the L2 endpoint (MAC and VLANs taken,
    /// relay stopped, more than three tags), [`UdpError::InvalidConfig`] for a DSCP above 63.
    pub fn new(
        relay: Arc<dyn PacketRelay>,
        mac: MacAddr,
        vlans: &[VlanTag],
        local: SocketAddr,
        config: RUdpConfig,
    ) -> Result<RUdpConn, UdpError> {
        check_dscp(config.dscp)?;
        // A responder answers unicast ARP requests to the conn's MAC, and learns the replies
        // to its own requests: the conn receives ARP for it (and diverts it there).
        let ethertypes: &[EtherType] = match (config.neighbours.is_some(), local.is_ipv4()) {
            (true, true) => &[EtherType::IPV4, EtherType::ARP],
            _ => &[ethertype_of(local)],
        };
        let ether_config = EtherConnConfig::default()
            .ethertypes(ethertypes)
            .recv_multicast(config.recv_multicast)
            .queue_depth(config.queue_depth);
        let ether = EtherConn::new(relay, mac, vlans, ether_config)?;
        Self::from_ether_conn(ether, local, config)
    }

    /// Makes a UDP endpoint of an existing `EtherConn` (one with more EtherTypes, say, or the
    /// relay's default conn), bound to `local`.
    ///
    /// `config.queue_depth` is not used (the `EtherConn` has its queue);
    /// `config.recv_multicast` only decides whether broadcast/multicast datagrams to the local
    /// port are accepted; `config.accept_martians` is applied to the `EtherConn`'s queue. The
    /// conn takes over the `EtherConn`'s read and write timeouts and sets it blocking.
    ///
    /// Errors: [`UdpError::InvalidConfig`] when the `EtherConn` does not receive `local`'s IP
    /// version or demultiplexes UDP (`l4_demux`, which is what [`SharedEtherConn`] is for),
    /// or for a DSCP above 63.
    ///
    /// [`SharedEtherConn`]: crate::SharedEtherConn
    pub fn from_ether_conn(
        ether: EtherConn,
        local: SocketAddr,
        config: RUdpConfig,
    ) -> Result<RUdpConn, UdpError> {
        check_dscp(config.dscp)?;
        if ether.l4_demux().is_some() {
            return Err(UdpError::InvalidConfig(
                "the EtherConn hands UDP to its l4_demux queues; use SharedEtherConn",
            ));
        }
        let ethertype = ethertype_of(local);
        if !ether.keys().iter().any(|k| k.ethertype == ethertype) {
            return Err(UdpError::InvalidConfig(
                "the EtherConn does not receive the local address's IP version",
            ));
        }
        let timeouts = Timeouts::default();
        // The EtherConn never holds a zero timeout, so these cannot fail.
        let _ = timeouts.set_read(ether.read_timeout().unwrap_or(None));
        let _ = timeouts.set_write(ether.write_timeout().unwrap_or(None));
        let local = if local.port() == 0 {
            SocketAddr::new(local.ip(), ephemeral_port())
        } else {
            local
        };
        ether.rx_queue().set_drop_martians(!config.accept_martians);
        let mut resolver = config.resolver.clone();
        let nd_config = config.neighbours.as_ref().map(|nd| {
            let resolves = config.resolves_with_neighbours();
            Box::new((nd.clone(), resolves, config.resolver.clone()))
        });
        let neighbour = match &config.neighbours {
            Some(nd) => {
                nd.serve(&ether)?;
                let ip = local.ip();
                if config.resolves_with_neighbours() && !ip.is_unspecified() {
                    resolver = nd.resolver(ether.local_mac(), ether.vlans(), ip)?;
                }
                if ip.is_unspecified() {
                    None
                } else {
                    Some(Box::new(nd.add(ether.local_mac(), ether.vlans(), ip)?))
                }
            }
            None => None,
        };
        Ok(RUdpConn {
            ether,
            local,
            accept_any: config.accept_any,
            recv_multicast: config.recv_multicast,
            ttl: config.ttl,
            dscp: config.dscp,
            resolver,
            timeouts,
            rx_filtered: AtomicU64::new(0),
            neighbour,
            peer: PeerState::default(),
            nd_config,
        })
    }

    fn egress(&self) -> Egress<'_> {
        Egress {
            relay: self.ether.relay(),
            src_mac: self.ether.local_mac(),
            vlans: self.ether.vlans(),
            ttl: self.ttl,
            dscp: self.dscp,
            resolver: &self.resolver,
        }
    }

    /// The local address and port.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
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

    /// The underlying `EtherConn`, e.g. to send a non-UDP frame from the same MAC. Its read
    /// timeout and non-blocking mode are this conn's: set them here, not there.
    pub fn ether_conn(&self) -> &EtherConn {
        &self.ether
    }

    /// The largest payload one datagram from this conn can carry: the link's MTU on this
    /// conn's VLAN stack (or the relay's buffers, when smaller) less the IP and UDP headers,
    /// 1472 bytes over IPv4 on a 1500-byte MTU. Larger ones are refused, not fragmented.
    pub fn max_payload(&self) -> usize {
        max_payload(
            &**self.ether.relay(),
            self.ether.vlans(),
            self.local.is_ipv6(),
        )
    }

    /// Whether a neighbour responder answers for the conn's address
    /// ([`RUdpConfig::neighbours`]).
    pub fn answered_by_neighbours(&self) -> bool {
        self.neighbour.is_some()
    }

    /// Frames the conn received and dropped as not its own: non-UDP frames (IP fragments
    /// among them), and with `accept_any` off datagrams to another address or port.
    pub fn rx_filtered(&self) -> u64 {
        self.rx_filtered.load(Ordering::Relaxed)
    }

    /// Sends `payload` to `dst` (unicast, broadcast or multicast) from the local address;
    /// returns the payload length.
    ///
    /// Errors: `InvalidInput` when the payload exceeds [`max_payload`](Self::max_payload)
    /// ([`UdpError::TooLarge`]) or `dst` is of the other IP family; `AddrNotAvailable` when
    /// the resolver has no MAC for `dst`; `WouldBlock`/`TimedOut` when the transmit path stays
    /// full (non-blocking mode, write timeout); `NotConnected` once the relay stopped.
    pub fn send_to(&self, payload: &[u8], dst: SocketAddr) -> io::Result<usize> {
        self.egress()
            .send(payload, self.local, dst, self.timeouts.write_wait())
    }

    /// Like [`send_to`](Self::send_to) from another source address and port (any, e.g. a
    /// relay agent's or a spoofed one).
    pub fn send_to_from(
        &self,
        payload: &[u8],
        src: SocketAddr,
        dst: SocketAddr,
    ) -> io::Result<usize> {
        self.egress()
            .send(payload, src, dst, self.timeouts.write_wait())
    }

    /// Sends several datagrams, handing them to the relay in batches of
    /// [`BATCH_SIZE`](crate::BATCH_SIZE); returns how many were sent before the first failure,
    /// and that failure only when none was sent.
    pub fn send_batch(&self, datagrams: &[(&[u8], SocketAddr)]) -> io::Result<usize> {
        self.egress()
            .send_batch(datagrams, self.local, self.timeouts.write_wait())
    }

    /// The UDP layer of `rx` if the datagram is this conn's.
    fn accept(&self, rx: &RxFrame) -> Option<UdpInfo> {
        let udp = rx.info.udp()?;
        if !self.peer.admits(udp.remote) {
            return None;
        }
        if self.accept_any {
            return Some(udp);
        }
        let dst = udp.local;
        if dst.port() != self.local.port() || dst.is_ipv4() != self.local.is_ipv4() {
            return None;
        }
        let ip = dst.ip();
        let ours = ip == self.local.ip()
            || self.local.ip().is_unspecified()
            || (self.recv_multicast
                && (multicast_mac(ip).is_some() || rx.info.dst_mac().is_multicast()));
        ours.then_some(udp)
    }

    fn filtered(&self) {
        self.rx_filtered.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits for the next datagram of this conn, within one overall deadline however many
    /// foreign frames arrive meanwhile.
    fn next(&self) -> io::Result<(RxFrame, UdpInfo)> {
        if let Some(kept) = self.peer.take_peeked() {
            return Ok(kept);
        }
        let wait = self.timeouts.read_wait();
        let deadline = rx::ReadDeadline::start(wait);
        loop {
            let rx = match self.ether.recv_frame_timeout(deadline.left()) {
                // A deadline that ran out between two foreign frames is a timeout, not a
                // non-blocking miss.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !deadline.is_non_blocking() => {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                r => r?,
            };
            if let Some(udp) = self.accept(&rx) {
                return Ok((rx, udp));
            }
            self.filtered();
        }
    }

    /// Polls for a datagram: copies it into `buf` when one is ours, or registers the task to
    /// be woken. The building block of the async API (feature `tokio`).
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        if let Some((rx, udp)) = self.peer.take_peeked() {
            let meta = deliver(&rx, &udp, buf);
            return Poll::Ready(Ok((meta.len, meta.remote)));
        }
        loop {
            let rx = match self.ether.poll_recv_frame(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => return Poll::Pending,
            };
            if let Some(udp) = self.accept(&rx) {
                let meta = deliver(&rx, &udp, buf);
                return Poll::Ready(Ok((meta.len, meta.remote)));
            }
            self.filtered();
        }
    }

    /// Sends without waiting for room in the transmit path (`WouldBlock` when there is none),
    /// whatever the conn's blocking mode.
    pub fn try_send_to(&self, payload: &[u8], dst: SocketAddr) -> io::Result<usize> {
        self.egress()
            .send(payload, self.local, dst, Some(Duration::ZERO))
    }

    /// A datagram that is already queued, without waiting.
    fn next_queued(&self) -> Option<(RxFrame, UdpInfo)> {
        if let Some(kept) = self.peer.take_peeked() {
            return Some(kept);
        }
        loop {
            let rx = self.ether.recv_frame_timeout(Some(Duration::ZERO)).ok()?;
            if let Some(udp) = self.accept(&rx) {
                return Some((rx, udp));
            }
            self.filtered();
        }
    }

    /// Receives one datagram's payload into `buf`; returns its length and the sender. Bytes
    /// that do not fit in `buf` are discarded, as with UDP sockets.
    ///
    /// Errors: `WouldBlock` in non-blocking mode when nothing waits, `TimedOut` when the read
    /// timeout expires, `NotConnected` once the relay stopped.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (rx, udp) = self.next()?;
        let meta = deliver(&rx, &udp, buf);
        Ok((meta.len, meta.remote))
    }

    /// Receives up to `min(bufs.len(), meta.len())` datagrams: waits (as `recv_from` does) for
    /// the first, then takes those already queued without waiting; returns how many, with each
    /// one's details in `meta`.
    pub fn recv_batch(&self, bufs: &mut [&mut [u8]], meta: &mut [RecvMeta]) -> io::Result<usize> {
        rx::recv_batch(bufs, meta, || self.next(), || self.next_queued())
    }

    /// Connects the conn to `addr` (the first address of the conn's IP family it resolves
    /// to), as [`UdpSocket::connect`](std::net::UdpSocket::connect): [`send`](Self::send)
    /// goes there, and from then on every receive call takes only datagrams from `addr`
    /// (others are dropped and counted in [`rx_filtered`](Self::rx_filtered)). Connecting
    /// again changes the peer. Nothing is sent.
    ///
    /// Errors: `InvalidInput` with [`UdpError::FamilyMismatch`] when `addr` has no address of
    /// the conn's family, with [`UdpError::BadDestination`] for port 0 or the unspecified
    /// address.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        self.peer.connect(self.local, addr).map(drop)
    }

    /// The peer the conn is connected to; `NotConnected` ([`UdpError::NotConnected`]) before
    /// [`connect`](Self::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.peer.peer_addr()
    }

    /// Sends `payload` to the connected peer, as [`send_to`](Self::send_to) does.
    ///
    /// Errors: `NotConnected` ([`UdpError::NotConnected`]) before [`connect`](Self::connect);
    /// otherwise those of `send_to`.
    pub fn send(&self, payload: &[u8]) -> io::Result<usize> {
        self.send_to(payload, self.peer.peer_addr()?)
    }

    /// Receives one datagram's payload into `buf`, as [`recv_from`](Self::recv_from) without
    /// the sender. On a connected conn only the peer's datagrams arrive; on an unconnected one
    /// any (as on Linux, where `recv` works on an unconnected UDP socket).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }

    /// Like [`recv_from`](Self::recv_from), but the datagram stays: the next receive call
    /// (`recv_from`, `recv`, `recv_batch`, `peek_from`, the async calls) returns it again.
    ///
    /// The datagram is taken off the conn's queue and kept by the conn, so a
    /// [`ReadySet`](etherconn_relay::ReadySet) waiting on the queue no longer counts it:
    /// receive it before waiting again. Errors as for `recv_from`.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.peer.peek(
            || self.next(),
            |rx, udp| {
                let meta = deliver(rx, udp, buf);
                (meta.len, meta.remote)
            },
        )
    }

    /// [`peek_from`](Self::peek_from) without the sender.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.peek_from(buf).map(|(n, _)| n)
    }

    /// Moves the conn to another local address of the same IP family (a DHCP client that got
    /// its lease, say); port 0 picks an ephemeral port. The conn's L2 endpoint (MAC, VLANs,
    /// queue) stays; with a neighbour responder, the new address is registered before the old
    /// one goes, so the MAC is answered for throughout, and a resolver from the responder
    /// asks from the new address.
    ///
    /// A datagram in flight sees one address or the other: those to the old address still
    /// queued are dropped when read, as not the conn's own (counted in
    /// [`rx_filtered`](Self::rx_filtered); with `accept_any` they are delivered), and a
    /// datagram already taken by [`peek_from`](Self::peek_from) is still received. It takes
    /// `&mut self`: the address is read for every datagram without a lock, so a conn shared
    /// between threads keeps its address (make it, or move it, before sharing).
    ///
    /// Errors: [`UdpError::BadLocalAddr`] for the other IP family (the conn's `EtherConn`
    /// receives only its own), [`UdpError::NeighbourInUse`] when another MAC holds the new
    /// address in the responder. A refusal leaves the conn as it was.
    pub fn set_local_addr(&mut self, local: SocketAddr) -> Result<(), UdpError> {
        if local.is_ipv4() != self.local.is_ipv4() {
            return Err(UdpError::BadLocalAddr {
                from: self.local,
                to: local,
                reason: "the conn receives only its own IP version; make a new conn for the other",
            });
        }
        let local = if local.port() == 0 {
            SocketAddr::new(local.ip(), ephemeral_port())
        } else {
            local
        };
        if let Some(cfg) = &self.nd_config {
            let (nd, resolves, base) = &**cfg;
            let (mac, vlans, ip) = (self.ether.local_mac(), self.ether.vlans(), local.ip());
            let (neighbour, resolver) = if ip.is_unspecified() {
                (None, base.clone())
            } else {
                let added = Box::new(nd.add(mac, vlans, ip)?);
                let resolver = if *resolves {
                    nd.resolver(mac, vlans, ip)?
                } else {
                    base.clone()
                };
                (Some(added), resolver)
            };
            // The old registration drops after the new one exists.
            self.neighbour = neighbour;
            self.resolver = resolver;
        }
        self.local = local;
        Ok(())
    }

    /// Sets the receive timeout (`None`: block forever); a zero duration is an error, as for
    /// `UdpSocket`.
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
