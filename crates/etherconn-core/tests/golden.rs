//! The classifier against golden frames made by an independent encoder.
//!
//! `tests/data/make_golden.py` builds the frames with scapy, reads the expected fields back with
//! scapy's dissector and writes them as Rust literals to `tests/data/golden_frames.rs`, included
//! below; `tests/data/check_golden_tshark.sh` cross-checks the same frames with tshark, checksums
//! included. Here every frame must classify exactly as scapy read it, or be rejected when it is
//! marked invalid, both as received and with its outer VLAN tag moved out of the frame the way the
//! kernel's VLAN offload does.

use std::net::{IpAddr, SocketAddr};

use etherconn_core::classify::{classify, Classified, Invalid, IpInfo, UdpInfo};
use etherconn_core::wire::{Tpid, VlanTag};

/// One golden frame.
struct Golden {
    /// Unique name, used in failure messages.
    name: &'static str,
    /// The whole frame as it would come off the wire (no FCS).
    frame: &'static [u8],
    /// Whether the classifier must accept it.
    valid: bool,
    /// Why an invalid frame is invalid (empty for valid frames).
    invalid_reason: &'static str,
    /// What the classifier must report; `None` for invalid frames.
    expected: Option<Expected>,
}

/// What scapy read from a valid frame.
struct Expected {
    dst_mac: &'static str,
    src_mac: &'static str,
    /// Outermost first.
    vlans: &'static [GoldenVlan],
    /// The EtherType after the last tag.
    ethertype: u16,
    /// Where the Ethernet payload (after the last tag) starts.
    l2_payload_offset: usize,
    ip: Option<GoldenIp>,
    udp: Option<GoldenUdp>,
    /// The dispatch key in its text form.
    key: &'static str,
}

/// One VLAN tag of a golden frame.
struct GoldenVlan {
    tpid: u16,
    id: u16,
    pcp: u8,
    dei: bool,
}

/// The IP header of a golden frame.
struct GoldenIp {
    version: u8,
    src: &'static str,
    dst: &'static str,
    /// The upper-layer protocol (after IPv6 extension headers).
    protocol: u8,
    /// TTL or hop limit.
    ttl: u8,
    /// Whether the packet is an IPv4 fragment (MF set or non-zero offset).
    fragment: bool,
    /// Offset one past the IP packet's last byte (Ethernet padding excluded).
    end: usize,
}

/// The UDP header and payload of a golden frame.
struct GoldenUdp {
    src_port: u16,
    dst_port: u16,
    payload: &'static [u8],
    /// The checksum field as on the wire (0 = none, IPv4 only).
    checksum: u16,
}

include!("data/golden_frames.rs");

/// `IpAddr`/`SocketAddr` whichever address type the classifier reports them in.
fn ip_addr(a: impl Into<IpAddr>) -> IpAddr {
    a.into()
}

fn sock_addr(a: impl Into<SocketAddr>) -> SocketAddr {
    a.into()
}

fn parse_ip(s: &str) -> IpAddr {
    s.parse().expect("golden IP address")
}

/// Compares a classification with scapy's reading; `shift` is how many bytes were removed from
/// the front of the frame (4 when the outer tag was stripped), so that offsets move by that much.
fn check_classified(g: &Golden, frame: &[u8], c: &Classified, shift: usize) {
    let e = g
        .expected
        .as_ref()
        .expect("valid golden frames have expectations");
    let name = g.name;
    assert_eq!(c.key.to_string(), e.key, "{name}: key");
    assert_eq!(c.dst_mac().to_string(), e.dst_mac, "{name}: dst_mac");
    assert_eq!(c.src_mac.to_string(), e.src_mac, "{name}: src_mac");
    assert_eq!(c.ethertype().0, e.ethertype, "{name}: ethertype");

    let vlans = c.vlans();
    let tags = vlans.as_slice();
    assert_eq!(tags.len(), e.vlans.len(), "{name}: number of VLAN tags");
    for (i, (got, want)) in tags.iter().zip(e.vlans).enumerate() {
        assert_eq!(got.tpid.get(), want.tpid, "{name}: tag {i} TPID");
        assert_eq!(got.id.get(), want.id, "{name}: tag {i} id");
        assert_eq!(got.pcp, want.pcp, "{name}: tag {i} PCP");
        assert_eq!(got.dei, want.dei, "{name}: tag {i} DEI");
    }
    assert_eq!(
        c.payload().start,
        e.l2_payload_offset - shift,
        "{name}: Ethernet payload start"
    );
    assert!(
        c.payload().end <= frame.len(),
        "{name}: Ethernet payload end"
    );

    match (&c.ip(), &e.ip) {
        (None, None) => {}
        (Some(ip), Some(want)) => check_ip(name, ip, want, shift),
        (got, want) => panic!(
            "{name}: IP info present {} but golden says {}",
            got.is_some(),
            want.is_some()
        ),
    }
    match (&c.udp(), &e.udp) {
        (None, None) => {}
        (Some(udp), Some(want)) => check_udp(name, frame, udp, want, e.ip.as_ref()),
        (got, want) => panic!(
            "{name}: UDP info present {} but golden says {}",
            got.is_some(),
            want.is_some()
        ),
    }
}

fn check_ip(name: &str, ip: &IpInfo, want: &GoldenIp, shift: usize) {
    let src = ip_addr(ip.src);
    let dst = ip_addr(ip.dst);
    let version = if src.is_ipv4() { 4 } else { 6 };
    assert_eq!(version, want.version, "{name}: IP version");
    assert_eq!(dst.is_ipv4(), src.is_ipv4(), "{name}: IP address families");
    assert_eq!(src, parse_ip(want.src), "{name}: IP source");
    assert_eq!(dst, parse_ip(want.dst), "{name}: IP destination");
    assert_eq!(ip.protocol, want.protocol, "{name}: IP protocol");
    assert_eq!(ip.ttl, want.ttl, "{name}: TTL / hop limit");
    assert_eq!(ip.fragment, want.fragment, "{name}: fragment");
    assert_eq!(
        ip.payload.end,
        want.end - shift,
        "{name}: IP payload end (padding must be trimmed)"
    );
    assert!(
        ip.payload.start <= ip.payload.end,
        "{name}: IP payload span"
    );
}

fn check_udp(name: &str, frame: &[u8], udp: &UdpInfo, want: &GoldenUdp, ip: Option<&GoldenIp>) {
    let ip = ip.expect("golden UDP frames have an IP header");
    let remote = sock_addr(udp.remote);
    let local = sock_addr(udp.local);
    assert_eq!(
        remote,
        SocketAddr::new(parse_ip(ip.src), want.src_port),
        "{name}: UDP remote (the frame's source)"
    );
    assert_eq!(
        local,
        SocketAddr::new(parse_ip(ip.dst), want.dst_port),
        "{name}: UDP local (the frame's destination)"
    );
    assert_eq!(udp.checksum, want.checksum, "{name}: UDP checksum field");
    let payload = frame.get(udp.payload.range()).unwrap_or_else(|| {
        panic!(
            "{name}: UDP payload span {:?} outside the frame",
            udp.payload
        )
    });
    assert_eq!(payload, want.payload, "{name}: UDP payload bytes");
}

fn describe(r: &Result<Classified, Invalid>) -> String {
    match r {
        Ok(c) => format!("Ok(key {})", c.key),
        Err(e) => format!("Err({e:?})"),
    }
}

/// The frame with its outer tag removed, and that tag as the kernel reports it separately
/// (PACKET_AUXDATA / the ring header); `None` when the frame is not tagged.
fn strip_outer_tag(frame: &[u8]) -> Option<(Vec<u8>, VlanTag)> {
    if frame.len() < 16 {
        return None;
    }
    let tpid = Tpid::new(u16::from_be_bytes([frame[12], frame[13]]))?;
    let tci = u16::from_be_bytes([frame[14], frame[15]]);
    let mut stripped = Vec::with_capacity(frame.len() - 4);
    stripped.extend_from_slice(&frame[..12]);
    stripped.extend_from_slice(&frame[16..]);
    Some((stripped, VlanTag::from_tci(tpid, tci)))
}

#[test]
fn golden_table_is_sane() {
    let valid = GOLDEN.iter().filter(|g| g.valid).count();
    assert!(valid >= 20, "only {valid} valid golden frames");
    assert!(GOLDEN.len() - valid >= 10, "too few invalid golden frames");
    for (i, g) in GOLDEN.iter().enumerate() {
        assert!(
            GOLDEN[..i].iter().all(|o| o.name != g.name),
            "duplicate {}",
            g.name
        );
        assert_eq!(g.valid, g.expected.is_some(), "{}", g.name);
        assert_eq!(g.valid, g.invalid_reason.is_empty(), "{}", g.name);
        assert!(!g.frame.is_empty(), "{}", g.name);
    }
}

#[test]
fn golden_frames_classify_as_scapy_reads_them() {
    for g in GOLDEN {
        let r = classify(g.frame, None);
        if g.valid {
            match &r {
                Ok(c) => check_classified(g, g.frame, c, 0),
                Err(e) => panic!("{}: valid frame rejected: {e:?}", g.name),
            }
        } else {
            assert!(
                r.is_err(),
                "{}: invalid frame ({}) accepted: {}",
                g.name,
                g.invalid_reason,
                describe(&r)
            );
        }
    }
}

/// Kernel VLAN offload: the outer tag arrives beside the frame, not in it. The classification
/// (key, VLAN stack, addresses, payloads) must be the one of the frame as sent.
#[test]
fn golden_frames_classify_the_same_with_outer_tag_stripped() {
    let mut tagged = 0;
    for g in GOLDEN {
        let Some((frame, tag)) = strip_outer_tag(g.frame) else {
            continue;
        };
        tagged += 1;
        let r = classify(&frame, Some(tag));
        if g.valid {
            match &r {
                Ok(c) => check_classified(g, &frame, c, 4),
                Err(e) => panic!("{}: valid frame rejected once stripped: {e:?}", g.name),
            }
            let whole = classify(g.frame, None).unwrap_or_else(|e| panic!("{}: {e:?}", g.name));
            let c = r.as_ref().unwrap_or_else(|e| panic!("{}: {e:?}", g.name));
            assert_eq!(c.key, whole.key, "{}: key with and without offload", g.name);
            assert_eq!(c.vlans(), whole.vlans(), "{}: VLAN stack", g.name);
        } else {
            assert!(
                r.is_err(),
                "{}: invalid frame ({}) accepted once stripped: {}",
                g.name,
                g.invalid_reason,
                describe(&r)
            );
        }
    }
    assert!(tagged >= 8, "only {tagged} tagged golden frames");
}
