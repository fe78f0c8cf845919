//! The one interface the measurements drive: a set of UDP endpoints that sends and receives
//! datagrams in bursts.
//!
//! Implementations: [`L2UdpEndpoints`](crate::l2udp::L2UdpEndpoints) (UDP built and parsed by
//! this tool over etherconn's L2 endpoints, `EtherConn` on a relay) and
//! [`KernelUdp`](crate::kernel::KernelUdp) (one kernel UDP socket, the baseline) and
//! [`RUdpEndpoints`](crate::rudp::RUdpEndpoints) (`etherconn-udp`'s `RUdpConn`, one per
//! endpoint, with its batch calls).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use etherconn_core::wire::{MacAddr, VlanTag};
use etherconn_relay::{ReadySet, Watchable};

/// Datagrams per burst: what the kernel baseline gives `sendmmsg`/`recvmmsg`, and the batch
/// the relay's `send_batch` gets.
pub const BATCH: usize = 32;

/// Room for one frame (the largest Ethernet frame with two VLAN tags fits).
pub const FRAME_ROOM: usize = 2048;

/// The other end of a datagram: its link-layer and UDP addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its MAC (the next hop's, for sending); unused by the kernel baseline.
    pub mac: MacAddr,
    /// Its address and port.
    pub addr: SocketAddr,
}

/// One datagram to send: from which endpoint of the set, to whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxSpec {
    /// Index of the sending endpoint in the set.
    pub from: usize,
    /// Destination.
    pub to: Peer,
}

/// One received datagram, borrowed from the set's buffers for the duration of a callback.
#[derive(Debug)]
pub struct RxDatagram<'a> {
    /// Index of the endpoint it arrived at.
    pub endpoint: usize,
    /// The sender.
    pub from: Peer,
    /// The VLAN tags it carried, outermost first (empty for the kernel baseline).
    pub vlans: &'a [VlanTag],
    /// Its destination address (the endpoint's).
    pub to: SocketAddr,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// A set of UDP endpoints under test.
pub trait EndpointSet {
    /// Backend name as the results show it (`rawsock`, `kernel`, ...).
    fn backend(&self) -> &'static str;

    /// Number of endpoints.
    fn endpoint_count(&self) -> usize;

    /// Address and port of endpoint `endpoint`.
    fn local_addr(&self, endpoint: usize) -> SocketAddr;

    /// Sends one datagram per spec (at most [`BATCH`] are used), waiting for room as a blocking
    /// socket does. `fill(k, buf)` writes the payload of the `k`-th datagram into `buf` and
    /// returns its length; it is called in order, once per datagram, before any is sent.
    /// Returns how many datagrams were sent: those after that count were not, and may be sent
    /// again. An error means none was sent.
    fn send_burst(
        &mut self,
        specs: &[TxSpec],
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize>;

    /// Receives up to `max` datagrams, waiting at most `wait` for the first (zero: not at all),
    /// and calls `on` for each; returns how many. Frames that are not datagrams for an endpoint
    /// of the set (ARP, which a set may answer itself, other addresses) are counted in
    /// [`counters`](EndpointSet::counters), not returned. An error means the set cannot receive
    /// any more (its relay stopped, the interface went away).
    fn recv_burst(
        &mut self,
        max: usize,
        wait: Duration,
        on: &mut dyn FnMut(&RxDatagram<'_>),
    ) -> io::Result<usize>;

    /// The set's own counters (and its relay's), by name.
    fn counters(&self) -> Vec<(String, u64)>;
}

/// Which conns of a fleet have frames: a [`ReadySet`] watching every conn (token `i` is conn
/// `i`), the tokens of its last `wait`, and how many of those a receiver has drained. Shared by
/// the `rawsock` and `rudp` receivers.
pub struct ReadyConns {
    set: ReadySet,
    ready: Vec<usize>,
    served: usize,
}

impl ReadyConns {
    /// Watches nothing yet.
    pub fn new(capacity: usize) -> ReadyConns {
        ReadyConns {
            set: ReadySet::new(),
            ready: Vec::with_capacity(capacity),
            served: 0,
        }
    }

    /// Watches `conn`, which must be the next conn by index.
    pub fn add(&self, conn: &impl Watchable, index: usize) {
        let token = self.set.add(conn);
        debug_assert_eq!(token, index, "tokens follow the conns' indices");
    }

    /// The conn to read next: the next reported conn not yet drained, else (after waiting up to
    /// `wait`, or not at all once the caller `got` something) one from a new `wait`; `None` when
    /// nothing is ready.
    pub fn next(&mut self, got: usize, wait: Duration) -> io::Result<Option<usize>> {
        if self.served < self.ready.len() {
            return Ok(Some(self.ready[self.served]));
        }
        let wait = if got > 0 { Duration::ZERO } else { wait };
        self.served = 0;
        self.set.wait(&mut self.ready, Some(wait))?;
        Ok(self.ready.first().copied())
    }

    /// The conn [`next`](Self::next) returned is drained: move on.
    pub fn drained(&mut self) {
        self.served += 1;
    }
}
