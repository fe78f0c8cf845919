//! IPv6 headers (RFC 8200) and the walk over extension headers to the upper layer.

use core::fmt;
use core::net::Ipv6Addr;

use super::error::check_len;
use super::error::{Error, Result};
use super::field::{be16, put_be16, Span};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Extension header numbers walked by [`Packet::upper_layer`].
pub mod ext {
    /// Hop-by-hop options.
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Authentication header (length in 4-byte units).
    pub const AUTH: u8 = 51;
    /// Destination options.
    pub const DEST_OPTS: u8 = 60;
    /// No next header.
    pub const NO_NEXT: u8 = 59;
}

/// Most extension headers walked before the packet is called malformed; a bound keeps hostile
/// chains from costing more than a few loads.
pub const MAX_EXT_HEADERS: usize = 8;

const PROTO: &str = "IPv6";

/// Where the upper-layer data of an IPv6 packet is, after its extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol number (never an extension header number).
    pub protocol: u8,
    /// The upper-layer bytes, relative to the start of the IPv6 header.
    pub span: Span,
    /// Whether a fragment header was found (the packet is a fragment, or an atomic fragment
    /// with offset 0 and no more fragments, which RFC 6946 says to process as whole).
    pub fragment: bool,
}

/// A zero-copy view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    #[inline]
    /// Wraps a buffer after checking the version and that the payload length fits.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    /// Checks the version and the payload length against the buffer.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        check_len(PROTO, data, HEADER_LEN)?;
        if self.version() != 6 {
            return Err(Error::malformed(PROTO, "version is not 6"));
        }
        check_len(PROTO, data, HEADER_LEN + usize::from(self.payload_len()))
    }

    #[inline]
    /// IP version (6 for a valid packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    #[inline]
    /// Traffic class.
    pub fn traffic_class(&self) -> u8 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        (b[0] << 4) | (b[1] >> 4)
    }

    #[inline]
    /// Flow label.
    pub fn flow_label(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([0, b[1] & 0x0f, b[2], b[3]])
    }

    #[inline]
    /// Payload length (extension headers and upper layer).
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    /// Next header after the fixed header.
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    #[inline]
    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC_ADDR]);
        Ipv6Addr::from(a)
    }

    #[inline]
    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST_ADDR]);
        Ipv6Addr::from(a)
    }

    #[inline]
    /// The payload (extension headers and upper layer), padding trimmed.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Walks the extension headers to the upper layer.
    ///
    /// Every extension header's length is checked against the payload length; a chain longer
    /// than [`MAX_EXT_HEADERS`], a header that runs past the payload, or "no next header" is
    /// malformed.
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let end = HEADER_LEN + usize::from(self.payload_len());
        let data = &self.buffer.as_ref()[..end];
        let mut next = self.next_header();
        let mut at = HEADER_LEN;
        let mut fragment = false;
        for _ in 0..=MAX_EXT_HEADERS {
            let len = match next {
                ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS => {
                    check_len(PROTO, data, at + 2)?;
                    (usize::from(data[at + 1]) + 1) * 8
                }
                ext::AUTH => {
                    check_len(PROTO, data, at + 2)?;
                    // RFC 4302: at least the 12-byte fixed part, so the length field is >= 1.
                    if data[at + 1] == 0 {
                        return Err(Error::malformed(PROTO, "authentication header too short"));
                    }
                    (usize::from(data[at + 1]) + 2) * 4
                }
                ext::FRAGMENT => {
                    check_len(PROTO, data, at + 8)?;
                    let off_m = be16(data, at + 2);
                    // An atomic fragment (offset 0, M clear) is a whole packet (RFC 6946).
                    fragment |= off_m & 0xfff9 != 0;
                    8
                }
                ext::NO_NEXT => return Err(Error::malformed(PROTO, "no next header")),
                protocol => {
                    return Ok(UpperLayer {
                        protocol,
                        span: Span::new(at, end),
                        fragment,
                    })
                }
            };
            if next == ext::HOP_BY_HOP && at != HEADER_LEN {
                return Err(Error::malformed(PROTO, "hop-by-hop options not first"));
            }
            check_len(PROTO, data, at + len)?;
            next = data[at];
            at += len;
        }
        Err(Error::malformed(PROTO, "too many extension headers"))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, the traffic class and the flow label.
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, len: u16) {
        put_be16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the next header.
    pub fn set_next_header(&mut self, next: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = next;
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Packet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPv6 src={} dst={} nxt={} len={} hop={}",
            self.src_addr(),
            self.dst_addr(),
            self.next_header(),
            self.payload_len(),
            self.hop_limit()
        )
    }
}

/// The owned contents of a fixed IPv6 header, as etherconn sends it (no extension headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header (the upper-layer protocol when there are no extension headers).
    pub next_header: u8,
    /// Payload length.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class (DSCP << 2 | ECN).
    pub traffic_class: u8,
}

impl Repr {
    /// Parses the fixed header of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
        })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header into the start of `packet`'s buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        let len = u16::try_from(self.payload_len).map_err(|_| Error::Unrepresentable {
            protocol: PROTO,
            reason: "payload longer than 65535 bytes",
        })?;
        check_len(PROTO, packet.buffer.as_ref(), HEADER_LEN)?;
        packet.set_version_tc_flow(self.traffic_class, 0);
        packet.set_payload_len(len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPv6 src={} dst={} nxt={} len={} hop={}",
            self.src_addr, self.dst_addr, self.next_header, self.payload_len, self.hop_limit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(next: u8, payload_len: u16) -> [u8; 40] {
        let mut b = [0u8; 40];
        let mut p = Packet::new_unchecked(&mut b[..]);
        let r = Repr {
            src_addr: "2001:db8::1".parse().unwrap(),
            dst_addr: "2001:db8::2".parse().unwrap(),
            next_header: next,
            payload_len: usize::from(payload_len),
            hop_limit: 64,
            traffic_class: 0xb8,
        };
        r.emit(&mut p).unwrap();
        b
    }

    #[test]
    fn roundtrip_fixed_header() {
        let mut b = [0u8; 48];
        b[..40].copy_from_slice(&header(17, 8));
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        let r = Repr::parse(&p).unwrap();
        let mut out = [0u8; 40];
        r.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, b[..40]);
        let ul = p.upper_layer().unwrap();
        assert_eq!(
            ul,
            UpperLayer {
                protocol: 17,
                span: Span::new(40, 48),
                fragment: false
            }
        );
    }

    #[test]
    fn walks_extension_headers() {
        // hop-by-hop (8 bytes) -> destination options (16 bytes) -> UDP (8 bytes).
        let mut b = [0u8; 72];
        b[..40].copy_from_slice(&header(ext::HOP_BY_HOP, 32));
        b[40] = ext::DEST_OPTS;
        b[41] = 0;
        b[48] = 17;
        b[49] = 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        let ul = p.upper_layer().unwrap();
        assert_eq!(ul.protocol, 17);
        assert_eq!(ul.span, Span::new(64, 72));
    }

    #[test]
    fn fragment_header() {
        let mut b = [0u8; 56];
        b[..40].copy_from_slice(&header(ext::FRAGMENT, 16));
        b[40] = 17;
        b[43] = 1; // M flag
        let ul = Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
        assert!(ul.fragment);
        b[43] = 0; // atomic fragment
        let ul = Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
        assert!(!ul.fragment);
    }

    #[test]
    fn hostile_chains() {
        // An extension header that claims to run past the payload.
        let mut b = [0u8; 48];
        b[..40].copy_from_slice(&header(ext::DEST_OPTS, 8));
        b[40] = 17;
        b[41] = 1; // 16 bytes, only 8 present
        assert!(Packet::new_checked(&b[..]).unwrap().upper_layer().is_err());
        // A long chain of 8-byte destination options.
        let mut b = [0u8; 40 + 8 * 12];
        b[..40].copy_from_slice(&header(ext::DEST_OPTS, 96));
        for i in 0..12 {
            b[40 + i * 8] = ext::DEST_OPTS;
        }
        assert!(Packet::new_checked(&b[..]).unwrap().upper_layer().is_err());
        // No next header, and hop-by-hop after another header.
        let mut b = [0u8; 48];
        b[..40].copy_from_slice(&header(ext::NO_NEXT, 8));
        assert!(Packet::new_checked(&b[..]).unwrap().upper_layer().is_err());
        b[6] = ext::DEST_OPTS;
        b[40] = ext::HOP_BY_HOP;
        assert!(Packet::new_checked(&b[..]).unwrap().upper_layer().is_err());
        // Payload length past the buffer; wrong version.
        let b2 = header(17, 9);
        assert!(Packet::new_checked(&b2[..]).is_err());
        let mut b3 = [0u8; 40];
        b3.copy_from_slice(&header(17, 0));
        b3[0] = 0x45;
        assert!(Packet::new_checked(&b3[..]).is_err());
    }
}
