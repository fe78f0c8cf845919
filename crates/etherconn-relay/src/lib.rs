//! The relay runtime of etherconn: what every backend (AF_PACKET, AF_XDP, libpcap) shares.
//!
//! A backend owns the interface I/O and hands every frame it receives to the dispatcher, in
//! batches ([`Dispatcher::delivery`]) when frames come in bursts, as from a receive ring, or one
//! at a time ([`Dispatcher::deliver`]); everything after that (classification with
//! [`etherconn_core::classify`], the key table, per-conn queues, pooled buffers, counters) is
//! here, so that dispatch behaves the same whichever backend runs it. Sending goes the other
//! way: an [`EtherConn`] builds a frame in a pooled buffer and hands it to
//! [`PacketRelay::send`].
//!
//! The trait does not assume one receive thread: an AF_PACKET relay may run several threads
//! in a fanout group and an AF_XDP relay one per NIC queue, all delivering concurrently.
//!
//! The parsing this crate relies on lives in `etherconn-core`, which has no threads, locks or
//! queues; this crate adds them.
//!
//! # Example: two endpoints on an in-process relay
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use etherconn_core::wire::EtherType;
//! use etherconn_relay::{DispatcherConfig, EtherConn, EtherConnConfig, LoopbackRelay, PacketRelay};
//!
//! // A relay whose "wire" loops back into itself: no interface, no privileges.
//! let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(DispatcherConfig::default());
//! // Two endpoints for a local experimental EtherType (IEEE 802 reserves 0x88b5 for that).
//! let cfg = EtherConnConfig::default().ethertypes(&[EtherType(0x88b5)]);
//! let a = EtherConn::new(relay.clone(), "02:00:00:00:00:01".parse()?, &[], cfg.clone())?;
//! let b = EtherConn::new(relay.clone(), "02:00:00:00:00:02".parse()?, &[], cfg)?;
//! a.send_to(b"hello", EtherType(0x88b5), b.local_mac())?;
//! b.set_read_timeout(Some(Duration::from_secs(1)))?;
//! let mut buf = [0u8; 1514];
//! let (n, from) = b.recv_from(&mut buf)?;
//! assert_eq!(from.mac, a.local_mac());
//! assert_eq!(&buf[..5], b"hello");
//! # let _ = n;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod conn;
mod dispatch;
mod doorbell;
mod inbox;
mod loopback;
mod pool;
mod queue;
mod ready;
mod stats;
mod stripe;
pub mod timeouts;

use std::io;
use std::time::Duration;

use std::sync::Arc;

pub use conn::{EtherConn, EtherConnConfig, L2Peer};
pub use dispatch::{
    ConnEntry, Delivery, Dispatcher, DispatcherConfig, L4Demux, DELIVERY_BATCH, SHARDS,
};
pub use inbox::{Inbox, Mail, DEFAULT_INBOX_CAPACITY};
pub use loopback::LoopbackRelay;
pub use pool::{BufferPool, FrameSlot, PooledBuf};
pub use queue::{RxFrame, RxQueue};
pub use ready::{ReadAhead, ReadySet, Watchable, WatchedQueue, DEFAULT_READY_CAPACITY, READ_AHEAD};
pub use stats::{RelayCounters, RelayStats, StripedCounters};

use etherconn_core::key::L2EndpointKey;

/// Why a relay refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The key is registered to another conn.
    #[error("endpoint key {0} is already registered to another conn")]
    KeyInUse(L2EndpointKey),
    /// The UDP key is registered to another endpoint of the shared L2 endpoint.
    #[error("UDP endpoint key {0} is already registered")]
    L4KeyInUse(etherconn_core::key::L4RecvKey),
    /// Another conn is the default conn.
    #[error("another conn is already the default conn")]
    DefaultInUse,
    /// The relay has stopped.
    #[error("the relay has stopped")]
    Stopped,
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The conn already delivers to an [`Inbox`].
    #[error("the conn is already attached to an inbox")]
    InInbox,
}

impl From<RelayError> for io::Error {
    fn from(e: RelayError) -> io::Error {
        let kind = match e {
            RelayError::KeyInUse(_) | RelayError::L4KeyInUse(_) | RelayError::DefaultInUse => {
                io::ErrorKind::AddrInUse
            }
            RelayError::Stopped => io::ErrorKind::NotConnected,
            RelayError::InvalidConfig(_) => io::ErrorKind::InvalidInput,
            RelayError::InInbox => io::ErrorKind::AlreadyExists,
        };
        io::Error::new(kind, e)
    }
}

/// A forwarding engine bound to one interface.
///
/// Implementations are shared (`Arc`) by every conn on the interface; all methods take `&self`
/// and may be called from any thread.
pub trait PacketRelay: Send + Sync + core::fmt::Debug {
    /// The dispatch table received frames go through.
    fn dispatcher(&self) -> &Arc<Dispatcher>;

    /// Sends one whole frame (from the destination MAC), waiting at most `timeout` for room in
    /// the transmit path (`None`: as long as needed). Errors are `io::Error`s; `TimedOut` or
    /// `WouldBlock` when the wait expired.
    fn send(&self, frame: &[u8], timeout: Option<Duration>) -> io::Result<()>;

    /// Sends several frames; returns how many were sent before the first failure (an error
    /// only when none was sent). The default sends them one by one.
    fn send_batch(&self, frames: &[&[u8]], timeout: Option<Duration>) -> io::Result<usize> {
        for (i, f) in frames.iter().enumerate() {
            if let Err(e) = self.send(f, timeout) {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(frames.len())
    }

    /// The largest frame the relay sends or receives, VLAN tags included.
    fn max_frame_len(&self) -> usize {
        self.dispatcher().config().buf_len
    }

    /// A snapshot of the counters.
    fn stats(&self) -> RelayStats {
        self.dispatcher().stats()
    }

    /// Stops the relay: joins its threads, releases the interface and wakes every blocked
    /// reader with an error. Idempotent.
    fn stop(&self);
}
