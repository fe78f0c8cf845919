//! etherconn: send and receive Ethernet payloads and UDP datagrams with any source MAC, any
//! 802.1Q/QinQ VLAN stack and any EtherType, without creating OS interfaces.
//!
//! This facade re-exports the workspace's crates; Cargo features select the backends:
//! `rawsock` (default, AF_PACKET on Linux), `xdp` (AF_XDP on Linux) and `pcap` (libpcap; npcap
//! on Windows). See the README for the architecture.
//!
//! ```
//! use std::sync::Arc;
//! use etherconn::relay::{LoopbackRelay, PacketRelay};
//! use etherconn::{EtherConn, EtherConnConfig};
//! use etherconn::wire::{EtherType, VlanTag};
//!
//! // A relay with no interface (every frame sent is received by it), then two endpoints with
//! // MACs and a VLAN of their own. `etherconn::rawsock::RawSocketRelay` is the one for a NIC.
//! let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
//! let cfg = EtherConnConfig::default().ethertypes(&[EtherType(0x88b5)]);
//! let vlan = [VlanTag::dot1q(42).unwrap()];
//! let a = EtherConn::new(relay.clone(), "02:00:00:00:00:0a".parse()?, &vlan, cfg.clone())?;
//! let b = EtherConn::new(relay.clone(), "02:00:00:00:00:0b".parse()?, &vlan, cfg)?;
//! a.send_to(&[7; 46], EtherType(0x88b5), b.local_mac())?;
//! let mut buf = [0u8; 1500];
//! let (n, from) = b.recv_from(&mut buf)?;
//! assert_eq!((n, from.mac), (46, a.local_mac()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

pub use etherconn_core as core;
pub use etherconn_core::{bpf, build, classify, key, wire, L2EndpointKey, L4RecvKey, VlanIds};
/// The relay runtime (feature `std`): `PacketRelay`, the dispatch table, queues, `EtherConn`.
#[cfg(feature = "std")]
pub use etherconn_relay as relay;
/// Waits on many conns at once (see [`relay::ReadySet`]).
#[cfg(feature = "std")]
pub use etherconn_relay::ReadySet;
#[cfg(feature = "std")]
pub use etherconn_relay::{EtherConn, EtherConnConfig, L2Peer};
/// One receive queue for many conns (see [`relay::Inbox`]).
#[cfg(feature = "std")]
pub use etherconn_relay::{Inbox, Mail};
/// UDP endpoints over etherconn's L2 endpoints (feature `std`).
#[cfg(feature = "std")]
pub use etherconn_udp as udp;
#[cfg(feature = "std")]
pub use etherconn_udp::{
    NeighbourConfig, Neighbours, RUdpConfig, RUdpConn, SharedEtherConn, SharingRUdpConn,
};

/// The AF_PACKET relay (feature `rawsock`, Linux).
#[cfg(all(feature = "rawsock", target_os = "linux"))]
pub use etherconn_rawsock as rawsock;

/// The AF_XDP relay and its XDP program (feature `xdp`, Linux).
#[cfg(all(feature = "xdp", target_os = "linux"))]
pub use etherconn_xdp as xdp;

/// The libpcap relay (feature `pcap`): `etherconn::pcap::PcapRelay`.
#[cfg(feature = "pcap")]
pub use etherconn_pcap as pcap;

// The README's code blocks are compiled as doctests.
#[cfg(all(doctest, feature = "rawsock", target_os = "linux"))]
#[doc = include_str!("../README.md")]
mod readme_doctests {}
