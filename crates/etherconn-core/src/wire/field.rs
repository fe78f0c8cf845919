//! What every protocol view shares: big-endian 16-bit field access and [`Span`], a byte range
//! within a frame.

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
