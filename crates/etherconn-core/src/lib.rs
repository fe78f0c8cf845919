//! Wire formats, dispatch keys and receive filters for etherconn.
//!
//! This crate does no I/O and contains no `unsafe`. It is what the etherconn relays use to parse
//! every received frame exactly once and to build every frame they send, and it is usable on its
//! own by a program that only needs to parse or build frames.
//!
//! - [`wire`]: zero-copy views and owned `Repr`s for Ethernet II, 802.1Q/802.1ad VLAN tags, ARP,
//!   IPv4, IPv6, UDP and the Internet checksum.
//! - [`classify`]: a one-pass classifier that turns a received frame into its dispatch key,
//!   addresses and payload ranges, or a typed reason why it is invalid.
//! - [`build`]: writes Ethernet + VLAN stack + IPv4/IPv6 + UDP frames into a caller's buffer.
//! - [`key`]: [`L2EndpointKey`] and [`L4RecvKey`], the keys the relays dispatch on.
//! - [`martian`]: the received UDP datagrams a host drops (martian source or destination
//!   address, port 0), as pure functions of the addresses.
//! - [`bpf`]: a classic BPF program builder for the relays' receive filter.
//!
//! It has no threads, locks or queues and builds without `std` with its default features. The
//! relay runtime built on it (the `PacketRelay` trait, the dispatch table, per-conn queues,
//! `EtherConn`) is the `etherconn-relay` crate.
//!
//! # Example: classify a received frame
//!
//! ```
//! use etherconn_core::build::{UdpFrame, build_udp_frame};
//! use etherconn_core::classify::classify;
//! use etherconn_core::wire::{EtherType, MacAddr, VlanTag, VlanId, Tpid};
//! use std::net::Ipv4Addr;
//!
//! // Build a QinQ-tagged UDP frame (any source MAC, any VLAN stack)...
//! let vlans = [
//!     VlanTag::new(Tpid::QINQ, VlanId::new(200).unwrap()),
//!     VlanTag::new(Tpid::DOT1Q, VlanId::new(100).unwrap()),
//! ];
//! let frame = UdpFrame {
//!     src_mac: "02:00:00:00:00:01".parse().unwrap(),
//!     dst_mac: "02:00:00:00:00:02".parse().unwrap(),
//!     vlans: &vlans,
//!     src: (Ipv4Addr::new(192, 0, 2, 1), 68).into(),
//!     dst: (Ipv4Addr::new(192, 0, 2, 2), 67).into(),
//!     ttl: 64,
//!     dscp: 0,
//!     payload: b"hello",
//! };
//! let mut buf = [0u8; 128];
//! let len = build_udp_frame(&mut buf, &frame).unwrap();
//!
//! // ...and classify it as a relay does when it receives it.
//! let c = classify(&buf[..len], None).unwrap();
//! assert_eq!(c.key.to_string(), "02:00:00:00:00:02|200|100#0x0800");
//! assert_eq!(c.ethertype(), EtherType::IPV4);
//! let udp = c.udp().unwrap();
//! assert_eq!(udp.remote.port(), 68);
//! assert_eq!(&buf[udp.payload.range()], b"hello");
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

extern crate alloc;

pub mod bpf;
pub mod build;
pub mod classify;
pub mod key;
pub mod martian;
pub mod wire;

pub use key::{L2EndpointKey, L4RecvKey, VlanIds};
