//! Addresses and VLAN stacks from the command line, and the sizes they give frames.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use etherconn_core::wire::vlan::MAX_TAGS;
use etherconn_core::wire::{MacAddr, Tpid, VlanId, VlanTag};

/// Ethernet header (14) + IPv4 header (20) + UDP header (8).
const HEADERS: usize = 14 + 20 + 8;

/// Largest UDP payload the tool sends: what fits a 1500-byte MTU with the VLAN tags counted
/// against it (the kernel lets an AF_PACKET sender and a veth exceed the MTU by one 802.1Q tag
/// only, and not for an 802.1ad outer tag).
pub fn max_payload(tags: usize) -> usize {
    1500 - 20 - 8 - 4 * tags
}

/// Bytes a frame takes on the wire for a UDP payload of `payload` bytes behind `tags` VLAN
/// tags: Ethernet header, tags, IPv4, UDP, payload, padded to the 60-byte minimum. No
/// preamble, start delimiter, FCS or inter-frame gap.
pub fn wire_len(tags: usize, payload: usize) -> usize {
    (HEADERS + 4 * tags + payload).max(60)
}

/// The `i`-th address after `base` (wrapping).
pub fn ip_offset(base: Ipv4Addr, i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base).wrapping_add(i as u32))
}

/// The `i`-th address after `base` (wrapping), of either family.
pub fn addr_offset(base: IpAddr, i: usize) -> IpAddr {
    match base {
        IpAddr::V4(a) => IpAddr::V4(ip_offset(a, i)),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(i as u128))),
    }
}

/// Position of `ip` in the range of `count` addresses starting at `base`, of either family.
pub fn addr_index(base: IpAddr, count: usize, ip: IpAddr) -> Option<usize> {
    let i = match (base, ip) {
        (IpAddr::V4(b), IpAddr::V4(a)) => u128::from(u32::from(a).wrapping_sub(u32::from(b))),
        (IpAddr::V6(b), IpAddr::V6(a)) => u128::from(a).wrapping_sub(u128::from(b)),
        _ => return None,
    };
    usize::try_from(i).ok().filter(|&i| i < count)
}

/// Position of `ip` in the range of `count` addresses starting at `base`.
pub fn ip_index(base: Ipv4Addr, count: usize, ip: Ipv4Addr) -> Option<usize> {
    let i = u32::from(ip).wrapping_sub(u32::from(base)) as usize;
    (i < count).then_some(i)
}

/// An IPv4 address with a prefix length, as `10.0.0.1/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// The prefix length (0 to 32).
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Whether `ip` is inside this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, p),
            None => (s, "32"),
        };
        let addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|&p| p <= 32)
            .ok_or_else(|| format!("prefix length {prefix:?} is not 0 to 32"))?;
        Ok(Ipv4Cidr { addr, prefix })
    }
}

/// An IPv4 or IPv6 address with a prefix length, as `10.0.0.1/24` or `2001:db8::1/64`;
/// without one, a host prefix (/32, /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpCidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length (0 to 32, or 0 to 128).
    pub prefix: u8,
}

impl IpCidr {
    /// The IPv4 form, for an IPv4 address.
    pub fn v4(&self) -> Option<Ipv4Cidr> {
        match self.addr {
            IpAddr::V4(addr) => Some(Ipv4Cidr {
                addr,
                prefix: self.prefix,
            }),
            IpAddr::V6(_) => None,
        }
    }

    /// Whether `ip` is inside this prefix (never for the other family).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(a)) => self.v4().is_some_and(|c| c.contains(a)),
            (IpAddr::V6(base), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(base) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpCidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("prefix length {p:?} is not 0 to {max}"))?,
        };
        Ok(IpCidr { addr, prefix })
    }
}

impl std::fmt::Display for IpCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why an IPv6 `ip` cannot be an endpoint's address or a destination, if it cannot: the
/// unspecified address, loopback, multicast and IPv4-mapped addresses never name one host on
/// a link.
pub fn unusable_ipv6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_loopback() {
        Some("the loopback address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip.to_ipv4_mapped().is_some() {
        Some("an IPv4-mapped address")
    } else {
        None
    }
}

/// Why `ip` (either family) cannot be an endpoint's address or a destination, if it cannot.
pub fn unusable_addr(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => unusable_ip(a),
        IpAddr::V6(a) => unusable_ipv6(a),
    }
}

/// [`check_ip_range`] for either family: for IPv6, the range must not wrap and neither end
/// may be [`unusable_ipv6`].
pub fn check_addr_range(flag: &str, base: IpAddr, count: usize) -> Result<(), String> {
    let IpAddr::V6(b) = base else {
        return match base {
            IpAddr::V4(b) => check_ip_range(flag, b, count),
            IpAddr::V6(_) => Ok(()),
        };
    };
    let Some(last) = u128::from(b)
        .checked_add(count as u128 - 1)
        .map(Ipv6Addr::from)
    else {
        return Err(format!(
            "{flag} {base} with --endpoints {count} runs past the last address"
        ));
    };
    for ip in [b, last] {
        if let Some(why) = unusable_ipv6(ip) {
            return Err(format!(
                "{flag} {base} with --endpoints {count} includes {ip}, {why}"
            ));
        }
    }
    Ok(())
}

/// Parses a MAC address (`02:ec:55:00:00:01`).
pub fn parse_mac(s: &str) -> Result<MacAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))
}

/// Parses the MAC of an endpoint or a peer: one that names a station
/// ([`MacAddr::station_problem`], the library's rule, which `EtherConn::new` enforces too):
/// unicast (group bit of the first octet clear), not all zeros. A frame from a group address
/// is invalid, and one to a group address is not a unicast datagram.
pub fn parse_unicast_mac(s: &str) -> Result<MacAddr, String> {
    let mac = parse_mac(s)?;
    match mac.station_problem() {
        Some(reason) => Err(format!("{mac} does not name one station: {reason}")),
        None => Ok(mac),
    }
}

/// Checks that `count` consecutive MACs from `base` (endpoint `i` has `base + i`) never carry
/// into the first octet. The first octet holds the group bit: a carry into it from an even
/// (unicast) octet makes it odd, so the range would end on group addresses (and from `fe`, wrap
/// past `ff:ff:ff:ff:ff:ff`). `base` itself is unicast ([`parse_unicast_mac`]).
pub fn check_mac_range(base: MacAddr, count: usize) -> Result<(), String> {
    let low40 = |m: MacAddr| u64::from_be_bytes([0, 0, 0, m.0[1], m.0[2], m.0[3], m.0[4], m.0[5]]);
    let room = (1u64 << 40) - low40(base);
    if count as u64 <= room {
        return Ok(());
    }
    let last = base.offset(count as u64 - 1);
    Err(format!(
        "--mac {base} with --endpoints {count} would run to {last}, past {}: a range of \
         endpoint MACs must not carry into the first octet (at most {room} endpoint(s) from {base})",
        MacAddr([base.0[0], 0xff, 0xff, 0xff, 0xff, 0xff])
    ))
}

/// The VLAN id rule, the same in `dhcp_fleet`: 0 is not a VLAN (an 802.1Q tag with id 0 only
/// carries a priority) and 4095 is reserved.
pub const VLAN_RULE: &str =
    "VLAN ids are 1 to 4094 (0 marks a priority-tagged frame, 4095 is reserved)";

/// Parses a VLAN id ([`VLAN_RULE`]).
pub fn parse_vlan_id(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|id| (1..=4094).contains(id))
        .ok_or_else(|| format!("{s:?} is not a VLAN id: {VLAN_RULE}"))
}

/// Why `ip` cannot be an endpoint's address or a destination, if it cannot: "this network"
/// (0.0.0.0/8), loopback (127.0.0.0/8), multicast (224.0.0.0/4) and the reserved block with
/// the limited broadcast (240.0.0.0/4) never name one host on a link.
pub fn unusable_ip(ip: Ipv4Addr) -> Option<&'static str> {
    match ip.octets()[0] {
        0 => Some("in 0.0.0.0/8 (\"this network\")"),
        127 => Some("a loopback address"),
        224..=239 => Some("a multicast address"),
        240..=255 => Some("reserved (240.0.0.0/4, with the broadcast address)"),
        _ => None,
    }
}

/// Checks the addresses `base + i` of `count` endpoints: none wraps past 255.255.255.255 and
/// none is [`unusable_ip`]. `flag` names the option in the message.
pub fn check_ip_range(flag: &str, base: Ipv4Addr, count: usize) -> Result<(), String> {
    let last_n = u64::from(u32::from(base)) + count as u64 - 1;
    let Ok(last) = u32::try_from(last_n).map(Ipv4Addr::from) else {
        return Err(format!(
            "{flag} {base} with --endpoints {count} runs past 255.255.255.255"
        ));
    };
    // The unusable blocks are /8s or larger and a range is at most 65,536 addresses, so a
    // range that enters one has its first or its last address in it.
    for ip in [base, last] {
        if let Some(why) = unusable_ip(ip) {
            return Err(if ip == base {
                format!("{flag} {base}: the address is {why}")
            } else {
                format!("{flag} {base} with --endpoints {count} runs to {last}, which is {why}")
            });
        }
    }
    Ok(())
}

/// An outer and an inner VLAN id, as `200.100`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Qinq {
    /// Outer (service) VLAN id, sent with TPID 0x88a8.
    pub outer: u16,
    /// Inner (customer) VLAN id, sent with TPID 0x8100.
    pub inner: u16,
}

/// Parses `OUTER.INNER`.
pub fn parse_qinq(s: &str) -> Result<Qinq, String> {
    let (o, i) = s
        .split_once('.')
        .ok_or_else(|| format!("{s:?} is not OUTER.INNER (e.g. 200.100)"))?;
    Ok(Qinq {
        outer: parse_vlan_id(o)?,
        inner: parse_vlan_id(i)?,
    })
}

/// One to three VLAN ids, outermost first, as `100`, `200.100` or `300.200.100`: the general
/// form of `--vlan` and `--qinq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VlanIdStack(Vec<u16>);

/// Parses `ID[.ID[.ID]]`: each a VLAN id ([`VLAN_RULE`]), at most [`MAX_TAGS`] of them.
pub fn parse_vlan_ids(s: &str) -> Result<VlanIdStack, String> {
    let ids = s
        .split('.')
        .map(parse_vlan_id)
        .collect::<Result<Vec<u16>, String>>()?;
    if ids.len() > MAX_TAGS {
        return Err(format!(
            "{s:?} has {} VLAN ids: at most {MAX_TAGS}, outermost first (e.g. 300.200.100)",
            ids.len()
        ));
    }
    Ok(VlanIdStack(ids))
}

/// The VLAN stack (outermost first) for `--vlan`, `--qinq` or `--vlans`, empty for none. One
/// tag is 802.1Q (TPID 0x8100); of two or three, the outermost is 802.1ad (0x88a8) and the
/// others 802.1Q.
pub fn vlan_stack(
    vlan: Option<u16>,
    qinq: Option<Qinq>,
    ids: Option<&VlanIdStack>,
) -> Vec<VlanTag> {
    let ids: Vec<u16> = match (vlan, qinq, ids) {
        (_, _, Some(s)) => s.0.clone(),
        (_, Some(q), None) => vec![q.outer, q.inner],
        (Some(v), None, None) => vec![v],
        (None, None, None) => Vec::new(),
    };
    let n = ids.len();
    ids.into_iter()
        .enumerate()
        .filter_map(|(k, id)| {
            let tpid = if k == 0 && n > 1 {
                Tpid::QINQ
            } else {
                Tpid::DOT1Q
            };
            VlanId::new(id).map(|id| VlanTag::new(tpid, id))
        })
        .collect()
}

/// `none`, `100` or `200.100`, for tables and JSON.
pub fn describe_vlans(vlans: &[VlanTag]) -> String {
    if vlans.is_empty() {
        return "none".to_owned();
    }
    vlans
        .iter()
        .map(|t| t.id.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(wire_len(0, 64), 106);
        assert_eq!(wire_len(0, 8), 60);
        assert_eq!(wire_len(2, 1400), 1450);
        assert_eq!(max_payload(0), 1472);
    }

    #[test]
    fn ip_ranges() {
        let base = Ipv4Addr::new(10, 55, 1, 250);
        assert_eq!(ip_offset(base, 10), Ipv4Addr::new(10, 55, 2, 4));
        assert_eq!(ip_index(base, 20, Ipv4Addr::new(10, 55, 2, 4)), Some(10));
        assert_eq!(ip_index(base, 10, Ipv4Addr::new(10, 55, 2, 4)), None);
        assert_eq!(ip_index(base, 10, Ipv4Addr::new(10, 55, 1, 1)), None);
    }

    #[test]
    fn parsing() {
        let c: Ipv4Cidr = "10.56.0.10/24".parse().unwrap();
        assert_eq!(c.prefix, 24);
        assert!(c.contains(Ipv4Addr::new(10, 56, 0, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 56, 1, 1)));
        assert!("10.56.0.10/33".parse::<Ipv4Cidr>().is_err());
        assert_eq!(
            parse_qinq("200.100").unwrap(),
            Qinq {
                outer: 200,
                inner: 100
            }
        );
        assert!(parse_qinq("200").is_err());
        assert!(parse_vlan_id("4095").is_err());
        assert!(parse_vlan_id("0").is_err());
        assert!(parse_qinq("0.100").is_err());
        assert_eq!(parse_vlan_id("4094"), Ok(4094));
        let stack = vlan_stack(None, Some(parse_qinq("200.100").unwrap()), None);
        assert_eq!(stack[0].tpid, Tpid::QINQ);
        assert_eq!(describe_vlans(&stack), "200.100");
        assert_eq!(describe_vlans(&vlan_stack(Some(7), None, None)), "7");
        // The general form: the same stacks for one and two ids, and three.
        let ids = |s| parse_vlan_ids(s).unwrap();
        assert_eq!(
            vlan_stack(None, None, Some(&ids("7"))),
            vlan_stack(Some(7), None, None)
        );
        assert_eq!(vlan_stack(None, None, Some(&ids("200.100"))), stack);
        let three = vlan_stack(None, None, Some(&ids("300.200.100")));
        let tpids: Vec<Tpid> = three.iter().map(|t| t.tpid).collect();
        assert_eq!(tpids, [Tpid::QINQ, Tpid::DOT1Q, Tpid::DOT1Q]);
        assert_eq!(describe_vlans(&three), "300.200.100");
        assert_eq!(
            parse_vlan_ids("1.2.3.4").unwrap_err(),
            "\"1.2.3.4\" has 4 VLAN ids: at most 3, outermost first (e.g. 300.200.100)"
        );
        assert!(parse_vlan_ids("1..3").unwrap_err().contains(VLAN_RULE));
        assert!(parse_vlan_ids("1.4095").unwrap_err().contains(VLAN_RULE));
    }

    #[test]
    fn endpoint_macs() {
        for bad in [
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "x",
        ] {
            assert!(parse_unicast_mac(bad).is_err(), "{bad}");
        }
        let base = parse_unicast_mac("02:ff:ff:ff:ff:fe").unwrap();
        assert!(check_mac_range(base, 2).is_ok());
        let e = check_mac_range(base, 5).unwrap_err();
        assert!(
            e.contains("03:00:00:00:00:02") && e.contains("at most 2"),
            "{e}"
        );
        let base = parse_unicast_mac("fe:ff:ff:ff:ff:ff").unwrap();
        assert!(check_mac_range(base, 1).is_ok());
        assert!(check_mac_range(base, 2).is_err());
        assert!(check_mac_range(parse_unicast_mac("02:00:00:00:00:00").unwrap(), 65_536).is_ok());
    }

    #[test]
    fn endpoint_ips() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(check_ip_range("--ip", ip("10.0.0.1"), 65_536).is_ok());
        assert!(check_ip_range("--ip", ip("255.255.255.250"), 10).is_err());
        assert!(check_ip_range("--ip", ip("126.255.255.250"), 10).is_err());
        assert!(check_ip_range("--ip", ip("223.255.255.255"), 2).is_err());
        for bad in ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255"] {
            assert!(check_ip_range("--ip", ip(bad), 1).is_err(), "{bad}");
        }
    }
}
