//! Building frames into a caller's buffer: Ethernet + VLAN stack, then IPv4/IPv6 + UDP.
//!
//! Nothing here allocates: the caller owns the buffer (a relay's pooled frame buffer), every
//! length is checked before a byte is written, and checksums are always filled in. Frames
//! shorter than the Ethernet minimum of 60 bytes (without FCS) are zero-padded.
//!
//! ```
//! use etherconn_core::build::{build_udp_frame, UdpFrame};
//! use etherconn_core::wire::VlanTag;
//!
//! let vlans = [VlanTag::dot1q(100).unwrap().with_pcp(5)];
//! let mut buf = [0u8; 1514];
//! let len = build_udp_frame(&mut buf, &UdpFrame {
//!     src_mac: "02:00:00:00:00:01".parse().unwrap(),
//!     dst_mac: "ff:ff:ff:ff:ff:ff".parse().unwrap(),
//!     vlans: &vlans,
//!     src: "[2001:db8::1]:546".parse().unwrap(),
//!     dst: "[ff02::1:2]:547".parse().unwrap(),
//!     ttl: 255,
//!     dscp: 0,
//!     payload: &[1, 2, 3],
//! }).unwrap();
//! assert_eq!(len, 14 + 4 + 40 + 8 + 3);
//! ```

use core::net::{IpAddr, SocketAddr};

use crate::wire::vlan::{self, MAX_TAGS};
use crate::wire::{ethernet, ip_protocol, ipv4, ipv6, udp, EtherType, MacAddr, VlanTag};

/// Why a frame could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The buffer cannot hold the frame.
    #[error("buffer too small: frame needs {needed} bytes, buffer has {available}")]
    BufferTooSmall {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// More VLAN tags than etherconn dispatches on.
    #[error("at most {MAX_TAGS} VLAN tags are supported, {0} given")]
    TooManyVlanTags(usize),
    /// Source and destination are of different IP families.
    #[error("source and destination addresses are of different IP families")]
    MixedAddressFamilies,
    /// The datagram does not fit the IP or UDP length fields (no fragmentation is done).
    #[error("payload of {0} bytes does not fit one IP packet")]
    PayloadTooLarge(usize),
    /// A header field out of range (DSCP above 63, say).
    #[error("invalid header field: {0}")]
    InvalidField(&'static str),
}

/// An Ethernet header and VLAN stack to write before a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Header<'a> {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Destination MAC.
    pub dst_mac: MacAddr,
    /// VLAN tags, outermost first (at most three, [`MAX_TAGS`]).
    pub vlans: &'a [VlanTag],
    /// EtherType of the payload after the last tag.
    pub ethertype: EtherType,
}

impl L2Header<'_> {
    /// Bytes the header and its tags take.
    pub const fn len(&self) -> usize {
        ethernet::HEADER_LEN + self.vlans.len() * vlan::HEADER_LEN
    }

    /// Always false: a header is at least 14 bytes.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Writes the header and tags at the start of `buf`; returns their length.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, BuildError> {
        if self.vlans.len() > MAX_TAGS {
            return Err(BuildError::TooManyVlanTags(self.vlans.len()));
        }
        let len = self.len();
        check_buf(buf, len)?;
        buf[0..6].copy_from_slice(&self.dst_mac.0);
        buf[6..12].copy_from_slice(&self.src_mac.0);
        let mut at = 12;
        for tag in self.vlans {
            if tag.pcp > 7 {
                return Err(BuildError::InvalidField("VLAN PCP above 7"));
            }
            buf[at..at + 2].copy_from_slice(&tag.tpid.get().to_be_bytes());
            buf[at + 2..at + 4].copy_from_slice(&tag.tci().to_be_bytes());
            at += vlan::HEADER_LEN;
        }
        buf[at..at + 2].copy_from_slice(&self.ethertype.0.to_be_bytes());
        Ok(len)
    }
}

fn check_buf(buf: &[u8], needed: usize) -> Result<(), BuildError> {
    if buf.len() < needed {
        Err(BuildError::BufferTooSmall {
            needed,
            available: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// Zero-pads a frame of `len` bytes to the Ethernet minimum if the buffer allows; returns the
/// length to send.
fn pad(buf: &mut [u8], len: usize) -> Result<usize, BuildError> {
    if len >= ethernet::MIN_FRAME_LEN {
        return Ok(len);
    }
    check_buf(buf, ethernet::MIN_FRAME_LEN)?;
    buf[len..ethernet::MIN_FRAME_LEN].fill(0);
    Ok(ethernet::MIN_FRAME_LEN)
}

/// Writes an Ethernet frame: the header, the tags and `payload`, padded to 60 bytes.
pub fn build_ethernet_frame(
    buf: &mut [u8],
    header: &L2Header<'_>,
    payload: &[u8],
) -> Result<usize, BuildError> {
    let hlen = header.len();
    check_buf(buf, hlen + payload.len())?;
    header.write(buf)?;
    buf[hlen..hlen + payload.len()].copy_from_slice(payload);
    pad(buf, hlen + payload.len())
}

/// A UDP datagram with its IP and Ethernet encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame<'a> {
    /// Source MAC.
    pub src_mac: MacAddr,
    /// Destination MAC (the next hop's).
    pub dst_mac: MacAddr,
    /// VLAN tags, outermost first (at most three, [`MAX_TAGS`]).
    pub vlans: &'a [VlanTag],
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port (any unicast, broadcast or multicast address).
    pub dst: SocketAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// DSCP (0 to 63).
    pub dscp: u8,
    /// The UDP payload.
    pub payload: &'a [u8],
}

impl UdpFrame<'_> {
    /// Length of the IP header this frame uses.
    const fn ip_header_len(&self) -> usize {
        match self.src {
            SocketAddr::V4(_) => ipv4::HEADER_LEN,
            SocketAddr::V6(_) => ipv6::HEADER_LEN,
        }
    }

    /// Bytes the frame takes before padding.
    pub const fn len(&self) -> usize {
        ethernet::HEADER_LEN
            + self.vlans.len() * vlan::HEADER_LEN
            + self.ip_header_len()
            + udp::HEADER_LEN
            + self.payload.len()
    }

    /// Always false: a UDP frame has headers.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Offset of the UDP payload in the built frame.
    pub const fn payload_offset(&self) -> usize {
        self.len() - self.payload.len()
    }
}

/// The largest UDP payload that fits one IP packet of the given family (no fragmentation at
/// this layer: the relay's MTU is checked by the caller).
pub const fn max_udp_payload(ipv6: bool) -> usize {
    if ipv6 {
        u16::MAX as usize - udp::HEADER_LEN
    } else {
        u16::MAX as usize - ipv4::HEADER_LEN - udp::HEADER_LEN
    }
}

/// Why [`build_udp_frame`] refuses destination port 0.
const PORT_0: &str = "UDP destination port 0 is reserved: no socket receives on it";

/// Why no receiver takes a UDP datagram sent to `dst`, or `None` when one may: destination
/// port 0 (which [`classify`](crate::classify) rejects as malformed, as Linux refuses to send
/// it) or the unspecified address (`0.0.0.0` or `::`, which names no host: Linux sends such a
/// datagram to itself, and a peer on the wire drops it as a martian).
///
/// The sending APIs above (`RUdpConn`, `SharingRUdpConn`) refuse both. [`build_udp_frame`]
/// refuses only port 0, which makes a frame [`classify`](crate::classify) calls malformed: an
/// unspecified destination is well formed, and tests build such frames on purpose.
///
/// ```
/// use etherconn_core::build::udp_destination_problem;
/// assert_eq!(udp_destination_problem("192.0.2.1:53".parse().unwrap()), None);
/// assert!(udp_destination_problem("192.0.2.1:0".parse().unwrap()).is_some());
/// assert!(udp_destination_problem("0.0.0.0:53".parse().unwrap()).is_some());
/// assert!(udp_destination_problem("[::]:53".parse().unwrap()).is_some());
/// ```
pub fn udp_destination_problem(dst: SocketAddr) -> Option<&'static str> {
    if dst.port() == 0 {
        Some(PORT_0)
    } else if dst.ip().is_unspecified() {
        Some("the unspecified address names no host to send to")
    } else {
        None
    }
}

/// Writes a whole UDP frame with correct IP and UDP checksums; returns its length (at least 60).
///
/// Refuses what no receiver takes: destination port 0 (see [`udp_destination_problem`]), a
/// DSCP above 63, a PCP above 7, more
/// than three tags, mixed address families and a payload beyond the IP or UDP length fields.
pub fn build_udp_frame(buf: &mut [u8], frame: &UdpFrame<'_>) -> Result<usize, BuildError> {
    let ipv6 = match (frame.src.ip(), frame.dst.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => false,
        (IpAddr::V6(_), IpAddr::V6(_)) => true,
        _ => return Err(BuildError::MixedAddressFamilies),
    };
    if frame.payload.len() > max_udp_payload(ipv6) {
        return Err(BuildError::PayloadTooLarge(frame.payload.len()));
    }
    if frame.dscp > 63 {
        return Err(BuildError::InvalidField("DSCP above 63"));
    }
    if frame.dst.port() == 0 {
        return Err(BuildError::InvalidField(PORT_0));
    }
    let total = frame.len();
    check_buf(buf, total)?;
    let ethertype = if ipv6 {
        EtherType::IPV6
    } else {
        EtherType::IPV4
    };
    let l2 = L2Header {
        src_mac: frame.src_mac,
        dst_mac: frame.dst_mac,
        vlans: frame.vlans,
        ethertype,
    };
    let at = l2.write(buf)?;
    let udp_len = udp::HEADER_LEN + frame.payload.len();
    let l3 = &mut buf[at..total];
    // Lengths were checked above, so the emits below cannot fail; their errors are still passed
    // on rather than unwrapped.
    let l4_at = match (frame.src.ip(), frame.dst.ip()) {
        (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => {
            let repr = ipv4::Repr {
                src_addr,
                dst_addr,
                protocol: ip_protocol::UDP,
                payload_len: udp_len,
                ttl: frame.ttl,
                dscp: frame.dscp,
                ident: 0,
                dont_frag: true,
                more_frags: false,
                frag_offset: 0,
            };
            repr.emit(&mut ipv4::Packet::new_unchecked(&mut *l3))
                .map_err(wire_error)?;
            ipv4::HEADER_LEN
        }
        (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => {
            let repr = ipv6::Repr {
                src_addr,
                dst_addr,
                next_header: ip_protocol::UDP,
                payload_len: udp_len,
                hop_limit: frame.ttl,
                traffic_class: frame.dscp << 2,
            };
            repr.emit(&mut ipv6::Packet::new_unchecked(&mut *l3))
                .map_err(wire_error)?;
            ipv6::HEADER_LEN
        }
        _ => return Err(BuildError::MixedAddressFamilies),
    };
    let repr = udp::Repr {
        src_port: frame.src.port(),
        dst_port: frame.dst.port(),
        payload_len: frame.payload.len(),
    };
    repr.emit(
        &mut udp::Packet::new_unchecked(&mut l3[l4_at..]),
        frame.src.ip(),
        frame.dst.ip(),
        Some(frame.payload),
    )
    .map_err(wire_error)?;
    pad(buf, total)
}

fn wire_error(e: crate::wire::Error) -> BuildError {
    match e {
        crate::wire::Error::Truncated {
            needed, available, ..
        } => BuildError::BufferTooSmall { needed, available },
        crate::wire::Error::Malformed { reason, .. }
        | crate::wire::Error::Unrepresentable { reason, .. } => BuildError::InvalidField(reason),
        crate::wire::Error::Checksum { .. } => BuildError::InvalidField("checksum"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;
    use crate::wire::{Tpid, VlanId};

    fn frame<'a>(vlans: &'a [VlanTag], src: &str, dst: &str, payload: &'a [u8]) -> UdpFrame<'a> {
        UdpFrame {
            src_mac: "02:00:00:00:00:01".parse().unwrap(),
            dst_mac: "02:00:00:00:00:02".parse().unwrap(),
            vlans,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ttl: 255,
            dscp: 46,
            payload,
        }
    }

    #[test]
    fn ipv4_roundtrip_through_classifier() {
        let vlans = [
            VlanTag::new(Tpid::QINQ, VlanId::new(200).unwrap()).with_pcp(3),
            VlanTag::dot1q(100).unwrap(),
        ];
        let f = frame(
            &vlans,
            "192.0.2.1:68",
            "255.255.255.255:67",
            b"discover-message",
        );
        let mut buf = [0u8; 200];
        let len = build_udp_frame(&mut buf, &f).unwrap();
        assert_eq!(len, 14 + 8 + 20 + 8 + 16);
        let c = classify(&buf[..len], None).unwrap();
        assert_eq!(c.key.to_string(), "02:00:00:00:00:02|200|100#0x0800");
        assert_eq!(c.vlans().as_slice(), &vlans);
        let u = c.udp().unwrap();
        assert_eq!(u.remote, f.src);
        assert_eq!(u.local, f.dst);
        assert_eq!(&buf[u.payload.range()], b"discover-message");
        assert_eq!(u.payload.start, f.payload_offset());
        assert_eq!(c.ip().unwrap().ttl, 255);
        assert_eq!(buf[14 + 8 + 1] >> 2, 46, "DSCP");
    }

    #[test]
    fn three_tags_roundtrip_through_classifier() {
        let vlans = [
            VlanTag::new(Tpid::QINQ_LEGACY, VlanId::new(300).unwrap()).with_pcp(1),
            VlanTag::new(Tpid::QINQ, VlanId::new(200).unwrap()).with_pcp(6),
            VlanTag::dot1q(100).unwrap(),
        ];
        let f = frame(&vlans, "[2001:db8::1]:546", "[2001:db8::2]:547", b"three");
        let mut buf = [0u8; 200];
        let len = build_udp_frame(&mut buf, &f).unwrap();
        assert_eq!(len, 14 + 12 + 40 + 8 + 5);
        // TPID then TCI per tag, outermost first, then the EtherType.
        assert_eq!(
            buf[12..28],
            [
                0x91, 0x00, 0x21, 0x2c, 0x88, 0xa8, 0xc0, 0xc8, 0x81, 0x00, 0x00, 0x64, 0x86, 0xdd,
                0x6b, 0x80
            ]
        );
        let c = classify(&buf[..len], None).unwrap();
        assert_eq!(c.key.to_string(), "02:00:00:00:00:02|300|200|100#0x86dd");
        assert_eq!(c.vlans().as_slice(), &vlans);
        assert_eq!(&buf[c.udp().unwrap().payload.range()], b"three");
        assert_eq!(c.udp().unwrap().payload.start, f.payload_offset());
    }

    #[test]
    fn short_frames_are_padded() {
        let f = frame(&[], "192.0.2.1:1", "192.0.2.2:2", b"x");
        let mut buf = [0xaau8; 100];
        let len = build_udp_frame(&mut buf, &f).unwrap();
        assert_eq!(len, 60);
        assert!(buf[43..60].iter().all(|&b| b == 0));
        let c = classify(&buf[..len], None).unwrap();
        assert_eq!(&buf[c.udp().unwrap().payload.range()], b"x");
    }

    #[test]
    fn ipv6_roundtrip() {
        let f = frame(&[], "[2001:db8::1]:546", "[ff02::1:2]:547", &[7u8; 300]);
        let mut buf = [0u8; 400];
        let len = build_udp_frame(&mut buf, &f).unwrap();
        let c = classify(&buf[..len], None).unwrap();
        assert_eq!(c.ethertype(), EtherType::IPV6);
        assert_eq!(c.udp().unwrap().remote, f.src);
        assert_eq!(buf[14] & 0x0f, (46u8 << 2) >> 4 & 0x0f);
    }

    #[test]
    fn errors() {
        let mut buf = [0u8; 64];
        let f = frame(&[], "192.0.2.1:1", "[2001:db8::2]:2", b"");
        assert_eq!(
            build_udp_frame(&mut buf, &f),
            Err(BuildError::MixedAddressFamilies)
        );
        let f = frame(&[], "192.0.2.1:1", "192.0.2.2:2", &[0u8; 100]);
        assert!(matches!(
            build_udp_frame(&mut buf, &f),
            Err(BuildError::BufferTooSmall { needed: 142, .. })
        ));
        let four = [VlanTag::dot1q(1).unwrap(); 4];
        let f = frame(&four, "192.0.2.1:1", "192.0.2.2:2", b"");
        let mut big = [0u8; 200];
        assert_eq!(
            build_udp_frame(&mut big, &f),
            Err(BuildError::TooManyVlanTags(4))
        );
        let huge = [0u8; 70000];
        let f = frame(&[], "192.0.2.1:1", "192.0.2.2:2", &huge);
        assert_eq!(
            build_udp_frame(&mut big, &f),
            Err(BuildError::PayloadTooLarge(70000))
        );
        let mut f = frame(&[], "192.0.2.1:1", "192.0.2.2:2", b"");
        f.dscp = 64;
        assert!(matches!(
            build_udp_frame(&mut big, &f),
            Err(BuildError::InvalidField(_))
        ));
        // A 20-byte buffer cannot take even a padded 14-byte frame.
        let hdr = L2Header {
            src_mac: MacAddr::UNSPECIFIED,
            dst_mac: MacAddr::BROADCAST,
            vlans: &[],
            ethertype: EtherType::ARP,
        };
        assert!(build_ethernet_frame(&mut buf[..20], &hdr, b"").is_err());
        assert_eq!(build_ethernet_frame(&mut buf, &hdr, b"abc"), Ok(60));
    }

    /// Found by the `build_udp` fuzz target: the builder wrote datagrams to port 0, which
    /// `classify` (like every receiver) rejects, so a built frame did not read back.
    #[test]
    fn destination_port_0_is_refused() {
        let mut buf = [0u8; 128];
        for (src, dst) in [
            ("192.0.2.1:68", "192.0.2.2:0"),
            ("[2001:db8::1]:546", "[2001:db8::2]:0"),
        ] {
            let f = frame(&[], src, dst, b"x");
            assert_eq!(
                build_udp_frame(&mut buf, &f),
                Err(BuildError::InvalidField(
                    "UDP destination port 0 is reserved: no socket receives on it"
                ))
            );
        }
        // Source port 0 (no reply expected) is legal and reads back.
        let f = frame(&[], "192.0.2.1:0", "192.0.2.2:9", b"x");
        let len = build_udp_frame(&mut buf, &f).unwrap();
        assert_eq!(
            classify(&buf[..len], None).unwrap().udp().unwrap().remote,
            f.src
        );
    }
}
