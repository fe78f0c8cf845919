//! IPv4 headers (RFC 791): options, total length, fragments and the header checksum.
//!
//! The rules a received header must pass are written once, on the view, and both
//! [`Repr::parse`] and the classifier call them: [`Packet::check_len`] (version, IHL, total
//! length against the buffer) and [`Packet::check_checksum`].
//!
//! # Fragments
//!
//! etherconn does not reassemble. A fragment (more-fragments set or a non-zero offset,
//! [`Packet::is_fragment`]) is a valid IPv4 packet whose payload is not a whole upper-layer
//! datagram: its header is parsed and checked like any other ([`Repr::parse`] returns it with
//! [`Repr::more_frags`] / [`Repr::frag_offset`] set, the classifier reports its IP layer with
//! `fragment` set), and nothing reads its payload as UDP (the classifier reports no UDP layer; the
//! relays deliver such frames at L2 only and count them). IPv6 fragments follow the same policy
//! ([`super::ipv6::UpperLayer::fragment`]).

use core::fmt;
use core::net::Ipv4Addr;

use super::checksum;
use super::error::check_len;
use super::error::{Error, Result};
use super::field::{be16, put_be16};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

const PROTO: &str = "IPv4";

/// A zero-copy view of an IPv4 packet.
///
/// [`Packet::new_checked`] verifies the version, that IHL is at least 5, and that the header and
/// the total length fit in the buffer; after it, [`Packet::payload`] is the upper-layer data with
/// any Ethernet padding trimmed.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    /// Wraps a buffer without checking it; getters may then panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    #[inline]
    /// Wraps a buffer after checking the version and every length field against it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    /// Checks the version and that IHL and total length are consistent with the buffer.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        check_len(PROTO, data, HEADER_LEN)?;
        if self.version() != 4 {
            return Err(Error::malformed(PROTO, "version is not 4"));
        }
        let hlen = self.header_len();
        if hlen < HEADER_LEN {
            return Err(Error::malformed(PROTO, "IHL below 5"));
        }
        let total = usize::from(self.total_len());
        if total < hlen {
            return Err(Error::malformed(PROTO, "total length shorter than header"));
        }
        check_len(PROTO, data, total)
    }

    #[inline]
    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    /// IP version (4 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    #[inline]
    /// Header length in bytes (IHL x 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    #[inline]
    /// Differentiated services code point.
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] >> 2
    }

    #[inline]
    /// Explicit congestion notification bits.
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN] & 0x3
    }

    #[inline]
    /// Total length (header and payload).
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    /// Identification.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    /// The reserved flag, the first bit of the flags (RFC 791: must be zero). Not checked on
    /// receive, as no common IP stack (Linux's among them) checks it; a receiver that wants
    /// only what conforming hosts send reads it here.
    pub fn reserved_flag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & 0x8000 != 0
    }

    #[inline]
    /// Don't-fragment flag.
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & 0x4000 != 0
    }

    #[inline]
    /// More-fragments flag.
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & 0x2000 != 0
    }

    #[inline]
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLG_OFF) & 0x1fff) << 3
    }

    #[inline]
    /// Whether this packet is a fragment (more fragments follow, or it is not the first).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }

    #[inline]
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    /// Upper-layer protocol number.
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    #[inline]
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    #[inline]
    /// Options bytes between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Whether the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }

    /// Checks the header checksum as a receiver must: [`Error::Checksum`] when it does not verify.
    #[inline]
    pub fn check_checksum(&self) -> Result<()> {
        if self.verify_checksum() {
            Ok(())
        } else {
            Err(Error::Checksum { protocol: PROTO })
        }
    }

    #[inline]
    /// The payload: from the end of the header to the total length (Ethernet padding trimmed).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 4 and the header length (a multiple of 4 from 20 to 60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets DSCP and ECN.
    pub fn set_dscp_ecn(&mut self, dscp: u8, ecn: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = (dscp << 2) | (ecn & 0x3);
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, len: u16) {
        put_be16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the identification.
    pub fn set_ident(&mut self, ident: u16) {
        put_be16(self.buffer.as_mut(), field::IDENT, ident);
    }

    /// Sets the flags and fragment offset (offset in bytes, a multiple of 8).
    pub fn set_flags_and_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let v =
            (u16::from(dont_frag) << 14) | (u16::from(more_frags) << 13) | ((offset >> 3) & 0x1fff);
        put_be16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum.
    pub fn fill_checksum(&mut self) {
        put_be16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let hlen = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hlen]);
        put_be16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// The payload, mutably (to the total length).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[start..end]
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Packet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Repr::parse(self) {
            Ok(r) => write!(f, "{r}"),
            Err(e) => write!(f, "IPv4 ({e})"),
        }
    }
}

/// The owned contents of an IPv4 header (without options), as etherconn sends it.
///
/// A fragment is represented too (see [the module docs](self) for the fragment policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Upper-layer protocol.
    pub protocol: u8,
    /// Upper-layer length (bytes after the header).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Differentiated services code point (0 to 63).
    pub dscp: u8,
    /// Identification field.
    pub ident: u16,
    /// Don't-fragment flag.
    pub dont_frag: bool,
    /// More-fragments flag.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
}

impl Repr {
    /// Parses a packet: its lengths ([`Packet::check_len`]) and header checksum
    /// ([`Packet::check_checksum`]) must be valid. A fragment parses (see the module docs).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        packet.check_checksum()?;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// Whether this header is a fragment's (see the module docs): the same test as
    /// [`Packet::is_fragment`].
    pub const fn is_fragment(&self) -> bool {
        self.more_frags || self.frag_offset != 0
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header (with a correct checksum) into the start of `packet`'s buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        let total = HEADER_LEN + self.payload_len;
        let total16 = u16::try_from(total).map_err(|_| Error::Unrepresentable {
            protocol: PROTO,
            reason: "packet longer than 65535 bytes",
        })?;
        if self.dscp > 63 {
            return Err(Error::Unrepresentable {
                protocol: PROTO,
                reason: "DSCP above 63",
            });
        }
        if self.frag_offset % 8 != 0 {
            return Err(Error::Unrepresentable {
                protocol: PROTO,
                reason: "fragment offset not a multiple of 8",
            });
        }
        check_len(PROTO, packet.buffer.as_ref(), HEADER_LEN)?;
        packet.set_version_and_header_len(HEADER_LEN);
        packet.set_dscp_ecn(self.dscp, 0);
        packet.set_total_len(total16);
        packet.set_ident(self.ident);
        packet.set_flags_and_offset(self.dont_frag, self.more_frags, self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
        Ok(())
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPv4 src={} dst={} proto={} len={} ttl={}",
            self.src_addr, self.dst_addr, self.protocol, self.payload_len, self.ttl
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 192.168.0.1 -> 192.168.0.199, UDP, total length 0x73, checksum b861, then 95 payload
    // bytes and 4 bytes of Ethernet-style padding.
    fn packet() -> [u8; 119] {
        let mut p = [0u8; 119];
        p[..20].copy_from_slice(&[
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ]);
        p[20] = 0xaa;
        p[115..].copy_from_slice(&[0xee; 4]);
        p
    }

    #[test]
    fn deconstruct() {
        let bytes = packet();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x73);
        assert!(p.dont_frag());
        assert!(!p.reserved_flag());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 0x73 - 20, "padding trimmed");
        assert_eq!(p.payload()[0], 0xaa);
    }

    #[test]
    fn reserved_flag_is_read_and_nothing_else_changes() {
        let mut bytes = packet();
        bytes[6] |= 0x80;
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.reserved_flag());
        assert!(p.dont_frag() && !p.is_fragment());
    }

    #[test]
    fn parse_emit_roundtrip() {
        let bytes = packet();
        let repr = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr.payload_len, 95);
        let mut out = [0u8; 20];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, bytes[..20]);
    }

    #[test]
    fn options_are_honoured() {
        let mut b = [0u8; 32];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_version_and_header_len(24);
        p.set_total_len(32);
        p.set_protocol(17);
        p.fill_checksum();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options().len(), 4);
        assert_eq!(p.payload().len(), 8);
        assert!(Repr::parse(&p).is_ok());
    }

    #[test]
    fn malformed() {
        let good = packet();
        let mut b = good;
        b[0] = 0x44; // IHL 4
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(Error::Malformed { .. })
        ));
        let mut b = good;
        b[0] = 0x65; // version 6
        assert!(Packet::new_checked(&b[..]).is_err());
        let mut b = good;
        b[2..4].copy_from_slice(&200u16.to_be_bytes()); // total length past the buffer
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(Error::Truncated { .. })
        ));
        let mut b = good;
        b[2..4].copy_from_slice(&10u16.to_be_bytes()); // total length inside the header
        assert!(Packet::new_checked(&b[..]).is_err());
        let mut b = good;
        b[0] = 0x4f; // IHL 15 (60 bytes) with a total length of 40
        b[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert!(Packet::new_checked(&b[..]).is_err());
        assert!(Packet::new_checked(&good[..19]).is_err());
        let mut b = good;
        b[11] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&b[..]).unwrap()),
            Err(Error::Checksum { protocol: PROTO })
        );
    }

    #[test]
    fn fragments_recognised() {
        let mut b = packet();
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_flags_and_offset(false, true, 0);
        p.fill_checksum();
        assert!(Packet::new_checked(&b[..]).unwrap().is_fragment());
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_flags_and_offset(false, false, 1480);
        p.fill_checksum();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        // The fragment policy: the header parses, marked as a fragment's, and round-trips.
        let repr = Repr::parse(&p).unwrap();
        assert!(repr.is_fragment());
        assert_eq!((repr.more_frags, repr.frag_offset), (false, 1480));
        let mut out = [0u8; 20];
        repr.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, b[..20]);
    }

    #[test]
    fn emit_rejects_oversize() {
        let r = Repr {
            src_addr: Ipv4Addr::LOCALHOST,
            dst_addr: Ipv4Addr::LOCALHOST,
            protocol: 17,
            payload_len: 70000,
            ttl: 1,
            dscp: 0,
            ident: 0,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
        };
        assert!(r
            .emit(&mut Packet::new_unchecked(&mut [0u8; 20][..]))
            .is_err());
        let r = Repr {
            payload_len: 8,
            frag_offset: 4,
            ..r
        };
        assert!(r
            .emit(&mut Packet::new_unchecked(&mut [0u8; 20][..]))
            .is_err());
    }
}
