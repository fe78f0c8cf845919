//! Zero-copy views and owned representations of the protocols etherconn speaks.
//!
//! Each protocol has its own module, laid out the same way: a view `Packet<T: AsRef<[u8]>>` (or
//! `Frame`, `Tag`) over a buffer whose `new_checked` constructor verifies the length once so that
//! its getters never index out of bounds, setters when the buffer is mutable, and an owned `Repr`
//! with `parse`, `buffer_len` and `emit`, which is the only place protocol rules are decided.
//!
//! Nothing here allocates, does I/O or panics on any input.
//!
//! This file only declares and re-exports: the protocol modules import what they share from
//! `error` (the error type), `field` (big-endian field access, [`Span`]) and each other, never
//! from here, so that no two files import each other.

pub mod arp;
pub mod checksum;
mod error;
pub mod ethernet;
mod field;
pub mod icmpv6;
pub mod ip_protocol;
pub mod ipv4;
pub mod ipv6;
pub mod udp;
pub mod vlan;

pub use error::{Error, Result};
pub use ethernet::{EtherType, MacAddr};
pub use field::Span;
pub use vlan::{Tpid, VlanId, VlanTag};
