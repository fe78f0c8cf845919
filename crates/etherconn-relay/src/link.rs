//! [`SizeLimit`]: how much payload one frame carries on a relay's link, and why.
//!
//! Two things bound a frame: the interface's MTU (what the kernel and the peers on the link
//! take) and the relay's frame buffers (`DispatcherConfig::buf_len`). The MTU counts the bytes
//! after the Ethernet header. Linux lets a packet socket send 4 bytes more when the outermost
//! tag is 802.1Q (0x8100: a 1500-byte MTU link takes 1518-byte tagged frames, as most switches
//! do), and no more for any other outer tag or a second one: an 802.1Q tag costs no payload, an
//! 802.1ad (0x88a8) outer tag and every tag after the first cost 4 bytes each. Nothing is
//! fragmented.

use core::fmt;

use etherconn_core::wire::{ethernet, vlan, Tpid, VlanTag};

/// The MTU of a standard Ethernet link, what a relay that does not know its link assumes.
pub const DEFAULT_MTU: usize = 1500;

/// The largest payload (the bytes after the last VLAN tag's EtherType) one frame carries on a
/// link, for a given VLAN stack, with what bounds it.
///
/// `Display` says why, for error messages ("the interface MTU of 1500 bytes less 4 bytes for
/// VLAN tags").
///
/// ```
/// use etherconn_core::wire::{Tpid, VlanId, VlanTag};
/// use etherconn_relay::SizeLimit;
///
/// let dot1q = VlanTag::dot1q(100).unwrap();
/// let s_tag = VlanTag::new(Tpid::QINQ, VlanId::new(10).unwrap());
/// // A 1500-byte MTU link, frames in 2048-byte buffers.
/// assert_eq!(SizeLimit::new(1500, &[], 2048).payload(), 1500);
/// assert_eq!(SizeLimit::new(1500, &[dot1q], 2048).payload(), 1500); // a 1518-byte frame
/// assert_eq!(SizeLimit::new(1500, &[dot1q, dot1q], 2048).payload(), 1496);
/// assert_eq!(SizeLimit::new(1500, &[s_tag, dot1q], 2048).payload(), 1492);
/// // A jumbo link whose frames the buffers cannot hold: the buffers decide.
/// assert_eq!(SizeLimit::new(9000, &[dot1q], 2048).payload(), 2048 - 14 - 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SizeLimit {
    /// The interface's MTU, bytes after the Ethernet header.
    pub mtu: usize,
    /// VLAN tags in the frame.
    pub tags: usize,
    /// Whether the outermost tag is 802.1Q (0x8100), which the link carries on top of its MTU.
    pub dot1q_outer: bool,
    /// The relay's frame buffer length: the largest whole frame it sends or receives.
    pub buf_len: usize,
}

impl SizeLimit {
    /// The limit for frames with the VLAN stack `vlans` (outermost first) on a link of `mtu`
    /// bytes, in buffers of `buf_len` bytes.
    pub fn new(mtu: usize, vlans: &[VlanTag], buf_len: usize) -> SizeLimit {
        SizeLimit {
            mtu,
            tags: vlans.len(),
            dot1q_outer: vlans.first().is_some_and(|t| t.tpid == Tpid::DOT1Q),
            buf_len,
        }
    }

    /// Bytes of the MTU the tags take: 4 per tag, less the 4 an outer 802.1Q tag rides on.
    pub const fn tag_cost(&self) -> usize {
        let all = self.tags * vlan::HEADER_LEN;
        if self.dot1q_outer {
            all - vlan::HEADER_LEN
        } else {
            all
        }
    }

    /// The payload the link's MTU allows.
    const fn link_payload(&self) -> usize {
        self.mtu.saturating_sub(self.tag_cost())
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
        match self.tag_cost() {
            0 => Ok(()),
            cost => write!(
                f,
                " less {cost} bytes for VLAN tags (only an outermost 802.1Q tag rides on top \
                 of the MTU)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_reasons() {
        let c = VlanTag::dot1q(100).unwrap();
        let s = VlanTag::new(Tpid::QINQ, c.id);
        let l = SizeLimit::new(1500, &[], 2048);
        assert_eq!((l.payload(), l.frame_len()), (1500, 1514));
        assert_eq!(l.to_string(), "the interface MTU of 1500 bytes");
        let l = SizeLimit::new(1500, &[c], 2048);
        assert_eq!((l.payload(), l.frame_len()), (1500, 1518));
        assert_eq!(l.to_string(), "the interface MTU of 1500 bytes");
        let l = SizeLimit::new(1500, &[s], 2048);
        assert_eq!((l.payload(), l.frame_len()), (1496, 1514));
        let l = SizeLimit::new(1500, &[c, c], 2048);
        assert_eq!((l.payload(), l.frame_len()), (1496, 1518));
        assert_eq!(
            l.to_string(),
            "the interface MTU of 1500 bytes less 4 bytes for VLAN tags (only an outermost \
             802.1Q tag rides on top of the MTU)"
        );
        let l = SizeLimit::new(1500, &[s, c], 2048);
        assert_eq!((l.payload(), l.frame_len()), (1492, 1514));
        let l = SizeLimit::new(9000, &[s, c], 2048);
        assert!(l.buffer_bound());
        assert_eq!((l.payload(), l.frame_len()), (2026, 2048));
        assert_eq!(
            l.to_string(),
            "the relay's 2048-byte frame buffers less 22 bytes of Ethernet header and VLAN tags"
        );
        // Degenerate sizes saturate rather than wrap.
        assert_eq!(SizeLimit::new(0, &[s, c], 10).payload(), 0);
    }
}
