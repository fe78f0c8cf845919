//! Martians: the received UDP datagrams a host drops before any socket sees them, because no
//! host sends from their source address or port, or receives on their destination.
//!
//! A frame's bytes are whatever its sender wrote, so an endpoint that answers every datagram it
//! receives answers forged ones too: a request "from" `255.255.255.255` or `224.0.0.1` makes a
//! reply that every host on the segment receives, one "from" `127.0.0.1` makes a peer talk to
//! itself. A host's IP stack drops such datagrams on receive; these functions hold the same
//! rules, as pure functions of the addresses, for the receive paths that want them (the relay's
//! per-queue filter that `RUdpConn` and `SharingRUdpConn` turn on, and the perf tool's echo
//! server before it answers).
//!
//! # The rules
//!
//! Linux's receive path is the model: `ip_route_input_slow` and `ip_route_input_mc` in
//! `net/ipv4/route.c` for IPv4, `ip6_rcv_core` in `net/ipv6/ip6_input.c` for IPv6. Every
//! datagram Linux drops as martian is dropped here; a few classes it accepts are dropped too,
//! each said below with why.
//!
//! IPv4 source ([`ipv4_source`]):
//! - `224.0.0.0/4` (multicast) and `255.255.255.255` (limited broadcast): as Linux.
//! - `127.0.0.0/8` (loopback): as Linux with `route_localnet` off, its default.
//! - `0.0.0.0/8` ("this network"): as Linux, except `0.0.0.0` to `255.255.255.255`, the
//!   DHCP client's DISCOVER and REQUEST before it has an address. Stricter than Linux: Linux
//!   also takes any `0/8` source to the limited broadcast, and to a link-local group
//!   (`224.0.0.0/24`, for IGMP); no UDP protocol sends either.
//! - `240.0.0.0/4` (class E, reserved): stricter than Linux, which has accepted class E as
//!   unicast since 2008. RFC 1812 (5.3.7) lists class E among the martians; nobody is
//!   assigned an address there, so only a forger sends from one.
//!
//! IPv4 destination ([`ipv4_destination`]): `0.0.0.0/8` and `127.0.0.0/8`, as Linux (it
//! takes `0.0.0.0` to `0.0.0.0` from `0.0.0.0` as a broadcast; no UDP protocol sends that).
//!
//! IPv6 source ([`ipv6_source`]):
//! - `ff00::/8` (multicast, RFC 4291 2.7) and `::1` (loopback, RFC 4291 2.5.3): as Linux on
//!   any interface but `lo`.
//! - `::` (unspecified): stricter than Linux. A host uses it only before it has an address,
//!   for neighbour discovery and MLD, which are ICMPv6; a DHCPv6 client sends from its
//!   link-local address (RFC 8415 13.1). A UDP datagram from `::` cannot be answered.
//! - `::ffff:0:0/96` (IPv4-mapped): stricter than Linux today. Such an address names an IPv4
//!   peer inside a dual-stack host and never appears on the wire; `::ffff:127.0.0.1` fools
//!   address checks. Linux dropped these sources in `ip6_rcv_core` from 2017 to 2021 and
//!   moved the check to TCP after a UDP sFlow collector broke: that is the kind of tool the
//!   conns' opt-out is for.
//!
//! IPv6 destination ([`ipv6_destination`]): `::1` (as Linux), multicast of scope 0 (reserved)
//! and 1 (interface-local) (as Linux for frames from another node), and, stricter, `::` and
//! `::ffff:0:0/96`, which no interface holds.
//!
//! Ports ([`udp`]): source or destination port 0. Stricter than Linux, which delivers a source
//! port of 0 (RFC 768 lets a sender that wants no reply leave it 0) but whose `sendto` then
//! refuses the reply; no socket is ever bound to destination port 0. What arrives with either
//! is a scan or a forgery.
//!
//! Not here, because the addresses alone do not tell:
//! - A source that is the subnet's broadcast address (`10.0.0.255` in `10.0.0.0/24`), or one
//!   of the receiver's own addresses: Linux finds both in its routing table (not a unicast
//!   route: martian). A receiver that knows its prefix checks them itself (the perf tool's
//!   echo server does).
//! - The IPv4 reserved flag ("evil bit", RFC 791): Linux ignores it on receive, and so do the
//!   conns; a datagram with it set is well formed otherwise.
//! - Group (multicast and broadcast) source MAC addresses: below IP, so the relay drops them
//!   for every conn (`RelayStats::rx_group_source`).
//!
//! ```
//! use etherconn_core::martian::{self, Martian};
//!
//! let sa = |s: &str| s.parse().unwrap();
//! // A DHCP DISCOVER is fine; a forged "broadcast" sender is not.
//! assert_eq!(martian::udp(sa("0.0.0.0:68"), sa("255.255.255.255:67")), None);
//! assert_eq!(
//!     martian::udp(sa("255.255.255.255:7"), sa("192.0.2.1:7")),
//!     Some(Martian::Source)
//! );
//! assert_eq!(martian::udp(sa("192.0.2.9:0"), sa("192.0.2.1:7")), Some(Martian::Port));
//! assert_eq!(martian::udp(sa("[ff02::1]:7"), sa("[2001:db8::1]:7")), Some(Martian::Source));
//! ```

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a host drops a received UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Martian {
    /// No host sends from the source address ([`ipv4_source`], [`ipv6_source`]).
    Source,
    /// No host receives on the destination address ([`ipv4_destination`],
    /// [`ipv6_destination`]), or the two addresses are of different families.
    Destination,
    /// The source or destination port is 0.
    Port,
}

impl fmt::Display for Martian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Martian::Source => "martian source address",
            Martian::Destination => "martian destination address",
            Martian::Port => "UDP port 0",
        })
    }
}

/// The first octet of an IPv4 address.
const fn first(a: Ipv4Addr) -> u8 {
    a.octets()[0]
}

/// Whether no host sends from `src` to `dst` (see [the rules](self#the-rules)).
pub const fn ipv4_source(src: Ipv4Addr, dst: Ipv4Addr) -> bool {
    match first(src) {
        // "This network": only the unspecified address, only to the limited broadcast.
        0 => !(src.is_unspecified() && dst.is_broadcast()),
        127 => true,
        // 224/4 multicast and 240/4 class E, 255.255.255.255 among them.
        o => o >= 224,
    }
}

/// Whether no host receives on `dst` (see [the rules](self#the-rules)).
pub const fn ipv4_destination(dst: Ipv4Addr) -> bool {
    matches!(first(dst), 0 | 127)
}

/// `::ffff:0:0/96`, the IPv4-mapped addresses.
const fn is_v4_mapped(a: Ipv6Addr) -> bool {
    let s = a.segments();
    s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0xffff
}

/// Whether no host sends from `src` (see [the rules](self#the-rules)).
pub const fn ipv6_source(src: Ipv6Addr) -> bool {
    src.is_multicast() || src.is_loopback() || src.is_unspecified() || is_v4_mapped(src)
}

/// Whether no host receives on `dst` (see [the rules](self#the-rules)).
pub const fn ipv6_destination(dst: Ipv6Addr) -> bool {
    // A multicast address's scope is the low nibble of its second byte (RFC 4291 2.7).
    let scope = dst.octets()[1] & 0x0f;
    (dst.is_multicast() && scope <= 1)
        || dst.is_loopback()
        || dst.is_unspecified()
        || is_v4_mapped(dst)
}

/// The verdict on two addresses, the source judged first.
const fn verdict(source: bool, destination: bool) -> Option<Martian> {
    if source {
        Some(Martian::Source)
    } else if destination {
        Some(Martian::Destination)
    } else {
        None
    }
}

/// Why a host drops an IPv4 datagram from `src` to `dst`, or `None` when it takes it.
pub const fn ipv4(src: Ipv4Addr, dst: Ipv4Addr) -> Option<Martian> {
    verdict(ipv4_source(src, dst), ipv4_destination(dst))
}

/// Why a host drops an IPv6 datagram from `src` to `dst`, or `None` when it takes it.
pub const fn ipv6(src: Ipv6Addr, dst: Ipv6Addr) -> Option<Martian> {
    verdict(ipv6_source(src), ipv6_destination(dst))
}

/// Why a host drops a datagram from `src` to `dst`, or `None` when it takes it; the source
/// is judged first.
pub const fn ip(src: IpAddr, dst: IpAddr) -> Option<Martian> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s, d),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d),
        // No IP header holds two families.
        _ => Some(Martian::Destination),
    }
}

/// The verdict on a UDP datagram whose addresses got `address`: that, else port 0.
pub const fn with_ports(address: Option<Martian>, src_port: u16, dst_port: u16) -> Option<Martian> {
    match address {
        Some(m) => Some(m),
        None if src_port == 0 || dst_port == 0 => Some(Martian::Port),
        None => None,
    }
}

/// Why a host drops a UDP datagram from `remote` to `local`, or `None` when it takes it: the
/// addresses ([`ip`]), then the ports. (A relay asks `Classified::udp_martian`, the same
/// verdict read from a classified frame.)
pub const fn udp(remote: SocketAddr, local: SocketAddr) -> Option<Martian> {
    with_ports(ip(remote.ip(), local.ip()), remote.port(), local.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    const UNICAST4: &str = "192.0.2.1";

    #[test]
    fn ipv4_sources() {
        let dst = v4(UNICAST4);
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "0.255.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "254.255.255.255",
            "255.255.255.255",
        ] {
            assert!(ipv4_source(v4(bad), dst), "{bad}");
        }
        for good in [
            "1.0.0.0",
            "10.0.0.255",
            "126.255.255.255",
            "128.0.0.0",
            "169.254.1.1",
            "192.0.2.2",
            "223.255.255.255",
        ] {
            assert!(!ipv4_source(v4(good), dst), "{good}");
            assert!(!ipv4_source(v4(good), Ipv4Addr::BROADCAST), "{good}");
        }
    }

    #[test]
    fn ipv4_unspecified_source_only_to_the_limited_broadcast() {
        let any = Ipv4Addr::UNSPECIFIED;
        assert!(!ipv4_source(any, Ipv4Addr::BROADCAST));
        for dst in ["192.0.2.1", "192.0.2.255", "224.0.0.1", "0.0.0.0"] {
            assert!(ipv4_source(any, v4(dst)), "{dst}");
        }
        // The rest of 0/8 not even there.
        assert!(ipv4_source(v4("0.0.0.1"), Ipv4Addr::BROADCAST));
    }

    #[test]
    fn ipv4_destinations() {
        for bad in ["0.0.0.0", "0.9.9.9", "127.0.0.1", "127.1.2.3"] {
            assert!(ipv4_destination(v4(bad)), "{bad}");
        }
        for good in [
            "192.0.2.1",
            "192.0.2.255",
            "255.255.255.255",
            "224.0.0.1",
            "239.1.2.3",
            "1.1.1.1",
            "126.0.0.1",
            "128.0.0.1",
        ] {
            assert!(!ipv4_destination(v4(good)), "{good}");
        }
    }

    #[test]
    fn ipv6_sources() {
        for bad in [
            "ff02::1",
            "ff01::1",
            "ff0e::1:3",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:192.0.2.1",
        ] {
            assert!(ipv6_source(v6(bad)), "{bad}");
        }
        for good in [
            "fe80::1",
            "2001:db8::1",
            "fd00::1",
            "::2",
            // IPv4-compatible (deprecated, ::/96) and NAT64 (64:ff9b::/96) are not mapped.
            "::192.0.2.1",
            "64:ff9b::192.0.2.1",
            "::fffe:192.0.2.1",
            "0:0:0:0:1:ffff:c000:201",
        ] {
            assert!(!ipv6_source(v6(good)), "{good}");
        }
    }

    #[test]
    fn ipv6_destinations() {
        for bad in [
            "::1",
            "::",
            "ff00::1",
            "ff01::1",
            "ff11::1",
            "ff31::1:2",
            "::ffff:192.0.2.1",
        ] {
            assert!(ipv6_destination(v6(bad)), "{bad}");
        }
        for good in [
            "2001:db8::1",
            "fe80::1",
            "ff02::1",
            "ff02::1:2",
            "ff05::1:3",
            "ff12::1",
            "ff0e::1",
        ] {
            assert!(!ipv6_destination(v6(good)), "{good}");
        }
    }

    /// `Classified::udp_martian`, which reads the stored bytes, agrees with [`udp`].
    #[test]
    fn a_classified_frame_gets_the_same_verdict() {
        use crate::build::{build_udp_frame, UdpFrame};
        use crate::classify::classify;
        let cases = [
            ("192.0.2.9:5", "192.0.2.1:7"),
            ("0.0.0.0:68", "255.255.255.255:67"),
            ("0.0.0.0:68", "192.0.2.1:67"),
            ("255.255.255.255:5", "192.0.2.1:7"),
            ("224.0.0.1:5", "192.0.2.1:7"),
            ("240.0.0.1:5", "192.0.2.1:7"),
            ("127.0.0.1:5", "192.0.2.1:7"),
            ("192.0.2.9:5", "127.0.0.1:7"),
            ("192.0.2.9:0", "192.0.2.1:7"),
            ("[2001:db8::9]:5", "[2001:db8::1]:7"),
            ("[fe80::1]:546", "[ff02::1:2]:547"),
            ("[ff02::1]:5", "[2001:db8::1]:7"),
            ("[::1]:5", "[2001:db8::1]:7"),
            ("[::]:5", "[2001:db8::1]:7"),
            ("[::ffff:192.0.2.9]:5", "[2001:db8::1]:7"),
            ("[2001:db8::9]:5", "[ff01::1]:7"),
            ("[2001:db8::9]:0", "[2001:db8::1]:7"),
        ];
        for (src, dst) in cases {
            let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let mut buf = [0u8; 128];
            let frame = UdpFrame {
                src_mac: crate::wire::MacAddr([2, 0, 0, 0, 0, 1]),
                dst_mac: crate::wire::MacAddr([2, 0, 0, 0, 0, 2]),
                vlans: &[],
                src,
                dst,
                ttl: 64,
                dscp: 0,
                payload: b"x",
            };
            let len = build_udp_frame(&mut buf, &frame).unwrap();
            let c = classify(&buf[..len], None).unwrap();
            let u = c.udp().unwrap();
            assert_eq!(c.udp_martian(), udp(u.remote, u.local), "{src} -> {dst}");
        }
        // No UDP layer, no verdict.
        assert_eq!(crate::classify::Classified::default().udp_martian(), None);
    }

    #[test]
    fn udp_checks_addresses_then_ports() {
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        let ok = sa("192.0.2.1:7");
        assert_eq!(udp(sa("192.0.2.9:5000"), ok), None);
        assert_eq!(udp(sa("0.0.0.0:68"), sa("255.255.255.255:67")), None);
        assert_eq!(udp(sa("0.0.0.0:68"), ok), Some(Martian::Source));
        assert_eq!(udp(sa("192.0.2.9:0"), ok), Some(Martian::Port));
        assert_eq!(
            udp(sa("192.0.2.9:5"), sa("192.0.2.1:0")),
            Some(Martian::Port)
        );
        // The address is judged first.
        assert_eq!(udp(sa("127.0.0.1:0"), ok), Some(Martian::Source));
        assert_eq!(
            udp(sa("192.0.2.9:5"), sa("127.0.0.1:7")),
            Some(Martian::Destination)
        );
        assert_eq!(udp(sa("[2001:db8::9]:5"), sa("[2001:db8::1]:7")), None);
        assert_eq!(
            udp(sa("[::ffff:10.0.0.1]:5"), sa("[2001:db8::1]:7")),
            Some(Martian::Source)
        );
        assert_eq!(
            udp(sa("[2001:db8::9]:5"), sa("[ff01::1]:7")),
            Some(Martian::Destination)
        );
        // Mixed families, which no header holds.
        assert_eq!(
            udp(sa("192.0.2.9:5"), sa("[2001:db8::1]:7")),
            Some(Martian::Destination)
        );
        assert_eq!(Martian::Port.to_string(), "UDP port 0");
    }
}
