//! Ethernet II frames: MAC addresses, EtherTypes and the 14-byte header.

use core::fmt;
use core::str::FromStr;

use super::error::check_len;
use super::error::{Error, Result};
use super::field::{be16, put_be16};

/// A 48-bit IEEE MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const UNSPECIFIED: MacAddr = MacAddr([0; 6]);

    /// The address from a slice of exactly six bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        <[u8; 6]>::try_from(bytes)
            .map(MacAddr)
            .map_err(|_| Error::malformed("MAC address", "not 6 bytes"))
    }

    /// The six octets.
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// Whether this is the broadcast address.
    pub fn is_broadcast(self) -> bool {
        self == Self::BROADCAST
    }

    /// Whether the group bit is set (multicast, including broadcast).
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is an individual (unicast) address.
    pub const fn is_unicast(self) -> bool {
        !self.is_multicast()
    }

    /// Why this address cannot name one station (be an endpoint's own MAC, or a frame's
    /// source), or `None` when it can: a group address (multicast or broadcast: the group bit,
    /// the low bit of the first octet, is set) or the all-zero address.
    ///
    /// ```
    /// use etherconn_core::wire::MacAddr;
    /// assert_eq!("02:00:00:00:00:01".parse::<MacAddr>().unwrap().station_problem(), None);
    /// assert!(MacAddr::BROADCAST.station_problem().is_some());
    /// assert!(MacAddr::UNSPECIFIED.station_problem().is_some());
    /// ```
    pub const fn station_problem(self) -> Option<&'static str> {
        if self.is_multicast() {
            Some("it is a group (multicast or broadcast) address; the first octet must be even")
        } else if u64::from_be_bytes([
            0, 0, self.0[0], self.0[1], self.0[2], self.0[3], self.0[4], self.0[5],
        ]) == 0
        {
            Some("it is the all-zero address, which names no station")
        } else {
            None
        }
    }

    /// Whether the locally administered bit is set.
    pub const fn is_local(self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The address plus `n`, carrying across octets (wrapping at `ff:ff:ff:ff:ff:ff`).
    ///
    /// Convenient for giving consecutive MACs to a fleet of endpoints.
    pub fn offset(self, n: u64) -> MacAddr {
        let mut wide = [0u8; 8];
        wide[2..].copy_from_slice(&self.0);
        let v = u64::from_be_bytes(wide).wrapping_add(n) & 0xffff_ffff_ffff;
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The error returned when a string is not a MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address (expected six hex octets separated by ':' or '-')")]
pub struct ParseMacError;

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> core::result::Result<Self, ParseMacError> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for o in &mut out {
            let p = parts.next().ok_or(ParseMacError)?;
            // `from_str_radix` alone would also take a sign: "+a" is not an octet.
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ParseMacError);
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| ParseMacError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError);
        }
        Ok(MacAddr(out))
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

/// An EtherType (or, below 0x0600, an 802.3 length, which etherconn does not dispatch on).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// IEEE 802.1Q customer VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IEEE 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: EtherType = EtherType(0x88a8);
    /// The pre-standard QinQ outer tag some equipment still uses.
    pub const QINQ_LEGACY: EtherType = EtherType(0x9100);
    /// PPPoE discovery stage.
    pub const PPPOE_DISCOVERY: EtherType = EtherType(0x8863);
    /// PPPoE session stage.
    pub const PPPOE_SESSION: EtherType = EtherType(0x8864);

    /// Whether this value announces a VLAN tag (0x8100, 0x88a8 or 0x9100).
    pub const fn is_vlan_tpid(self) -> bool {
        matches!(self.0, 0x8100 | 0x88a8 | 0x9100)
    }
}

impl fmt::Display for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            EtherType::IPV4 => "IPv4",
            EtherType::ARP => "ARP",
            EtherType::IPV6 => "IPv6",
            EtherType::VLAN => "802.1Q",
            EtherType::QINQ => "802.1ad",
            EtherType::QINQ_LEGACY => "QinQ-9100",
            _ => return write!(f, "EtherType(0x{:04x})", self.0),
        };
        write!(f, "{name}")
    }
}

impl From<u16> for EtherType {
    fn from(v: u16) -> Self {
        EtherType(v)
    }
}

impl From<EtherType> for u16 {
    fn from(v: EtherType) -> Self {
        v.0
    }
}

mod field {
    use core::ops::Range;
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const PAYLOAD: usize = 14;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Minimum frame length on the wire without the FCS; shorter frames are padded.
pub const MIN_FRAME_LEN: usize = 60;

/// A zero-copy view of an Ethernet II frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    #[inline]
    /// Wraps a buffer without checking its length; getters may then panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    #[inline]
    /// Wraps a buffer that holds at least a whole header.
    pub fn new_checked(buffer: T) -> Result<Self> {
        check_len("Ethernet", buffer.as_ref(), HEADER_LEN)?;
        Ok(Frame { buffer })
    }

    #[inline]
    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    /// Destination MAC address.
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::DESTINATION]).unwrap_or_default()
    }

    #[inline]
    /// Source MAC address.
    pub fn src_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SOURCE]).unwrap_or_default()
    }

    #[inline]
    /// The EtherType field (a VLAN TPID when the frame is tagged).
    pub fn ethertype(&self) -> EtherType {
        EtherType(be16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    #[inline]
    /// Everything after the 14-byte header (VLAN tags included when present).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC address.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    /// Sets the source MAC address.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType field.
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        put_be16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0);
    }

    /// The payload, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]>> fmt::Display for Frame<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EthernetII src={} dst={} type={}",
            self.src_addr(),
            self.dst_addr(),
            self.ethertype()
        )
    }
}

/// The owned contents of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source MAC address.
    pub src_addr: MacAddr,
    /// Destination MAC address.
    pub dst_addr: MacAddr,
    /// EtherType (the first TPID when VLAN tags follow).
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads the header from a checked view.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        check_len("Ethernet", frame.buffer.as_ref(), HEADER_LEN)?;
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the start of `frame`'s buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) -> Result<()> {
        check_len("Ethernet", frame.buffer.as_ref(), HEADER_LEN)?;
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
        Ok(())
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EthernetII src={} dst={} type={}",
            self.src_addr, self.dst_addr, self.ethertype
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ARP request header: broadcast from 52:54:00:12:34:56.
    const FRAME: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, 0xaa,
        0xbb,
    ];

    #[test]
    fn deconstruct() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(f.src_addr(), MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn construct_and_roundtrip() {
        let repr = Repr::parse(&Frame::new_checked(&FRAME[..]).unwrap()).unwrap();
        let mut buf = [0u8; 16];
        buf[14..].copy_from_slice(&[0xaa, 0xbb]);
        repr.emit(&mut Frame::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn truncated() {
        assert!(matches!(
            Frame::new_checked(&FRAME[..13]),
            Err(Error::Truncated {
                needed: 14,
                available: 13,
                ..
            })
        ));
        let mut short = [0u8; 10];
        let repr = Repr {
            src_addr: MacAddr::UNSPECIFIED,
            dst_addr: MacAddr::BROADCAST,
            ethertype: EtherType::IPV4,
        };
        assert!(repr
            .emit(&mut Frame::new_unchecked(&mut short[..]))
            .is_err());
    }

    #[test]
    fn mac_parse_and_display() {
        let m: MacAddr = "aa:BB:0c:dd:ee:0f".parse().unwrap();
        assert_eq!(m.to_string(), "aa:bb:0c:dd:ee:0f");
        assert_eq!("aa-bb-0c-dd-ee-0f".parse::<MacAddr>().unwrap(), m);
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "aa:bb:cc:dd:ee:fg",
            "aaa:bb:cc:dd:ee:ff",
            "aa::cc:dd:ee:ff",
            // Found by the `leasefile` fuzz target: `u8::from_str_radix` takes a sign.
            "+a:bb:cc:dd:ee:ff",
            "aa-bb-cc-dd-ee-+f",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        // One-digit octets stay legal.
        assert_eq!(
            "2:a:b:c:d:e".parse::<MacAddr>().unwrap().to_string(),
            "02:0a:0b:0c:0d:0e"
        );
    }

    #[test]
    fn mac_classes_and_offset() {
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!("01:00:5e:00:00:01"
            .parse::<MacAddr>()
            .unwrap()
            .is_multicast());
        assert!("02:00:00:00:00:01".parse::<MacAddr>().unwrap().is_unicast());
        let m: MacAddr = "02:00:00:00:00:ff".parse().unwrap();
        assert_eq!(m.offset(1).to_string(), "02:00:00:00:01:00");
        assert_eq!(MacAddr::BROADCAST.offset(1), MacAddr::UNSPECIFIED);
    }
}
