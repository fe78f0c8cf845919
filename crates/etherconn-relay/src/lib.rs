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
//! Memory is bounded by design: every relay has a [`MemoryBudget`]
//! ([`DispatcherConfig::memory_budget`]; by default half the machine's memory, at most what is
//! available), each conn reserves its worst case (its queue full) from it when it registers,
//! and a conn that would go past it is refused with [`RelayError::OverBudget`] before anything
//! is allocated. Nothing is charged per frame.
//!
//! Any relay can also write the frames it sends and receives to a pcapng file: a [`Capture`]
//! in its dispatcher ([`Dispatcher::start_capture`]), which the relay hands every frame to
//! without waiting and without allocating (docs/capture.md).
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

// The modules build on each other in this order (each imports only modules before it; this
// root file only declares them and re-exports their public items):
//
//   stripe, locks, meminfo, timeouts,
//   link                             (no module of this crate)
//   error                            (meminfo, link)
//   pool, stats                      (stripe)
//   doorbell                         (locks)
//   capture/handoff                  (doorbell)
//   capture/writer                   (capture/handoff)
//   capture                          (capture/handoff, capture/writer, locks, stripe)
//   wake                             (doorbell: ready lists, wake-ups held to a batch's end)
//   queue/frame                      (pool)
//   queue/hooks                      (queue/frame, doorbell, locks, wake)
//   queue                            (queue/frame, queue/hooks, error)
//   budget                           (queue, pool, meminfo, error)
//   ready                            (queue, queue/hooks, wake, locks)
//   inbox                            (queue, queue/hooks, ready, error, locks)
//   dispatch/demux                   (queue, error, locks)
//   dispatch/observer                (error)
//   dispatch/table                   (dispatch/demux, dispatch/observer, queue, error, locks,
//                                     stripe)
//   dispatch                         (dispatch/table, dispatch/observer, pool, queue, stats, error,
//                                     budget, capture)
//   dispatch/delivery                (dispatch, dispatch/table, dispatch/demux, queue, stats, wake)
//   relay                            (dispatch, stats, link)
//   conn                             (relay, dispatch/table, dispatch/demux, queue, ready, error,
//                                     timeouts, budget)
//   loopback                         (relay, dispatch, stats, capture, link)
mod budget;
mod capture;
mod conn;
mod dispatch;
mod doorbell;
mod error;
mod inbox;
mod link;
mod locks;
mod loopback;
mod meminfo;
mod pool;
mod queue;
mod ready;
mod relay;
pub mod sending;
mod stats;
mod stripe;
mod summary;
pub mod timeouts;
mod wake;

pub use budget::{
    frame_bytes, ConnCost, MemoryBudget, MemoryLimit, Reservation, CONN_FIXED_BYTES,
    FALLBACK_BUDGET, SLOT_BYTES,
};
pub use capture::{
    Capture, CaptureConfig, CaptureEndpoint, CaptureError, CaptureStats, Direction,
    DEFAULT_CAPTURE_SLOTS,
};
pub use conn::{EtherConn, EtherConnConfig, L2Peer};
pub use dispatch::delivery::{Delivery, DELIVERY_BATCH};
pub use dispatch::demux::L4Demux;
pub use dispatch::observer::{RegistrationChange, RegistrationObserver};
pub use dispatch::table::{ConnEntry, NeighbourTap, SHARDS};
pub use dispatch::{Dispatcher, DispatcherConfig};
pub use error::RelayError;
pub use inbox::{Inbox, Mail, DEFAULT_INBOX_CAPACITY};
pub use link::{SizeLimit, DEFAULT_MTU};
pub use loopback::LoopbackRelay;
pub use meminfo::{human_bytes, MemInfo};
pub use pool::{BufferPool, FrameSlot, PooledBuf};
pub use queue::{RxFrame, RxQueue};
pub use ready::{ReadAhead, ReadySet, Watchable, WatchedQueue, DEFAULT_READY_CAPACITY, READ_AHEAD};
pub use relay::PacketRelay;
pub use stats::{RelayCounters, RelayStats, StripedCounters};
pub use summary::{DropSummary, DROP_SUMMARY_INTERVAL};
