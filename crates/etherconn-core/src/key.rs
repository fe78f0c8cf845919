//! The keys relays dispatch on.
//!
//! [`L2EndpointKey`] picks the `EtherConn` a received frame belongs to; [`L4RecvKey`] picks the
//! UDP endpoint inside a shared L2 endpoint. Both are small `Copy` values, hashed once per frame.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

use crate::wire::vlan::{VlanStack, MAX_TAGS};
use crate::wire::{ip_protocol, EtherType, MacAddr, VlanId, VlanTag};

/// The VLAN ids of a tag stack, outermost first: none, one, two or three
/// ([`MAX_TAGS`]).
///
/// "No tag" is distinct from a tag with id 0 (a priority tag).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct VlanIds {
    ids: [u16; MAX_TAGS],
    len: u8,
}

impl VlanIds {
    /// No tag.
    pub const NONE: VlanIds = VlanIds {
        ids: [0; MAX_TAGS],
        len: 0,
    };

    /// One tag.
    pub const fn one(id: VlanId) -> VlanIds {
        VlanIds {
            ids: [id.get(), 0, 0],
            len: 1,
        }
    }

    /// Two tags, outer first.
    pub const fn two(outer: VlanId, inner: VlanId) -> VlanIds {
        VlanIds {
            ids: [outer.get(), inner.get(), 0],
            len: 2,
        }
    }

    /// Three tags, outermost first.
    pub const fn three(outer: VlanId, middle: VlanId, inner: VlanId) -> VlanIds {
        VlanIds {
            ids: [outer.get(), middle.get(), inner.get()],
            len: 3,
        }
    }

    /// The ids of a list of ids, outermost first; `None` when it holds more than
    /// [`MAX_TAGS`].
    pub const fn from_ids(ids: &[VlanId]) -> Option<VlanIds> {
        match *ids {
            [] => Some(VlanIds::NONE),
            [a] => Some(VlanIds::one(a)),
            [a, b] => Some(VlanIds::two(a, b)),
            [a, b, c] => Some(VlanIds::three(a, b, c)),
            _ => None,
        }
    }

    /// The ids of a list of tags; `None` when it holds more than [`MAX_TAGS`].
    pub fn from_tags(tags: &[VlanTag]) -> Option<VlanIds> {
        match *tags {
            [] => Some(VlanIds::NONE),
            [a] => Some(VlanIds::one(a.id)),
            [a, b] => Some(VlanIds::two(a.id, b.id)),
            [a, b, c] => Some(VlanIds::three(a.id, b.id, c.id)),
            _ => None,
        }
    }

    /// The ids of a stack.
    pub fn from_stack(stack: &VlanStack) -> VlanIds {
        // A VlanStack never holds more than MAX_TAGS, so this cannot fail.
        VlanIds::from_tags(stack.as_slice()).unwrap_or(VlanIds::NONE)
    }

    /// The ids, outermost first.
    pub fn as_slice(&self) -> &[u16] {
        &self.ids[..usize::from(self.len)]
    }

    /// Number of tags.
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether there is no tag.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Debug for VlanIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The key of an L2 endpoint: destination MAC, VLAN ids (outermost first) and the EtherType after
/// the last tag.
///
/// Its text form is `aa:bb:cc:dd:ee:ff|100|200#0x0800`: the MAC, then one `|id` per tag
/// outermost first (none untagged, `aa:bb:cc:dd:ee:ff#0x0806`; at most three,
/// `aa:bb:cc:dd:ee:ff|100|200|300#0x0800`), then the EtherType; accepted back by [`FromStr`].
///
/// ```
/// use etherconn_core::L2EndpointKey;
/// let k: L2EndpointKey = "02:00:00:00:00:01|100|200#0x0800".parse().unwrap();
/// assert_eq!(k.vlans.as_slice(), &[100, 200]);
/// assert_eq!(k.to_string(), "02:00:00:00:00:01|100|200#0x0800");
/// let k: L2EndpointKey = "02:00:00:00:00:01|100|200|300#0x86dd".parse().unwrap();
/// assert_eq!(k.vlans.as_slice(), &[100, 200, 300]);
/// assert!("02:00:00:00:00:01|1|2|3|4#0x0800".parse::<L2EndpointKey>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct L2EndpointKey {
    /// The endpoint's MAC address (a received frame's destination).
    pub mac: MacAddr,
    /// VLAN ids, outermost first.
    pub vlans: VlanIds,
    /// EtherType of the payload after the last tag.
    pub ethertype: EtherType,
}

impl L2EndpointKey {
    /// A key from its parts.
    pub const fn new(mac: MacAddr, vlans: VlanIds, ethertype: EtherType) -> Self {
        L2EndpointKey {
            mac,
            vlans,
            ethertype,
        }
    }
}

impl fmt::Display for L2EndpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.mac)?;
        for id in self.vlans.as_slice() {
            write!(f, "|{id}")?;
        }
        write!(f, "#0x{:04x}", self.ethertype.0)
    }
}

impl fmt::Debug for L2EndpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseKeyError {
    /// The MAC address part is not six hex octets.
    #[error("invalid MAC address in key")]
    Mac,
    /// A VLAN id is not a number from 0 to 4095.
    #[error("invalid VLAN id in key (0 to 4095)")]
    VlanId,
    /// More than three VLAN ids.
    #[error("more than three VLAN ids in key")]
    TooManyVlans,
    /// The EtherType is missing or is not `0x` and four hex digits.
    #[error("invalid EtherType in key (expected #0x and four hex digits)")]
    EtherType,
    /// The IP address part is not an IPv4 address or a bracketed IPv6 address.
    #[error("invalid IP address in key")]
    Ip,
    /// The port is not a number from 0 to 65535.
    #[error("invalid port in key")]
    Port,
    /// The protocol is not `udp`, `tcp` or a number from 0 to 255.
    #[error("invalid protocol in key")]
    Protocol,
}

impl FromStr for L2EndpointKey {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, ParseKeyError> {
        let (head, et) = s.rsplit_once('#').ok_or(ParseKeyError::EtherType)?;
        let hex = et
            .strip_prefix("0x")
            .or_else(|| et.strip_prefix("0X"))
            .ok_or(ParseKeyError::EtherType)?;
        if hex.len() != 4 {
            return Err(ParseKeyError::EtherType);
        }
        let ethertype =
            EtherType(u16::from_str_radix(hex, 16).map_err(|_| ParseKeyError::EtherType)?);
        let mut parts = head.split('|');
        let mac = parts
            .next()
            .unwrap_or("")
            .parse::<MacAddr>()
            .map_err(|_| ParseKeyError::Mac)?;
        let mut ids = [VlanId::default(); MAX_TAGS];
        let mut n = 0;
        for p in parts {
            if n == MAX_TAGS {
                return Err(ParseKeyError::TooManyVlans);
            }
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseKeyError::VlanId);
            }
            let v: u16 = p.parse().map_err(|_| ParseKeyError::VlanId)?;
            ids[n] = VlanId::new(v).ok_or(ParseKeyError::VlanId)?;
            n += 1;
        }
        // `n` is at most MAX_TAGS: the loop stopped a fourth id.
        let vlans = VlanIds::from_ids(&ids[..n]).ok_or(ParseKeyError::TooManyVlans)?;
        Ok(L2EndpointKey {
            mac,
            vlans,
            ethertype,
        })
    }
}

/// The key of a UDP (or other L4) endpoint inside a shared L2 endpoint: local IP, protocol and
/// local port.
///
/// An unspecified IP (`0.0.0.0` or `::`) means "any local IP on this port" to the dispatcher.
/// Its text form is `192.0.2.1:68/udp` or `[2001:db8::1]:546/udp`.
///
/// ```
/// use etherconn_core::L4RecvKey;
/// let k: L4RecvKey = "[2001:db8::1]:546/udp".parse().unwrap();
/// assert_eq!(k.port, 546);
/// assert_eq!(k.to_string(), "[2001:db8::1]:546/udp");
/// assert!(!k.is_wildcard());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct L4RecvKey {
    /// Local IP address (unspecified for any).
    pub ip: IpAddr,
    /// IP protocol number (17 for UDP).
    pub protocol: u8,
    /// Local port.
    pub port: u16,
}

impl L4RecvKey {
    /// A UDP key.
    pub const fn udp(ip: IpAddr, port: u16) -> Self {
        L4RecvKey {
            ip,
            protocol: ip_protocol::UDP,
            port,
        }
    }

    /// Whether the IP is unspecified (matches any local IP).
    pub fn is_wildcard(&self) -> bool {
        self.ip.is_unspecified()
    }

    /// The same key with the IP replaced by the unspecified address of its family.
    pub fn wildcard(&self) -> Self {
        let ip = match self.ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        L4RecvKey { ip, ..*self }
    }
}

impl fmt::Display for L4RecvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port)?,
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port)?,
        }
        match self.protocol {
            ip_protocol::UDP => write!(f, "/udp"),
            ip_protocol::TCP => write!(f, "/tcp"),
            p => write!(f, "/{p}"),
        }
    }
}

impl fmt::Debug for L4RecvKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for L4RecvKey {
    type Err = ParseKeyError;

    fn from_str(s: &str) -> Result<Self, ParseKeyError> {
        let (addr, proto) = s.rsplit_once('/').ok_or(ParseKeyError::Protocol)?;
        let protocol = match proto {
            "udp" => ip_protocol::UDP,
            "tcp" => ip_protocol::TCP,
            p if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().map_err(|_| ParseKeyError::Protocol)?
            }
            _ => return Err(ParseKeyError::Protocol),
        };
        let (ip, port) = addr.rsplit_once(':').ok_or(ParseKeyError::Port)?;
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseKeyError::Port);
        }
        let port: u16 = port.parse().map_err(|_| ParseKeyError::Port)?;
        let ip = if let Some(v6) = ip.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            IpAddr::V6(v6.parse().map_err(|_| ParseKeyError::Ip)?)
        } else {
            IpAddr::V4(ip.parse().map_err(|_| ParseKeyError::Ip)?)
        };
        Ok(L4RecvKey { ip, protocol, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn l2_key_roundtrip() {
        for s in [
            "aa:bb:cc:dd:ee:ff|100|200#0x0800",
            "aa:bb:cc:dd:ee:ff|0#0x86dd",
            "02:00:00:00:00:01#0x0806",
            "ff:ff:ff:ff:ff:ff|4095|1#0x8863",
            "02:00:00:00:00:01|100|200|300#0x0800",
            "02:00:00:00:00:01|0|0|4095#0x86dd",
        ] {
            let k: L2EndpointKey = s.parse().unwrap();
            assert_eq!(k.to_string(), s);
        }
    }

    #[test]
    fn no_tag_differs_from_vlan_zero() {
        let a: L2EndpointKey = "aa:bb:cc:dd:ee:ff#0x0800".parse().unwrap();
        let b: L2EndpointKey = "aa:bb:cc:dd:ee:ff|0#0x0800".parse().unwrap();
        assert_ne!(a, b);
        assert_ne!(VlanIds::NONE, VlanIds::one(VlanId::new(0).unwrap()));
        // Nor do two tags equal three whose last id is 0.
        let z = VlanId::new(0).unwrap();
        let v = VlanId::new(7).unwrap();
        assert_ne!(VlanIds::two(v, v), VlanIds::three(v, v, z));
    }

    #[test]
    fn vlan_ids_from_lists() {
        let id = |v| VlanId::new(v).unwrap();
        let t = |v| VlanTag::dot1q(v).unwrap();
        assert_eq!(VlanIds::from_ids(&[]), Some(VlanIds::NONE));
        assert_eq!(
            VlanIds::from_ids(&[id(1), id(2), id(3)])
                .unwrap()
                .as_slice(),
            &[1, 2, 3]
        );
        assert_eq!(VlanIds::from_ids(&[id(1); 4]), None);
        assert_eq!(
            VlanIds::from_tags(&[t(10), t(20), t(30)]),
            Some(VlanIds::three(id(10), id(20), id(30)))
        );
        assert_eq!(VlanIds::from_tags(&[t(1); 4]), None);
        let stack = VlanStack::from_slice(&[t(5), t(6), t(7)]).unwrap();
        assert_eq!(VlanIds::from_stack(&stack).as_slice(), &[5, 6, 7]);
    }

    #[test]
    fn l2_key_rejects() {
        use ParseKeyError::*;
        for (s, e) in [
            ("aa:bb:cc:dd:ee:ff|100|200", EtherType),
            ("aa:bb:cc:dd:ee:ff#0800", EtherType),
            ("aa:bb:cc:dd:ee:ff#0x800", EtherType),
            ("aa:bb:cc:dd:ee#0x0800", Mac),
            ("aa:bb:cc:dd:ee:ff|4096#0x0800", VlanId),
            ("aa:bb:cc:dd:ee:ff|#0x0800", VlanId),
            ("aa:bb:cc:dd:ee:ff|+1#0x0800", VlanId),
            ("aa:bb:cc:dd:ee:ff|1|2|3|4#0x0800", TooManyVlans),
            ("aa:bb:cc:dd:ee:ff|1|2|3|4|5#0x0800", TooManyVlans),
            ("aa:bb:cc:dd:ee:ff|1|2|4096#0x0800", VlanId),
        ] {
            assert_eq!(s.parse::<L2EndpointKey>(), Err(e), "{s}");
        }
    }

    #[test]
    fn l4_key_roundtrip_and_rejects() {
        for s in [
            "192.0.2.1:68/udp",
            "0.0.0.0:67/udp",
            "[::]:547/udp",
            "[fe80::1]:1/tcp",
            "10.0.0.1:5/132",
        ] {
            let k: L4RecvKey = s.parse().unwrap();
            assert_eq!(k.to_string(), s);
        }
        assert!("0.0.0.0:67/udp".parse::<L4RecvKey>().unwrap().is_wildcard());
        let k: L4RecvKey = "192.0.2.1:68/udp".parse().unwrap();
        assert_eq!(k.wildcard().to_string(), "0.0.0.0:68/udp");
        for s in [
            "192.0.2.1:68",
            "192.0.2.1:70000/udp",
            "::1:68/udp",
            "192.0.2.1:/udp",
            "192.0.2.1:68/xyz",
        ] {
            assert!(s.parse::<L4RecvKey>().is_err(), "{s}");
        }
    }
}
