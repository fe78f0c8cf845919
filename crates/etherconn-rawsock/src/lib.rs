//! The AF_PACKET socket layer of etherconn (Linux).
//!
//! Sends and receives whole Ethernet frames, with any source MAC and any VLAN stack, on one
//! interface, without creating OS interfaces. The relay (the dispatch engine of
//! `etherconn-core`) sits on top of this crate and drives one [`PacketSocket`] per thread.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use etherconn_rawsock::{PacketSocket, SocketConfig, TxBatcher, TxConfig};
//!
//! let mut sock = PacketSocket::open("eth0", &SocketConfig::default())?;
//! let stop = sock.stop_handle(); // give it to whoever shuts the relay down: stop.stop()
//!
//! let mut tx = TxBatcher::new(&TxConfig::default())?;
//! let mut frame = [0u8; 60];
//! frame[..6].copy_from_slice(&[0xff; 6]); // broadcast
//! frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]); // any source MAC
//! frame[12..14].copy_from_slice(&[0x88, 0xb5]);
//! tx.push(&frame)?;
//! tx.flush(&sock)?;
//!
//! while !stop.is_stopped() {
//!     sock.poll_batch(Duration::from_millis(100), |frame, meta| {
//!         // `frame` starts at the destination MAC; an outer VLAN tag the kernel stripped
//!         // is in `meta.vlan`.
//!         println!("{} bytes, vlan {:?}", frame.len(), meta.vlan);
//!     })?;
//! }
//! # Ok::<(), etherconn_rawsock::Error>(())
//! ```
//!
//! # Layers
//!
//! - [`sys`]: safe wrappers over each system call (socket options, `mmap` of the ring,
//!   `poll`, `sendmmsg`, `eventfd`). All of the crate's `unsafe` is there.
//! - [`ring`]: the `TPACKET_V3` receive ring: walks the blocks the kernel hands over and
//!   yields each frame with its [`RxMeta`] (offloaded VLAN tag, lengths, interface, time),
//!   without copying or allocating.
//! - [`tx`]: [`TxBatcher`], a fixed pool of frame buffers sent with one `sendmmsg` per batch.
//! - [`socket`]: [`PacketSocket`], which opens and configures the socket (ring, filter,
//!   promiscuous mode, fanout, ignore-outgoing, qdisc bypass), waits for frames, and can be
//!   woken or stopped from another thread through a [`StopHandle`].
//!
//! On other systems the crate is empty.
#![deny(unsafe_code)]

#[cfg(target_os = "linux")]
pub mod error;
#[cfg(target_os = "linux")]
pub mod relay;
#[cfg(target_os = "linux")]
pub mod ring;
#[cfg(target_os = "linux")]
pub mod socket;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub mod sys;
#[cfg(target_os = "linux")]
pub mod tx;

#[cfg(target_os = "linux")]
pub use error::{Error, Result};
#[cfg(target_os = "linux")]
pub use relay::{RawSocketRelay, RawSocketRelayConfig};
#[cfg(target_os = "linux")]
pub use ring::{PacketType, RingConfig, RxMeta, RxRing};
#[cfg(target_os = "linux")]
pub use socket::{Fanout, FanoutMode, PacketSocket, PacketStats, SocketConfig, StopHandle};
#[cfg(target_os = "linux")]
pub use sys::SockFilter;
#[cfg(target_os = "linux")]
pub use tx::{TxBatcher, TxConfig, TxStats};
