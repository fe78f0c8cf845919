//! etherconn: send and receive Ethernet payloads and UDP datagrams with any source MAC, any
//! 802.1Q/QinQ VLAN stack and any EtherType, without creating OS interfaces.
//!
//! This facade re-exports the workspace's crates; Cargo features select the backends.
//! See the README for the architecture.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

pub use etherconn_core as core;
pub use etherconn_core::{bpf, build, classify, key, wire, L2EndpointKey, L4RecvKey};
