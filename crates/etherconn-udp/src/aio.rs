//! Async UDP endpoints (feature `tokio`): the same conns, awaited instead of blocked on.
//!
//! A receive registers the task's waker on the conn's queue, and the relay's receive thread
//! wakes it when a datagram arrives, so ten thousand async endpoints cost ten thousand queue
//! entries, not ten thousand threads. A send that finds the transmit path full waits on a tokio
//! timer and retries, so the runtime needs its time driver (`enable_time`, or `enable_all`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use etherconn_relay::{LoopbackRelay, PacketRelay};
//! use etherconn_udp::{AsyncRUdpConn, RUdpConfig, RUdpConn};
//!
//! let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
//! let (mac_a, mac_b) = ("02:00:00:00:00:01".parse().unwrap(), "02:00:00:00:00:02".parse().unwrap());
//! // Next hops: a static table here, an ARP cache in a real program.
//! let cfg = || RUdpConfig::default().resolver(move |ip| Some(if ip.to_string() == "192.0.2.1" { mac_a } else { mac_b }));
//! let a = AsyncRUdpConn::new(RUdpConn::new(relay.clone(), mac_a, &[], "192.0.2.1:5000".parse().unwrap(), cfg())?);
//! let b = AsyncRUdpConn::new(RUdpConn::new(relay.clone(), mac_b, &[], "192.0.2.2:6000".parse().unwrap(), cfg())?);
//! a.send_to(b"ping", "192.0.2.2:6000".parse().unwrap()).await?;
//! let mut buf = [0u8; 64];
//! let (n, from) = b.recv_from(&mut buf).await?;
//! assert_eq!((&buf[..n], from), (&b"ping"[..], "192.0.2.1:5000".parse().unwrap()));
//! # Ok(())
//! # }
//! ```

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::rudp::RUdpConn;
use crate::sharing::SharingRUdpConn;

/// How long a send that found the transmit path full waits before trying again.
const SEND_RETRY: Duration = Duration::from_micros(200);

/// The two calls an async wrapper needs from a conn.
pub trait PollUdp {
    /// See [`RUdpConn::poll_recv_from`].
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>>;
    /// See [`RUdpConn::try_send_to`].
    fn try_send_to(&self, payload: &[u8], dst: SocketAddr) -> io::Result<usize>;
}

impl PollUdp for RUdpConn {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        RUdpConn::poll_recv_from(self, cx, buf)
    }
    fn try_send_to(&self, payload: &[u8], dst: SocketAddr) -> io::Result<usize> {
        RUdpConn::try_send_to(self, payload, dst)
    }
}

impl PollUdp for SharingRUdpConn {
    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        SharingRUdpConn::poll_recv_from(self, cx, buf)
    }
    fn try_send_to(&self, payload: &[u8], dst: SocketAddr) -> io::Result<usize> {
        SharingRUdpConn::try_send_to(self, payload, dst)
    }
}

/// An async view of a conn: `send_to(..).await` and `recv_from(..).await`.
///
/// One task should receive on a conn at a time (a second waiting task replaces the first's
/// wake-up registration); any number may send.
#[derive(Debug)]
pub struct Async<C> {
    inner: C,
}

/// An async [`RUdpConn`].
pub type AsyncRUdpConn = Async<RUdpConn>;
/// An async [`SharingRUdpConn`].
pub type AsyncSharingRUdpConn = Async<SharingRUdpConn>;

impl<C: PollUdp> Async<C> {
    /// Wraps a conn.
    pub fn new(inner: C) -> Self {
        Async { inner }
    }

    /// The conn, for its blocking API and settings.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// Gives the conn back.
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// Receives one datagram into `buf`; returns its length and the sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        poll_fn(|cx| self.inner.poll_recv_from(cx, buf)).await
    }

    /// Sends one datagram to `dst`, waiting (asynchronously) while the transmit path is full.
    pub async fn send_to(&self, payload: &[u8], dst: SocketAddr) -> io::Result<usize> {
        loop {
            match self.inner.try_send_to(payload, dst) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(SEND_RETRY).await
                }
                r => return r,
            }
        }
    }
}
