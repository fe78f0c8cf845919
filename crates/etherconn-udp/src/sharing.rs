//! [`SharingRUdpConn`]: the UDP endpoints bound on a [`SharedEtherConn`], and binding them.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use etherconn_core::classify::UdpInfo;
use etherconn_core::L4RecvKey;
use etherconn_relay::{MemoryBudget, Reservation};
use etherconn_relay::{RelayError, RxFrame, RxQueue, Watchable, WatchedQueue};

use crate::config::SharingConfig;
use crate::error::UdpError;
use crate::neighbour::NeighbourAddr;
use crate::peer::PeerState;
use crate::rudp::check_dscp;
use crate::rx::{self, deliver, RecvMeta};
use crate::shared::SharedEtherConn;
use crate::tx::{max_payload, Egress};
use etherconn_relay::timeouts::Timeouts;

/// Binding conns: here, next to the conn they make.
impl SharedEtherConn {
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
        let local = SocketAddr::new(local.ip(), port);
        let neighbour = match self.answer_for(local.ip()) {
            Ok(n) => n,
            Err(e) => {
                self.demux()
                    .deregister(&L4RecvKey::udp(local.ip(), port), &queue);
                return Err(e);
            }
        };
        Ok(SharingRUdpConn {
            neighbour,
            shared: Arc::clone(self),
            queue,
            local,
            peer: PeerState::default(),
            timeouts: Timeouts::default(),
            ttl: config.ttl,
            dscp: config.dscp,
            _budget: reservation,
        })
    }

    /// Makes the default receiver: a conn that gets the UDP datagrams to this L2 endpoint that
    /// no bound conn claims (which are otherwise dropped and counted in
    /// `RelayStats::rx_l4_miss`). [`RecvMeta::local`] in [`SharingRUdpConn::recv_batch`]
    /// says where each was sent. It has no address of its own: its `local_addr` is
    /// `0.0.0.0:0`, and it sends with [`SharingRUdpConn::send_to_from`] only. Dropping it
    /// puts the endpoint back to counting misses.
    ///
    /// Errors: [`UdpError::DefaultInUse`] (`AddrInUse`) when the endpoint has one already
    /// (unless `config.replace`), and the [`bind`](Self::bind) errors for the queue.
    pub fn bind_default(
        self: &Arc<Self>,
        config: SharingConfig,
    ) -> Result<SharingRUdpConn, UdpError> {
        check_dscp(config.dscp)?;
        RxQueue::check_depth(config.queue_depth)?;
        if self.ether.relay().dispatcher().is_stopped() {
            return Err(UdpError::Relay(RelayError::Stopped));
        }
        let reservation = self
            .ether
            .relay()
            .dispatcher()
            .budget()
            .reserve(MemoryBudget::conn_cost(config.queue_depth))?;
        let queue = Arc::new(RxQueue::new(config.queue_depth));
        queue.set_drop_martians(!config.accept_martians);
        if !self.demux().set_default(&queue, config.replace) {
            return Err(UdpError::DefaultInUse);
        }
        Ok(SharingRUdpConn {
            neighbour: None,
            shared: Arc::clone(self),
            queue,
            local: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            peer: PeerState::default(),
            timeouts: Timeouts::default(),
            ttl: config.ttl,
            dscp: config.dscp,
            _budget: reservation,
        })
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
/// [`SharingConfig::queue_depth`] slots: about 0.9 KiB at the default depth of 4 (see the
/// crate docs).
// Laid out by hand on 64-byte lines of its own: what every receive reads (`queue`,
// `timeouts`, `peer`) is the first 48 bytes, on the first line, so that a reader of many conns misses one line of the conn
// per datagram rather than two or three (rustc's own order put them 40, 72 and 104 bytes in:
// cachegrind counted 3.0 memory misses per datagram in a reader of 100,000 conns, 1.0 now;
// timed, the gain is small, docs/scale.md "Seventh round"). The conn stays 128 bytes.
#[repr(C, align(64))]
pub struct SharingRUdpConn {
    queue: Arc<RxQueue>,
    timeouts: Timeouts,
    /// The connected peer and a peeked datagram.
    peer: PeerState,
    shared: Arc<SharedEtherConn>,
    local: SocketAddr,
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
            .send(payload, self.source()?, dst, self.timeouts.write_wait())
    }

    /// The source of `send_to`: the local address, which the default receiver has not.
    #[inline]
    fn source(&self) -> Result<SocketAddr, UdpError> {
        if self.is_default() {
            return Err(UdpError::InvalidConfig(
                "the default receiver has no address of its own: send with send_to_from",
            ));
        }
        Ok(self.local)
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
            .send_batch(datagrams, self.source()?, self.timeouts.write_wait())
    }

    fn next(&self, wait: Option<Duration>) -> io::Result<(RxFrame, UdpInfo)> {
        if let Some(kept) = self.peer.take_peeked() {
            return Ok(kept);
        }
        let deadline = rx::ReadDeadline::start(wait);
        loop {
            let rx = match self.queue.pop(deadline.left()) {
                // A deadline that ran out between two datagrams from others than the connected
                // peer is a timeout, not a non-blocking miss.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !deadline.is_non_blocking() => {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                r => r?,
            };
            // The demultiplexer queues only UDP datagrams; anything else would not be ours.
            if let Some(udp) = rx.info.udp().filter(|u| self.peer.admits(u.remote)) {
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
        if let Some((rx, udp)) = self.peer.take_peeked() {
            let meta = deliver(&rx, &udp, buf);
            return Poll::Ready(Ok((meta.len, meta.remote)));
        }
        loop {
            let rx = match self.queue.poll_pop(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => return Poll::Pending,
            };
            // The demultiplexer queues only UDP datagrams; anything else would not be ours.
            if let Some(udp) = rx.info.udp().filter(|u| self.peer.admits(u.remote)) {
                let meta = deliver(&rx, &udp, buf);
                return Poll::Ready(Ok((meta.len, meta.remote)));
            }
        }
    }

    /// Sends without waiting for room in the transmit path (`WouldBlock` when there is none),
    /// whatever the conn's blocking mode.
    pub fn try_send_to(&self, payload: &[u8], dst: SocketAddr) -> io::Result<usize> {
        self.egress()
            .send(payload, self.source()?, dst, Some(Duration::ZERO))
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

    /// Connects the conn to `addr`, as [`RUdpConn::connect`](crate::RUdpConn::connect):
    /// [`send`](Self::send) goes there and only its datagrams are received (others are
    /// dropped when read). Errors as for `RUdpConn::connect`.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        self.peer.connect(self.local, addr).map(drop)
    }

    /// The connected peer; `NotConnected` before [`connect`](Self::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.peer.peer_addr()
    }

    /// Sends `payload` to the connected peer; `NotConnected` before
    /// [`connect`](Self::connect), otherwise errors as for [`send_to`](Self::send_to).
    pub fn send(&self, payload: &[u8]) -> io::Result<usize> {
        self.send_to(payload, self.peer.peer_addr()?)
    }

    /// [`recv_from`](Self::recv_from) without the sender.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }

    /// Like [`recv_from`](Self::recv_from), but the next receive call returns the datagram
    /// again; see [`RUdpConn::peek_from`](crate::RUdpConn::peek_from).
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.peer.peek(
            || self.next(self.timeouts.read_wait()),
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

    /// Whether this is its shared endpoint's default receiver
    /// ([`SharedEtherConn::bind_default`]).
    pub fn is_default(&self) -> bool {
        // Every bound conn has a port (port 0 binds an ephemeral one); the default receiver's
        // address is `0.0.0.0:0`.
        self.local.port() == 0
    }

    /// Moves the conn to another address on its shared endpoint (any IP family the endpoint
    /// receives; port 0 picks a free ephemeral port). The new key is registered for the
    /// conn's queue, and the address in the neighbour responder, before the old ones go: for
    /// that moment datagrams to either address reach the conn, and none to the new one is
    /// missed. Datagrams to the old address already queued are still received
    /// ([`RecvMeta::local`] tells them apart). It takes `&mut self`, like
    /// [`RUdpConn::set_local_addr`](crate::RUdpConn::set_local_addr).
    ///
    /// Errors: [`UdpError::AddrInUse`] / [`UdpError::NoFreePort`] as for
    /// [`SharedEtherConn::bind`], [`UdpError::NeighbourInUse`], and
    /// [`UdpError::BadLocalAddr`] for the default receiver, which has no address. A refusal
    /// leaves the conn as it was.
    pub fn set_local_addr(&mut self, local: SocketAddr) -> Result<(), UdpError> {
        if self.is_default() {
            return Err(UdpError::BadLocalAddr {
                from: self.local,
                to: local,
                reason: "the default receiver has no address of its own",
            });
        }
        let shared = &self.shared;
        let port = if local.port() == 0 {
            shared.register_ephemeral(local.ip(), &self.queue)?
        } else {
            let key = L4RecvKey::udp(local.ip(), local.port());
            shared
                .demux()
                .register(key, &self.queue, false)
                .map_err(|e| match e {
                    RelayError::L4KeyInUse(k) => UdpError::AddrInUse(k),
                    e => UdpError::Relay(e),
                })?;
            local.port()
        };
        let local = SocketAddr::new(local.ip(), port);
        let new_key = L4RecvKey::udp(local.ip(), port);
        let neighbour = match shared.answer_for(local.ip()) {
            Ok(n) => n,
            Err(e) => {
                if new_key != self.key() {
                    shared.demux().deregister(&new_key, &self.queue);
                }
                return Err(e);
            }
        };
        if new_key != self.key() {
            shared.demux().deregister(&self.key(), &self.queue);
        }
        self.neighbour = neighbour;
        self.local = local;
        Ok(())
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
        if self.is_default() {
            self.shared.demux().clear_default(&self.queue);
        } else {
            self.shared.demux().deregister(&self.key(), &self.queue);
        }
        self.queue.close();
    }
}

// The fields every receive reads share the conn's first line.
const _: () =
    assert!(core::mem::offset_of!(SharingRUdpConn, peer) + core::mem::size_of::<PeerState>() <= 64);
const _: () = assert!(core::mem::size_of::<SharingRUdpConn>() == 128);
