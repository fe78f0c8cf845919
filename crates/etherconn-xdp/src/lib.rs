//! The AF_XDP relay of etherconn (Linux): [`XdpRelay`].
//!
//! Our XDP program (built from `etherconnkern/`, embedded in this crate and loaded from
//! memory, so no BPF toolchain is needed to use it) hands the frames of registered endpoints
//! to an AF_XDP socket on the queue they arrive on, and passes everything else to the kernel:
//! the host's own traffic on the interface keeps working. It is attached through a BPF link,
//! so it goes away when the relay stops or the process exits, is killed or crashes. One thread
//! per queue receives in batches and delivers through the same dispatch table as every other
//! relay, so conns behave the same on it.
//!
//! ```no_run
//! use std::sync::Arc;
//! use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
//! use etherconn_xdp::{XdpRelay, XdpRelayConfig};
//!
//! let relay = XdpRelay::new("eth0", XdpRelayConfig::default())?;
//! println!("queues {:?}, {:?} mode", relay.queues(), relay.mode());
//! let relay: Arc<dyn PacketRelay> = relay;
//! let conn = EtherConn::new(relay.clone(), "02:00:00:00:00:01".parse()?, &[], EtherConnConfig::default())?;
//! let mut buf = [0u8; 1500];
//! let (n, from) = conn.recv_from(&mut buf)?;
//! println!("{n} bytes from {from}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layers
//!
//! The modules build on each other in this order (each imports only modules before it):
//!
//! - `sys`: all of the crate's `unsafe`: interface ioctls and the two halves of a queue's
//!   AF_XDP socket over xsk-rs (UMEM frames tracked so none is ever in two places);
//! - [`error`], [`config`];
//! - `maps`: the byte layout of the program's map keys (defined in `etherconnkern/etherconn.h`)
//!   and the registration hook that mirrors the dispatch table into them;
//! - `program`: loading the embedded object, sizing its maps, attaching it through a link;
//! - `queue`: a queue's counters, send half and receive thread;
//! - [`relay`], which holds [`XdpRelay`].
//!
//! On other systems the crate is empty.
#![deny(unsafe_code)]

#[cfg(target_os = "linux")]
pub mod config;
#[cfg(target_os = "linux")]
pub mod error;
#[cfg(target_os = "linux")]
mod maps;
#[cfg(target_os = "linux")]
mod program;
#[cfg(target_os = "linux")]
mod queue;
#[cfg(target_os = "linux")]
pub mod relay;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod sys;

#[cfg(target_os = "linux")]
pub use config::{XdpMode, XdpRelayConfig};
#[cfg(target_os = "linux")]
pub use error::{Error, Result};
#[cfg(target_os = "linux")]
pub use queue::QueueStats;
#[cfg(target_os = "linux")]
pub use relay::{ProgramStats, XdpRelay};
#[cfg(target_os = "linux")]
pub use sys::BindMode;
