//! Zero-copy views and owned representations of the protocols etherconn speaks.
//!
//! Each protocol has its own module, laid out the same way: a view `Packet<T: AsRef<[u8]>>` (or
//! `Frame`, `Tag`) over a buffer whose `new_checked` constructor verifies the length once so that
//! its getters never index out of bounds, setters when the buffer is mutable, and an owned `Repr`
//! with `parse`, `buffer_len` and `emit`, which is the only place protocol rules are decided.
//!
//! Nothing here allocates, does I/O or panics on any input.

pub mod arp;
pub mod checksum;
mod error;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod udp;
pub mod vlan;

pub use error::{Error, Result};
pub use ethernet::{EtherType, MacAddr};
pub use vlan::{Tpid, VlanId, VlanTag};

/// IP protocol numbers used by etherconn.
pub mod ip_protocol {
    /// Internet Control Message Protocol.
    pub const ICMP: u8 = 1;
    /// Transmission Control Protocol.
    pub const TCP: u8 = 6;
    /// User Datagram Protocol.
    pub const UDP: u8 = 17;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
}

/// A byte range within a frame, `Copy` unlike [`core::ops::Range`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`; `end` is clamped to be at least `start`.
    pub const fn new(start: usize, end: usize) -> Self {
        Span {
            start,
            end: if end < start { start } else { end },
        }
    }

    /// The span as a range, for slicing.
    pub const fn range(self) -> core::ops::Range<usize> {
        self.start..self.end
    }

    /// Number of bytes in the span.
    pub const fn len(self) -> usize {
        self.end - self.start
    }

    /// Whether the span holds no byte.
    pub const fn is_empty(self) -> bool {
        self.end == self.start
    }
}

/// Reads a big-endian `u16` at `at`; callers have checked the length.
#[inline]
pub(crate) fn be16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// Writes a big-endian `u16` at `at`; callers have checked the length.
#[inline]
pub(crate) fn put_be16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}
