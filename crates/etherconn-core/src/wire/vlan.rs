//! IEEE 802.1Q / 802.1ad VLAN tags and stacks of them.
//!
//! On the wire a tag is the TPID (in the place of the EtherType) followed by the 16-bit TCI
//! (PCP, DEI, VLAN id) and then the next EtherType. The view [`Packet`] covers the TCI and that
//! next EtherType, i.e. it starts where the preceding header's EtherType field ends.

use core::fmt;

use super::error::check_len;
use super::error::{Error, Result};
use super::ethernet;
use super::ethernet::EtherType;
use super::field::{be16, put_be16};

/// A 12-bit VLAN identifier (0 to 4095).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug)]
pub struct VlanId(u16);

impl VlanId {
    /// The largest value a 12-bit id holds.
    pub const MAX: u16 = 0x0fff;

    /// A VLAN id, or `None` when `id` does not fit in 12 bits.
    pub const fn new(id: u16) -> Option<VlanId> {
        if id <= Self::MAX {
            Some(VlanId(id))
        } else {
            None
        }
    }

    /// The numeric id.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// Whether the id is 4095 ([`VlanId::MAX`]), which IEEE 802.1Q reserves: no VLAN carries
    /// frames tagged with it. (Id 0 is not reserved in that sense: it marks a priority-tagged
    /// frame, which belongs to no VLAN but carries a priority.)
    pub const fn is_reserved(self) -> bool {
        self.0 == Self::MAX
    }
}

impl fmt::Display for VlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl TryFrom<u16> for VlanId {
    type Error = Error;

    fn try_from(id: u16) -> Result<Self> {
        VlanId::new(id).ok_or(Error::malformed("VLAN", "id does not fit in 12 bits"))
    }
}

/// A tag protocol identifier: the EtherType that announces a VLAN tag.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tpid(u16);

impl Tpid {
    /// 0x8100, IEEE 802.1Q (customer tag).
    pub const DOT1Q: Tpid = Tpid(0x8100);
    /// 0x88a8, IEEE 802.1ad (service tag, the usual QinQ outer tag).
    pub const QINQ: Tpid = Tpid(0x88a8);
    /// 0x9100, the pre-standard QinQ outer tag.
    pub const QINQ_LEGACY: Tpid = Tpid(0x9100);

    /// The TPID for `value`, or `None` when it is not one of 0x8100, 0x88a8 or 0x9100.
    pub const fn new(value: u16) -> Option<Tpid> {
        match value {
            0x8100 | 0x88a8 | 0x9100 => Some(Tpid(value)),
            _ => None,
        }
    }

    /// The TPID as an EtherType value.
    pub const fn ethertype(self) -> EtherType {
        EtherType(self.0)
    }

    /// The numeric value.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl Default for Tpid {
    fn default() -> Self {
        Tpid::DOT1Q
    }
}

impl fmt::Display for Tpid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

impl fmt::Debug for Tpid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tpid(0x{:04x})", self.0)
    }
}

/// One VLAN tag as configured on an endpoint or found on a frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct VlanTag {
    /// Tag protocol identifier.
    pub tpid: Tpid,
    /// Priority code point (0 to 7).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier.
    pub id: VlanId,
}

impl VlanTag {
    /// A tag with priority 0 and DEI clear.
    pub const fn new(tpid: Tpid, id: VlanId) -> VlanTag {
        VlanTag {
            tpid,
            pcp: 0,
            dei: false,
            id,
        }
    }

    /// An 802.1Q (0x8100) tag for `id`, or `None` when `id` exceeds 12 bits.
    pub const fn dot1q(id: u16) -> Option<VlanTag> {
        match VlanId::new(id) {
            Some(id) => Some(VlanTag::new(Tpid::DOT1Q, id)),
            None => None,
        }
    }

    /// This tag with priority `pcp` (only its low 3 bits are used).
    pub const fn with_pcp(mut self, pcp: u8) -> VlanTag {
        self.pcp = pcp & 0x7;
        self
    }

    /// The tag control information field: PCP, DEI and id.
    pub const fn tci(self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | ((self.dei as u16) << 12) | self.id.0
    }

    /// The tag for a TPID and a TCI read off the wire.
    pub const fn from_tci(tpid: Tpid, tci: u16) -> VlanTag {
        VlanTag {
            tpid,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            id: VlanId(tci & 0x0fff),
        }
    }
}

impl fmt::Display for VlanTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} pcp={} dei={}",
            self.tpid,
            self.id,
            self.pcp,
            u8::from(self.dei)
        )
    }
}

/// The most tags etherconn dispatches on: QinQ plus one more (a stack of three, as test
/// equipment and some access networks use); a fourth is an error everywhere.
pub const MAX_TAGS: usize = 3;

/// What a configuration error says of a stack longer than [`MAX_TAGS`], in one place for every
/// layer that refuses one.
pub const TOO_MANY_TAGS: &str = "at most three VLAN tags";

/// Up to [`MAX_TAGS`] VLAN tags, outermost first; `Copy` so that a classified frame carries it
/// without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct VlanStack {
    tags: [VlanTag; MAX_TAGS],
    len: u8,
}

impl VlanStack {
    /// The empty stack (untagged).
    pub const EMPTY: VlanStack = VlanStack {
        tags: [VlanTag::new(Tpid::DOT1Q, VlanId(0)); MAX_TAGS],
        len: 0,
    };

    /// A stack of the given tags, outermost first; more than [`MAX_TAGS`] is an error.
    pub fn from_slice(tags: &[VlanTag]) -> Result<VlanStack> {
        let mut s = VlanStack::EMPTY;
        for t in tags {
            s.push(*t)?;
        }
        Ok(s)
    }

    /// Appends an inner tag; more than [`MAX_TAGS`] is an error.
    pub fn push(&mut self, tag: VlanTag) -> Result<()> {
        let i = usize::from(self.len);
        if i >= MAX_TAGS {
            return Err(Error::malformed("VLAN", "more than three tags"));
        }
        self.tags[i] = tag;
        self.len += 1;
        Ok(())
    }

    /// The tags, outermost first.
    pub fn as_slice(&self) -> &[VlanTag] {
        &self.tags[..usize::from(self.len)]
    }

    /// Number of tags.
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the stack holds no tag.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the tags take on the wire (4 per tag).
    pub const fn wire_len(&self) -> usize {
        self.len as usize * HEADER_LEN
    }
}

mod field {
    pub const TCI: usize = 0;
    pub const ETHERTYPE: usize = 2;
    pub const PAYLOAD: usize = 4;
}

/// Bytes a tag adds to a frame.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A zero-copy view of a VLAN tag's TCI and the EtherType that follows it.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer of at least 4 bytes.
    pub fn new_checked(buffer: T) -> Result<Self> {
        check_len("VLAN", buffer.as_ref(), HEADER_LEN)?;
        Ok(Packet { buffer })
    }

    /// The raw TCI.
    pub fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TCI)
    }

    /// Priority code point.
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN id.
    pub fn vlan_id(&self) -> VlanId {
        VlanId(self.tci() & 0x0fff)
    }

    /// The EtherType after this tag (another TPID for a stacked tag).
    pub fn ethertype(&self) -> EtherType {
        EtherType(be16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// What follows the tag.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the TCI.
    pub fn set_tci(&mut self, tci: u16) {
        put_be16(self.buffer.as_mut(), field::TCI, tci);
    }

    /// Sets the EtherType after the tag.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        put_be16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0);
    }
}

/// The owned contents of one tag: the TCI fields and the EtherType after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Priority code point.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN id.
    pub id: VlanId,
    /// The EtherType after the tag.
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads a tag.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        check_len("VLAN", packet.buffer.as_ref(), HEADER_LEN)?;
        Ok(Repr {
            pcp: packet.pcp(),
            dei: packet.dei(),
            id: packet.vlan_id(),
            ethertype: packet.ethertype(),
        })
    }

    /// Bytes the tag takes after the TPID.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// The tag this representation describes, once its TPID is known.
    pub const fn tag(&self, tpid: Tpid) -> VlanTag {
        VlanTag {
            tpid,
            pcp: self.pcp,
            dei: self.dei,
            id: self.id,
        }
    }

    /// Writes the TCI and EtherType.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        check_len("VLAN", packet.buffer.as_ref(), HEADER_LEN)?;
        if self.pcp > 7 {
            return Err(Error::Unrepresentable {
                protocol: "VLAN",
                reason: "PCP above 7",
            });
        }
        packet.set_tci(self.tag(Tpid::DOT1Q).tci());
        packet.set_ethertype(self.ethertype);
        Ok(())
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VLAN id={} pcp={} dei={} type={}",
            self.id,
            self.pcp,
            u8::from(self.dei),
            self.ethertype
        )
    }
}

/// Why [`restore_tag`] wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreTagError {
    /// The frame is shorter than an Ethernet header, so it has no EtherType for a tag to
    /// precede.
    #[error("frame of {0} bytes is shorter than an Ethernet header")]
    FrameTooShort(usize),
    /// The output buffer cannot hold the frame (with its tag).
    #[error("buffer too small: frame needs {needed} bytes, buffer has {available}")]
    BufferTooSmall {
        /// Bytes the restored frame needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
}

/// Where a tag goes: after the destination and source MAC addresses.
const TAG_OFFSET: usize = 12;

/// Writes `frame` into the start of `out` as it was on the wire, with `stripped` (the outer tag
/// a receiver moved out of the frame, as Linux does with VLAN offload and reports in the
/// `AF_PACKET` ring header or `PACKET_AUXDATA`) put back after the two MAC addresses: TPID,
/// then TCI, both big-endian. Without a tag it is a plain copy.
///
/// Returns the length written: `frame.len()`, plus [`HEADER_LEN`] with a tag. `frame` must hold
/// at least an Ethernet header and `out` the whole result; otherwise nothing is written.
///
/// ```
/// use etherconn_core::wire::vlan::restore_tag;
/// use etherconn_core::wire::VlanTag;
///
/// let frame = [0xaa; 14]; // two MACs and an EtherType, all 0xaa
/// let mut out = [0u8; 18];
/// let tag = VlanTag::dot1q(100).unwrap();
/// assert_eq!(restore_tag(&frame, Some(tag), &mut out), Ok(18));
/// assert_eq!(out[12..16], [0x81, 0x00, 0x00, 0x64]);
/// ```
pub fn restore_tag(
    frame: &[u8],
    stripped: Option<VlanTag>,
    out: &mut [u8],
) -> core::result::Result<usize, RestoreTagError> {
    if frame.len() < ethernet::HEADER_LEN {
        return Err(RestoreTagError::FrameTooShort(frame.len()));
    }
    // A slice is at most isize::MAX bytes long, so adding a tag's 4 cannot overflow.
    let needed = frame.len() + if stripped.is_some() { HEADER_LEN } else { 0 };
    let available = out.len();
    let out = out
        .get_mut(..needed)
        .ok_or(RestoreTagError::BufferTooSmall { needed, available })?;
    match stripped {
        None => out.copy_from_slice(frame),
        Some(tag) => {
            let (macs, rest) = frame.split_at(TAG_OFFSET);
            let (out_macs, out_rest) = out.split_at_mut(TAG_OFFSET);
            let (out_tag, out_rest) = out_rest.split_at_mut(HEADER_LEN);
            out_macs.copy_from_slice(macs);
            out_tag[..2].copy_from_slice(&tag.tpid.get().to_be_bytes());
            out_tag[2..].copy_from_slice(&tag.tci().to_be_bytes());
            out_rest.copy_from_slice(rest);
        }
    }
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tci_fields() {
        // PCP 5, DEI 1, id 100 then IPv4.
        let bytes = [0xb0, 0x64, 0x08, 0x00, 0xee];
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.pcp(), 5);
        assert!(p.dei());
        assert_eq!(p.vlan_id().get(), 100);
        assert_eq!(p.ethertype(), EtherType::IPV4);
        assert_eq!(p.payload(), &[0xee]);
        let repr = Repr::parse(&p).unwrap();
        let mut out = [0u8; 4];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, bytes[..4]);
        assert_eq!(VlanTag::from_tci(Tpid::QINQ, 0xb064), repr.tag(Tpid::QINQ));
        assert_eq!(repr.tag(Tpid::QINQ).tci(), 0xb064);
    }

    #[test]
    fn validation() {
        assert!(VlanId::new(4095).is_some());
        assert!(VlanId::new(4096).is_none());
        assert!(VlanId::try_from(5000).is_err());
        assert!(Tpid::new(0x0800).is_none());
        assert_eq!(Tpid::new(0x88a8), Some(Tpid::QINQ));
        assert!(Packet::new_checked(&[0u8; 3][..]).is_err());
        let bad = Repr {
            pcp: 8,
            dei: false,
            id: VlanId(1),
            ethertype: EtherType::IPV4,
        };
        assert!(bad
            .emit(&mut Packet::new_unchecked(&mut [0u8; 4][..]))
            .is_err());
    }

    #[test]
    fn stack_capacity() {
        let t = VlanTag::dot1q(10).unwrap();
        let mut s = VlanStack::EMPTY;
        s.push(t).unwrap();
        s.push(t.with_pcp(3)).unwrap();
        s.push(t.with_pcp(5)).unwrap();
        assert!(s.push(t).is_err());
        assert_eq!(s.len(), 3);
        assert_eq!(s.wire_len(), 12);
        assert_eq!(s.as_slice()[1].pcp, 3);
        assert_eq!(s.as_slice()[2].pcp, 5);
        assert_eq!(VlanStack::from_slice(&[t, t, t]).unwrap().len(), 3);
        assert!(VlanStack::from_slice(&[t, t, t, t]).is_err());
    }

    /// Two MACs (01..06, 07..0c), EtherType IPv4, two payload bytes.
    const UNTAGGED: [u8; 16] = [
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x08, 0x00, 0xde,
        0xad,
    ];

    #[test]
    fn restore_tag_puts_the_tag_after_the_macs() {
        // PCP 5, DEI 0, id 100 under 802.1ad.
        let tag = VlanTag::from_tci(Tpid::QINQ, 0xa064);
        let mut out = [0xffu8; 24];
        assert_eq!(restore_tag(&UNTAGGED, Some(tag), &mut out), Ok(20));
        // The MACs, the tag, then EtherType and payload unchanged; past the frame untouched.
        assert_eq!(out[..12], UNTAGGED[..12]);
        assert_eq!(out[12..16], [0x88, 0xa8, 0xa0, 0x64]);
        assert_eq!(out[16..20], [0x08, 0x00, 0xde, 0xad]);
        assert_eq!(out[20..], [0xff; 4]);
        // A priority tag (id 0) with DEI, 802.1Q, on a bare Ethernet header.
        let tag = VlanTag::from_tci(Tpid::DOT1Q, 0x7000);
        let mut out = [0u8; 18];
        assert_eq!(restore_tag(&UNTAGGED[..14], Some(tag), &mut out), Ok(18));
        assert_eq!(out[12..], [0x81, 0x00, 0x70, 0x00, 0x08, 0x00]);
    }

    #[test]
    fn restore_tag_without_a_tag_copies() {
        let mut out = [0u8; 16];
        assert_eq!(restore_tag(&UNTAGGED, None, &mut out), Ok(16));
        assert_eq!(out, UNTAGGED);
        assert_eq!(
            restore_tag(&UNTAGGED, None, &mut out[..15]),
            Err(RestoreTagError::BufferTooSmall {
                needed: 16,
                available: 15
            })
        );
    }

    #[test]
    fn restore_tag_rejects_short_frames_and_small_buffers() {
        let tag = VlanTag::dot1q(100).unwrap();
        let mut out = [0x55u8; 32];
        // Shorter than an Ethernet header: two MACs alone, or less.
        for len in [0, 11, 12, 13] {
            assert_eq!(
                restore_tag(&UNTAGGED[..len], Some(tag), &mut out),
                Err(RestoreTagError::FrameTooShort(len))
            );
            assert_eq!(
                restore_tag(&UNTAGGED[..len], None, &mut out),
                Err(RestoreTagError::FrameTooShort(len))
            );
        }
        // Room for the frame but not for the tag.
        assert_eq!(
            restore_tag(&UNTAGGED, Some(tag), &mut out[..19]),
            Err(RestoreTagError::BufferTooSmall {
                needed: 20,
                available: 19
            })
        );
        assert_eq!(
            restore_tag(&UNTAGGED, Some(tag), &mut []),
            Err(RestoreTagError::BufferTooSmall {
                needed: 20,
                available: 0
            })
        );
        // Nothing was written by any failed call.
        assert_eq!(out, [0x55; 32]);
    }

    #[test]
    fn restore_tag_undoes_stripping() {
        // A QinQ frame whose outer tag a receiver stripped: the inner tag stays in the bytes.
        let wire = [
            2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xa8, 0x00, 0xc8, 0x81, 0x00, 0x00, 0x64,
            0x08, 0x00, 0x45,
        ];
        let outer = Packet::new_checked(&wire[14..]).unwrap();
        let tag = Repr::parse(&outer).unwrap().tag(Tpid::QINQ);
        let mut stripped = [0u8; 19];
        stripped[..12].copy_from_slice(&wire[..12]);
        stripped[12..].copy_from_slice(&wire[16..]);
        let mut out = [0u8; 23];
        assert_eq!(restore_tag(&stripped, Some(tag), &mut out), Ok(23));
        assert_eq!(out, wire);
    }
}
