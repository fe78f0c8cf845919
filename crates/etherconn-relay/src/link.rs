//! [`SizeLimit`]: how much payload one frame carries on a relay's link, and why.
//!
//! Two things bound a frame: the interface's MTU (what the kernel and the peers on the link
//! take) and the relay's frame buffers (`DispatcherConfig::buf_len`). The MTU counts the bytes
//! after the Ethernet header; as Linux and most switches do, a link also carries one VLAN tag
//! on top of it (a 1500-byte MTU link takes 1518-byte tagged frames), so the first tag costs
//! no payload and a second one (QinQ) costs 4 bytes. Nothing is fragmented.

use core::fmt;

use etherconn_core::wire::{ethernet, vlan};

/// The MTU of a standard Ethernet link, what a relay that does not know its link assumes.
pub const DEFAULT_MTU: usize = 1500;

/// The largest payload (the bytes after the last VLAN tag's EtherType) one frame carries on a
/// link, for a given number of VLAN tags, with what bounds it.
///
/// `Display` says why, for error messages ("the interface MTU of 1500 bytes less 4 bytes for
/// the second VLAN tag").
///
/// ```
/// use etherconn_relay::SizeLimit;
///
/// // A 1500-byte MTU link, frames in 2048-byte buffers.
/// assert_eq!(SizeLimit::new(1500, 0, 2048).payload(), 1500);
/// assert_eq!(SizeLimit::new(1500, 1, 2048).payload(), 1500); // a 1518-byte frame
/// assert_eq!(SizeLimit::new(1500, 2, 2048).payload(), 1496); // QinQ: 4 bytes less
/// // A jumbo link whose frames the buffers cannot hold: the buffers decide.
/// assert_eq!(SizeLimit::new(9000, 1, 2048).payload(), 2048 - 14 - 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SizeLimit {
    /// The interface's MTU, bytes after the Ethernet header.
    pub mtu: usize,
    /// VLAN tags in the frame.
    pub tags: usize,
    /// The relay's frame buffer length: the largest whole frame it sends or receives.
    pub buf_len: usize,
}

impl SizeLimit {
    /// The limit for frames with `tags` VLAN tags on a link of `mtu` bytes, in buffers of
    /// `buf_len` bytes.
    pub const fn new(mtu: usize, tags: usize, buf_len: usize) -> SizeLimit {
        SizeLimit { mtu, tags, buf_len }
    }

    /// The payload the link's MTU allows: the MTU, less 4 bytes for every tag after the first.
    const fn link_payload(&self) -> usize {
        self.mtu
            .saturating_sub(self.tags.saturating_sub(1) * vlan::HEADER_LEN)
    }

    /// The payload the relay's buffers allow.
    const fn buffer_payload(&self) -> usize {
        self.buf_len.saturating_sub(self.header_len())
    }

    /// Bytes of Ethernet header and VLAN tags before the payload.
    pub const fn header_len(&self) -> usize {
        ethernet::HEADER_LEN + self.tags * vlan::HEADER_LEN
    }

    /// The largest payload one frame carries (after the last EtherType).
    pub const fn payload(&self) -> usize {
        let link = self.link_payload();
        let buf = self.buffer_payload();
        if link < buf {
            link
        } else {
            buf
        }
    }

    /// The largest whole frame, header and tags included (without the FCS).
    pub const fn frame_len(&self) -> usize {
        self.header_len() + self.payload()
    }

    /// Whether the relay's buffers, not the link's MTU, set the limit.
    pub const fn buffer_bound(&self) -> bool {
        self.buffer_payload() < self.link_payload()
    }
}

impl fmt::Display for SizeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.buffer_bound() {
            return write!(
                f,
                "the relay's {}-byte frame buffers less {} bytes of Ethernet header{}",
                self.buf_len,
                self.header_len(),
                match self.tags {
                    0 => "",
                    1 => " and VLAN tag",
                    _ => " and VLAN tags",
                }
            );
        }
        write!(f, "the interface MTU of {} bytes", self.mtu)?;
        match self.tags {
            0 | 1 => Ok(()),
            n => write!(
                f,
                " less {} bytes for the VLAN tag{} after the first",
                (n - 1) * vlan::HEADER_LEN,
                if n > 2 { "s" } else { "" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_reasons() {
        let l = SizeLimit::new(1500, 0, 2048);
        assert_eq!((l.payload(), l.frame_len()), (1500, 1514));
        assert_eq!(l.to_string(), "the interface MTU of 1500 bytes");
        let l = SizeLimit::new(1500, 1, 2048);
        assert_eq!((l.payload(), l.frame_len()), (1500, 1518));
        assert_eq!(l.to_string(), "the interface MTU of 1500 bytes");
        let l = SizeLimit::new(1500, 2, 2048);
        assert_eq!((l.payload(), l.frame_len()), (1496, 1518));
        assert_eq!(
            l.to_string(),
            "the interface MTU of 1500 bytes less 4 bytes for the VLAN tag after the first"
        );
        let l = SizeLimit::new(9000, 2, 2048);
        assert!(l.buffer_bound());
        assert_eq!((l.payload(), l.frame_len()), (2026, 2048));
        assert_eq!(
            l.to_string(),
            "the relay's 2048-byte frame buffers less 22 bytes of Ethernet header and VLAN tags"
        );
        // Degenerate sizes saturate rather than wrap.
        assert_eq!(SizeLimit::new(0, 2, 10).payload(), 0);
    }
}
