//! UDP datagrams (RFC 768) and their checksum over the IPv4 or IPv6 pseudo header.
//!
//! The rules a received datagram must pass are written once, on the view, and both
//! [`Repr::parse`] and the classifier call them: [`Packet::check_len`] (header and length field
//! against the buffer), [`Packet::check_ports`] (destination port not 0) and
//! [`Packet::check_checksum`] (the zero-checksum rule of each IP version, then the sum). The
//! classifier may skip only the last, when told the checksum was verified already.

use core::fmt;
use core::net::IpAddr;

use super::checksum;
use super::error::check_len;
use super::error::{Error, Result};
use super::field::{be16, put_be16};
use super::ip_protocol;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

const PROTO: &str = "UDP";

/// A zero-copy view of a UDP datagram.
///
/// [`Packet::new_checked`] verifies that the length field is at least 8 and fits in the buffer;
/// [`Packet::payload`] then ends where the length field says (trailing bytes are ignored).
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
    /// Wraps a buffer after checking the header and length field against it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    #[inline]
    /// Checks the header and the length field against the buffer.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        check_len(PROTO, data, HEADER_LEN)?;
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            return Err(Error::malformed(PROTO, "length field below 8"));
        }
        check_len(PROTO, data, len)
    }

    #[inline]
    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    #[inline]
    /// Length field (header and payload).
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    /// Whether the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    #[inline]
    /// Checksum field (0 over IPv4 means "no checksum").
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    /// The payload, as long as the length field says.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum verifies over the pseudo header of `src` and `dst`.
    ///
    /// This checks the arithmetic only: whether a zero checksum is acceptable is decided by
    /// [`Packet::check_checksum`].
    #[inline(always)]
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        let data = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::fold(checksum::sum(pseudo_header(src, dst, data.len()), data)) == 0xffff
    }

    /// Checks the ports as a receiver must: destination port 0 is reserved and malformed.
    #[inline]
    pub fn check_ports(&self) -> Result<()> {
        if self.dst_port() == 0 {
            return Err(Error::malformed(PROTO, "destination port 0"));
        }
        Ok(())
    }

    /// Checks the checksum as a receiver must, for a datagram from `src` to `dst`.
    ///
    /// Over IPv4 a zero checksum means none was sent; over IPv6 the checksum is mandatory
    /// (RFC 8200 section 8.1), so zero is a checksum error. Any other value must verify.
    #[inline(always)]
    pub fn check_checksum(&self, src: IpAddr, dst: IpAddr) -> Result<()> {
        let good = match (self.checksum(), dst) {
            (0, IpAddr::V4(_)) => true,
            (0, IpAddr::V6(_)) => false,
            _ => self.verify_checksum(src, dst),
        };
        if good {
            Ok(())
        } else {
            Err(Error::Checksum { protocol: PROTO })
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, port: u16) {
        put_be16(self.buffer.as_mut(), field::SRC_PORT, port);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, port: u16) {
        put_be16(self.buffer.as_mut(), field::DST_PORT, port);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, len: u16) {
        put_be16(self.buffer.as_mut(), field::LENGTH, len);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, value: u16) {
        put_be16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Computes and stores the checksum over the pseudo header of `src` and `dst`.
    ///
    /// A computed value of zero is sent as `0xffff` (RFC 768), since zero means "none".
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let len = usize::from(self.len());
        let data = &self.buffer.as_ref()[..len];
        let c = !checksum::fold(checksum::sum(pseudo_header(src, dst, len), data));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// The payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..len]
    }
}

/// The running sum of the pseudo header of a datagram of `len` bytes from `src` to `dst`.
#[inline(always)]
fn pseudo_header(src: IpAddr, dst: IpAddr, len: usize) -> u64 {
    // Each address on its own, so that mixed families (which no IP packet has) need no case.
    addr_sum(src) + addr_sum(dst) + u64::from(ip_protocol::UDP) + len as u64
}

#[inline(always)]
fn addr_sum(a: IpAddr) -> u64 {
    match a {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => checksum::addr_sum_v6(a),
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Packet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UDP src={} dst={} len={}",
            self.src_port(),
            self.dst_port(),
            self.len()
        )
    }
}

/// The owned contents of a UDP header; the payload stays in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length.
    pub payload_len: usize,
}

impl Repr {
    /// Parses a datagram from `src` to `dst`: its lengths ([`Packet::check_len`]), ports
    /// ([`Packet::check_ports`]) and checksum ([`Packet::check_checksum`]) must be valid.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>, src: IpAddr, dst: IpAddr) -> Result<Repr> {
        packet.check_len()?;
        packet.check_ports()?;
        packet.check_checksum(src, dst)?;
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()) - HEADER_LEN,
        })
    }

    /// Length of the emitted header plus payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the header and, once the payload is in place (`payload` is copied in first when
    /// given), the checksum over the pseudo header of `src` and `dst`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: IpAddr,
        dst: IpAddr,
        payload: Option<&[u8]>,
    ) -> Result<()> {
        let len = u16::try_from(self.buffer_len()).map_err(|_| Error::Unrepresentable {
            protocol: PROTO,
            reason: "datagram longer than 65535 bytes",
        })?;
        check_len(PROTO, packet.buffer.as_ref(), self.buffer_len())?;
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        if let Some(p) = payload {
            if p.len() != self.payload_len {
                return Err(Error::Unrepresentable {
                    protocol: PROTO,
                    reason: "payload length differs from repr",
                });
            }
            packet.payload_mut().copy_from_slice(p);
        }
        packet.fill_checksum(src, dst);
        Ok(())
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UDP src={} dst={} len={}",
            self.src_port, self.dst_port, self.payload_len
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    const SRC: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
    const DST: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2));

    // smoltcp's UDP fixture: 48896 -> 53, payload "\xaa\x00\x00\xff", checksum 0x124d.
    const PACKET: [u8; 12] = [
        0xbf, 0x00, 0x00, 0x35, 0x00, 0x0c, 0x12, 0x4d, 0xaa, 0x00, 0x00, 0xff,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.src_port(), 48896);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert_eq!(p.checksum(), 0x124d);
        assert_eq!(p.payload(), &[0xaa, 0x00, 0x00, 0xff]);
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn construct() {
        let repr = Repr {
            src_port: 48896,
            dst_port: 53,
            payload_len: 4,
        };
        let mut b = [0u8; 12];
        repr.emit(
            &mut Packet::new_unchecked(&mut b[..]),
            SRC,
            DST,
            Some(&[0xaa, 0, 0, 0xff]),
        )
        .unwrap();
        assert_eq!(b, PACKET);
    }

    #[test]
    fn zero_checksum_rules() {
        let mut b = PACKET;
        b[6] = 0;
        b[7] = 0;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(Repr::parse(&p, SRC, DST).is_ok(), "IPv4: zero means none");
        let s6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(
            Repr::parse(&p, s6, s6),
            Err(Error::Checksum { protocol: PROTO }),
            "IPv6: mandatory"
        );
    }

    #[test]
    fn ipv6_checksum_roundtrip() {
        let s: IpAddr = "2001:db8::1".parse().unwrap();
        let d: IpAddr = "2001:db8::2".parse().unwrap();
        let repr = Repr {
            src_port: 546,
            dst_port: 547,
            payload_len: 5,
        };
        let mut b = [0u8; 13];
        repr.emit(&mut Packet::new_unchecked(&mut b[..]), s, d, Some(b"hello"))
            .unwrap();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p, s, d), Ok(repr));
        b[9] ^= 0x20;
        assert!(Repr::parse(&Packet::new_checked(&b[..]).unwrap(), s, d).is_err());
    }

    #[test]
    fn malformed() {
        assert!(Packet::new_checked(&PACKET[..7]).is_err());
        let mut b = PACKET;
        b[5] = 7; // length below header
        assert!(Packet::new_checked(&b[..]).is_err());
        let mut b = PACKET;
        b[5] = 13; // length past buffer
        assert!(matches!(
            Packet::new_checked(&b[..]),
            Err(Error::Truncated { .. })
        ));
        let mut b = PACKET;
        b[2] = 0;
        b[3] = 0;
        assert!(Repr::parse(&Packet::new_checked(&b[..]).unwrap(), SRC, DST).is_err());
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Find a payload whose checksum computes to zero and check it is sent as 0xffff.
        let repr = Repr {
            src_port: 1,
            dst_port: 2,
            payload_len: 2,
        };
        for v in 0..=u16::MAX {
            let mut b = [0u8; 10];
            repr.emit(
                &mut Packet::new_unchecked(&mut b[..]),
                SRC,
                DST,
                Some(&v.to_be_bytes()),
            )
            .unwrap();
            let p = Packet::new_checked(&b[..]).unwrap();
            assert_ne!(p.checksum(), 0);
            if p.checksum() == 0xffff {
                assert!(Repr::parse(&p, SRC, DST).is_ok());
                return;
            }
        }
        panic!("no payload produced a zero checksum");
    }
}
