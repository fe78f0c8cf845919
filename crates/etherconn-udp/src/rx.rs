//! The receive side every conn shares: per-datagram metadata and copying a payload out of the
//! relay's pooled frame buffer.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use etherconn_core::classify::UdpInfo;
use etherconn_core::wire::MacAddr;
use etherconn_relay::timeouts::deadline;
use etherconn_relay::RxFrame;

/// What [`recv_batch`](crate::RUdpConn::recv_batch) reports about each datagram it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RecvMeta {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// Whether the datagram was longer than the buffer (the rest is discarded, as with UDP
    /// sockets).
    pub truncated: bool,
    /// The sender's address and port.
    pub remote: SocketAddr,
    /// The address and port the datagram was sent to (ours, a broadcast or multicast group,
    /// or anything with `accept_any`).
    pub local: SocketAddr,
    /// The sender's MAC.
    pub src_mac: MacAddr,
    /// The destination MAC of the frame.
    pub dst_mac: MacAddr,
    /// TTL or hop limit as received.
    pub ttl: u8,
}

impl Default for RecvMeta {
    fn default() -> Self {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        RecvMeta {
            len: 0,
            truncated: false,
            remote: any,
            local: any,
            src_mac: MacAddr::UNSPECIFIED,
            dst_mac: MacAddr::UNSPECIFIED,
            ttl: 0,
        }
    }
}

/// Copies the UDP payload of a frame an [`Inbox`](etherconn_relay::Inbox) handed over
/// into `buf`, as the conn's `recv_batch` would have; `None` when the frame is not a UDP
/// datagram (an attached `RUdpConn` also gets its `EtherConn`'s ARP, say). A datagram longer
/// than `buf` is cut (`truncated`).
///
/// To read the payload in place instead, take `frame.info.udp()` and slice `frame.frame()`.
pub fn read_datagram(frame: &RxFrame, buf: &mut [u8]) -> Option<RecvMeta> {
    frame.info.udp().map(|udp| deliver(frame, &udp, buf))
}

/// Copies the payload of `rx` (a UDP datagram described by `udp`) into `buf`.
pub(crate) fn deliver(rx: &RxFrame, udp: &UdpInfo, buf: &mut [u8]) -> RecvMeta {
    // The classifier keeps spans inside the frame; an empty payload is the safe reading if not.
    let payload = rx.frame().get(udp.payload.range()).unwrap_or(&[]);
    let len = payload.len().min(buf.len());
    buf[..len].copy_from_slice(&payload[..len]);
    RecvMeta {
        len,
        truncated: len < payload.len(),
        remote: udp.remote,
        local: udp.local,
        src_mac: rx.info.src_mac,
        dst_mac: rx.info.dst_mac(),
        ttl: rx.info.ip().map_or(0, |ip| ip.ttl),
    }
}

/// The batch receive of every conn: `first` waits (as the conn's `recv_from` does) for one
/// datagram, then `more` takes those already queued without waiting, until it has none or
/// `min(bufs.len(), meta.len())` are in; returns how many.
pub(crate) fn recv_batch(
    bufs: &mut [&mut [u8]],
    meta: &mut [RecvMeta],
    first: impl FnOnce() -> io::Result<(RxFrame, UdpInfo)>,
    mut more: impl FnMut() -> Option<(RxFrame, UdpInfo)>,
) -> io::Result<usize> {
    let n = bufs.len().min(meta.len());
    if n == 0 {
        return Ok(0);
    }
    let (rx, udp) = first()?;
    meta[0] = deliver(&rx, &udp, bufs[0]);
    // Back to the pool before the next one is taken.
    drop(rx);
    let mut got = 1;
    while got < n {
        let Some((rx, udp)) = more() else { break };
        meta[got] = deliver(&rx, &udp, bufs[got]);
        got += 1;
    }
    Ok(got)
}

/// One overall deadline for a read that may skip datagrams not meant for the conn.
///
/// The clock is read only by a read that may wait a bounded time. A non-blocking read (zero
/// wait) and an unbounded one (no wait limit) never read it: two clock reads per datagram
/// took a fifth of the rate of a reader polling 100,000 endpoints one by one (docs/scale.md).
pub(crate) struct ReadDeadline {
    wait: Option<Duration>,
    until: Option<Instant>,
}

impl ReadDeadline {
    /// Starts the deadline for a read allowed to wait `wait` (`None`: forever).
    pub(crate) fn start(wait: Option<Duration>) -> Self {
        let until = deadline(wait.filter(|t| !t.is_zero()));
        ReadDeadline { wait, until }
    }

    /// How long the next pop may wait: zero for a non-blocking read, `None` for forever.
    pub(crate) fn left(&self) -> Option<Duration> {
        match self.until {
            Some(d) => Some(d.saturating_duration_since(Instant::now())),
            None => self.wait.filter(|t| t.is_zero()),
        }
    }

    /// Whether the read was non-blocking, so an empty queue is `WouldBlock`, not a timeout.
    pub(crate) fn is_non_blocking(&self) -> bool {
        self.wait == Some(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_waits_as_asked() {
        assert_eq!(ReadDeadline::start(None).left(), None);
        let nb = ReadDeadline::start(Some(Duration::ZERO));
        assert_eq!(nb.left(), Some(Duration::ZERO));
        assert!(nb.is_non_blocking());
        let timed = ReadDeadline::start(Some(Duration::from_secs(5)));
        let left = timed.left().unwrap();
        assert!(left > Duration::from_secs(4) && left <= Duration::from_secs(5));
        assert!(!timed.is_non_blocking());
        // Too long to add to the clock: waits forever rather than failing.
        assert_eq!(ReadDeadline::start(Some(Duration::MAX)).left(), None);
    }
}
