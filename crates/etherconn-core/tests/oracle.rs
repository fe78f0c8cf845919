//! etherconn-core against an independent oracle, etherparse.
//!
//! - Built frames: every frame `build_udp_frame` writes is read back by etherparse field by
//!   field (MACs, VLAN TPID/PCP/DEI/id, addresses, TTL, DSCP, ports, payload), etherparse's own
//!   checksum code agrees with the IPv4 header and UDP checksums, and `classify` returns the
//!   fields the frame was built from.
//! - Hostile frames (built frames mutated, frames assembled from hostile parts with consistent
//!   checksums, random bytes): `classify` never panics, every range it returns lies inside the
//!   frame, whenever it returns a UDP datagram etherparse reads the same datagram (same MACs,
//!   VLANs, addresses, ports, ranges and checksums), and whenever etherparse finds a length or
//!   header error in a layer we parse, `classify` rejects the frame too.
//! - VLAN offload: a frame whose outer tag the kernel stripped classifies exactly like the frame
//!   with the tag still in it (ranges shifted by the tag's four bytes).
//! - Regressions: every hostile input that ever failed one of these properties is kept as a hex
//!   file under `tests/data/regressions/` and replayed by [`regressions`].
//!
//! The two parsers legitimately differ in a few places; each comparison that has to skip a case
//! says so at that point in a comment starting with `EXCLUSION`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::classify::{
    classify, classify_with, Classified, Invalid, IpInfo, Options, UdpInfo,
};
use etherconn_core::wire::vlan::VlanStack;
use etherconn_core::wire::{EtherType, MacAddr, Span, Tpid, VlanId, VlanTag};
use etherconn_core::{L2EndpointKey, VlanIds};
use etherparse::err::packet::SliceError;
use etherparse::err::Layer as EpLayer;
use etherparse::{
    LinkExtSlice, LinkSlice, NetHeaders, NetSlice, PacketHeaders, PayloadSlice, SlicedPacket,
    TransportHeader, TransportSlice,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

type TestResult = Result<(), TestCaseError>;

const TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
const UDP: u8 = 17;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failing inputs are kept by hand as hex files in tests/data/regressions/ instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Small independent helpers (deliberately not the crate's own code).

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The Internet checksum of `data` added to `acc`, folded and complemented.
fn inet_checksum(acc: u32, data: &[u8]) -> u16 {
    let mut sum = acc;
    for w in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_sum(src: &[u8], dst: &[u8], len: u16) -> u32 {
    let mut sum = u32::from(UDP) + u32::from(len);
    for w in src.chunks(2).chain(dst.chunks(2)) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    sum
}

fn udp_checksum(src: &[u8], dst: &[u8], datagram: &[u8]) -> u16 {
    let c = inet_checksum(pseudo_sum(src, dst, datagram.len() as u16), datagram);
    if c == 0 {
        0xffff
    } else {
        c
    }
}

/// Where `sub` (a slice etherparse returned) lies within `frame`.
fn span_of(frame: &[u8], sub: &[u8]) -> Span {
    let start = sub.as_ptr() as usize - frame.as_ptr() as usize;
    assert!(start + sub.len() <= frame.len(), "slice outside the frame");
    Span::new(start, start + sub.len())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The EtherType after at most three complete VLAN tags, with the offset of the payload; `None`
/// for a frame truncated inside its tags or with more than three of them.
fn ether_chain(frame: &[u8]) -> Option<(u16, usize)> {
    if frame.len() < 14 {
        return None;
    }
    let mut et = be16(frame, 12);
    let mut at = 14;
    let mut tags = 0;
    while TPIDS.contains(&et) {
        tags += 1;
        if tags > 3 || frame.len() < at + 4 {
            return None;
        }
        et = be16(frame, at + 2);
        at += 4;
    }
    Some((et, at))
}

/// Everything a classification reports, expanded by its accessors (so that two readings are
/// equal exactly when the classifications are), with ranges that can be moved.
#[derive(Debug, PartialEq)]
struct Reading {
    key: L2EndpointKey,
    dst_mac: MacAddr,
    src_mac: MacAddr,
    vlans: VlanStack,
    ethertype: EtherType,
    payload: Span,
    ip: Option<IpInfo>,
    udp: Option<UdpInfo>,
}

fn reading(c: &Classified) -> Reading {
    Reading {
        key: c.key,
        dst_mac: c.dst_mac(),
        src_mac: c.src_mac,
        vlans: c.vlans(),
        ethertype: c.ethertype(),
        payload: c.payload(),
        ip: c.ip(),
        udp: c.udp(),
    }
}

/// Moves every range of a classification `by` bytes towards the start of the frame.
fn shifted(c: Classified, by: usize) -> Reading {
    let mut c = reading(&c);
    let shift = |s: Span| Span::new(s.start - by, s.end - by);
    c.payload = shift(c.payload);
    if let Some(ip) = &mut c.ip {
        ip.payload = shift(ip.payload);
    }
    if let Some(u) = &mut c.udp {
        u.payload = shift(u.payload);
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Frames to build.

#[derive(Debug, Clone)]
struct Spec {
    src_mac: MacAddr,
    dst_mac: MacAddr,
    vlans: Vec<VlanTag>,
    src: SocketAddr,
    dst: SocketAddr,
    ttl: u8,
    dscp: u8,
    payload: Vec<u8>,
}

impl Spec {
    fn frame(&self) -> UdpFrame<'_> {
        UdpFrame {
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            vlans: &self.vlans,
            src: self.src,
            dst: self.dst,
            ttl: self.ttl,
            dscp: self.dscp,
            payload: &self.payload,
        }
    }

    fn build(&self) -> Vec<u8> {
        let f = self.frame();
        let mut buf = vec![0xa5; f.len() + 64];
        let len = build_udp_frame(&mut buf, &f).expect("a valid spec builds");
        buf.truncate(len);
        buf
    }

    fn ip_offset(&self) -> usize {
        14 + 4 * self.vlans.len()
    }
}

fn vlan_tag() -> impl Strategy<Value = VlanTag> {
    (
        prop::sample::select(TPIDS.to_vec()),
        0u8..8,
        any::<bool>(),
        0u16..=4095,
    )
        .prop_map(|(tpid, pcp, dei, id)| VlanTag {
            tpid: Tpid::new(tpid).unwrap(),
            pcp,
            dei,
            id: VlanId::new(id).unwrap(),
        })
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![vec(any::<u8>(), 0..48), vec(any::<u8>(), 0..1500)]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        vec(vlan_tag(), 0..=3),
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        1u16..=65535,
        any::<u8>(),
        0u8..=63,
        payload(),
    )
        .prop_map(
            |(src_mac, dst_mac, vlans, v6, s, d, sport, dport, ttl, dscp, payload)| {
                let (src, dst): (IpAddr, IpAddr) = if v6 {
                    (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into())
                } else {
                    (
                        Ipv4Addr::new(s[0], s[1], s[2], s[3]).into(),
                        Ipv4Addr::new(d[0], d[1], d[2], d[3]).into(),
                    )
                };
                Spec {
                    src_mac: MacAddr(src_mac),
                    dst_mac: MacAddr(dst_mac),
                    vlans,
                    src: SocketAddr::new(src, sport),
                    dst: SocketAddr::new(dst, dport),
                    ttl,
                    dscp,
                    payload,
                }
            },
        )
}

fn tagged_spec() -> impl Strategy<Value = Spec> {
    (spec(), vec(vlan_tag(), 1..=3)).prop_map(|(mut s, vlans)| {
        s.vlans = vlans;
        s
    })
}

// ---------------------------------------------------------------------------------------------
// Property (a): built frames, read back by etherparse and by classify.

fn check_built_frame(spec: &Spec) -> TestResult {
    let frame = spec.build();
    let frame = &frame[..];
    let f = spec.frame();
    prop_assert_eq!(frame.len(), f.len().max(60));
    // Padding, if any, is zeros.
    prop_assert!(frame[f.len().min(frame.len())..].iter().all(|&b| b == 0));

    let sp = SlicedPacket::from_ethernet(frame)
        .map_err(|e| TestCaseError::fail(format!("etherparse rejects a built frame: {e}")))?;

    // Ethernet and VLAN tags.
    let Some(LinkSlice::Ethernet2(eth)) = &sp.link else {
        return Err(TestCaseError::fail("no Ethernet II header"));
    };
    prop_assert_eq!(eth.destination(), spec.dst_mac.0);
    prop_assert_eq!(eth.source(), spec.src_mac.0);
    prop_assert_eq!(sp.link_exts.len(), spec.vlans.len());
    let mut tpid = eth.ether_type().0;
    for (ext, want) in sp.link_exts.iter().zip(&spec.vlans) {
        let LinkExtSlice::Vlan(v) = ext else {
            return Err(TestCaseError::fail("not a VLAN tag"));
        };
        prop_assert_eq!(tpid, want.tpid.get(), "TPID");
        prop_assert_eq!(v.vlan_identifier().value(), want.id.get());
        prop_assert_eq!(v.priority_code_point().value(), want.pcp);
        prop_assert_eq!(v.drop_eligible_indicator(), want.dei);
        tpid = v.ether_type().0;
    }
    let udp_len = 8 + spec.payload.len();

    // IP.
    let ip_start = spec.ip_offset();
    match (&sp.net, spec.src.ip(), spec.dst.ip()) {
        (Some(NetSlice::Ipv4(v4)), IpAddr::V4(src), IpAddr::V4(dst)) => {
            prop_assert_eq!(tpid, 0x0800);
            let h = v4.header();
            prop_assert_eq!(span_of(frame, h.slice()).start, ip_start);
            prop_assert_eq!(h.ihl(), 5);
            prop_assert_eq!(h.source_addr(), src);
            prop_assert_eq!(h.destination_addr(), dst);
            prop_assert_eq!(h.ttl(), spec.ttl);
            prop_assert_eq!(h.dcp().value(), spec.dscp);
            prop_assert_eq!(h.ecn().value(), 0);
            prop_assert_eq!(h.protocol().0, UDP);
            prop_assert_eq!(usize::from(h.total_len()), 20 + udp_len);
            prop_assert!(!h.is_fragmenting_payload());
            prop_assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
        }
        (Some(NetSlice::Ipv6(v6)), IpAddr::V6(src), IpAddr::V6(dst)) => {
            prop_assert_eq!(tpid, 0x86dd);
            let h = v6.header();
            prop_assert_eq!(span_of(frame, h.slice()).start, ip_start);
            prop_assert_eq!(h.source_addr(), src);
            prop_assert_eq!(h.destination_addr(), dst);
            prop_assert_eq!(h.hop_limit(), spec.ttl);
            prop_assert_eq!(h.traffic_class(), spec.dscp << 2);
            prop_assert_eq!(h.dscp().value(), spec.dscp);
            prop_assert_eq!(h.next_header().0, UDP);
            prop_assert_eq!(usize::from(h.payload_length()), udp_len);
            prop_assert!(v6.extensions().is_empty());
        }
        (net, _, _) => return Err(TestCaseError::fail(format!("wrong IP layer: {net:?}"))),
    }

    // UDP, with etherparse's checksum.
    let Some(TransportSlice::Udp(u)) = &sp.transport else {
        return Err(TestCaseError::fail("no UDP layer"));
    };
    prop_assert_eq!(u.source_port(), spec.src.port());
    prop_assert_eq!(u.destination_port(), spec.dst.port());
    prop_assert_eq!(usize::from(u.length()), udp_len);
    prop_assert_eq!(u.payload(), &spec.payload[..]);
    prop_assert_eq!(span_of(frame, u.payload()).start, f.payload_offset());
    let want = match &sp.net {
        Some(NetSlice::Ipv4(v4)) => u
            .to_header()
            .calc_checksum_ipv4(&v4.header().to_header(), u.payload()),
        Some(NetSlice::Ipv6(v6)) => u
            .to_header()
            .calc_checksum_ipv6(&v6.header().to_header(), u.payload()),
        _ => unreachable!(),
    }
    .expect("payload fits");
    prop_assert_eq!(u.checksum(), want, "UDP checksum");

    // The owned-header reading agrees as well.
    let ph = PacketHeaders::from_ethernet_slice(frame)
        .map_err(|e| TestCaseError::fail(format!("PacketHeaders rejects a built frame: {e}")))?;
    prop_assert_eq!(ph.payload, PayloadSlice::Udp(&spec.payload[..]));
    match (&ph.net, &ph.transport) {
        (Some(NetHeaders::Ipv4(h, _)), Some(TransportHeader::Udp(uh))) => {
            prop_assert_eq!(h.header_checksum, h.calc_header_checksum());
            prop_assert_eq!(
                uh.checksum,
                uh.calc_checksum_ipv4(h, &spec.payload).unwrap()
            );
        }
        (Some(NetHeaders::Ipv6(h, _)), Some(TransportHeader::Udp(uh))) => {
            prop_assert_eq!(
                uh.checksum,
                uh.calc_checksum_ipv6(h, &spec.payload).unwrap()
            );
        }
        other => return Err(TestCaseError::fail(format!("PacketHeaders: {other:?}"))),
    }

    // Round trip through the classifier.
    let c = classify(frame, None)
        .map_err(|e| TestCaseError::fail(format!("classify rejects a built frame: {e}")))?;
    check_invariants(frame, None, &c)?;
    let ethertype = if spec.src.is_ipv4() {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    };
    prop_assert_eq!(c.dst_mac(), spec.dst_mac);
    prop_assert_eq!(c.src_mac, spec.src_mac);
    let vlans = c.vlans();
    prop_assert_eq!(vlans.as_slice(), &spec.vlans[..]);
    prop_assert_eq!(c.ethertype(), ethertype);
    prop_assert_eq!(
        c.key,
        L2EndpointKey::new(
            spec.dst_mac,
            VlanIds::from_tags(&spec.vlans).unwrap(),
            ethertype
        )
    );
    prop_assert_eq!(c.payload(), Span::new(ip_start, f.len()));
    let ip = c.ip().expect("IP layer");
    prop_assert_eq!(ip.src, spec.src.ip());
    prop_assert_eq!(ip.dst, spec.dst.ip());
    prop_assert_eq!(ip.protocol, UDP);
    prop_assert_eq!(ip.ttl, spec.ttl);
    prop_assert!(!ip.fragment);
    prop_assert_eq!(ip.payload, Span::new(f.payload_offset() - 8, f.len()));
    let cu = c.udp().expect("UDP layer");
    prop_assert_eq!(cu.remote, spec.src);
    prop_assert_eq!(cu.local, spec.dst);
    prop_assert_eq!(cu.payload, span_of(frame, u.payload()));
    prop_assert_eq!(&frame[cu.payload.range()], &spec.payload[..]);
    prop_assert_eq!(cu.checksum, u.checksum());
    Ok(())
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn built_frames_agree_with_etherparse(spec in spec()) {
        check_built_frame(&spec)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Invariants of any successful classification.

fn within(outer: Span, inner: Span) -> bool {
    outer.start <= inner.start && inner.start <= inner.end && inner.end <= outer.end
}

fn check_invariants(frame: &[u8], stripped: Option<VlanTag>, c: &Classified) -> TestResult {
    prop_assert!(frame.len() >= 14);
    prop_assert_eq!(&c.dst_mac().0[..], &frame[0..6]);
    prop_assert_eq!(&c.src_mac.0[..], &frame[6..12]);
    prop_assert!(within(Span::new(0, frame.len()), c.payload()), "{:?}", c);
    prop_assert!(c.vlans().len() <= 3);
    prop_assert_eq!(c.key.vlans.len(), c.vlans().len());
    let ids: Vec<u16> = c.vlans().as_slice().iter().map(|t| t.id.get()).collect();
    prop_assert_eq!(c.key.vlans.as_slice(), &ids[..]);
    prop_assert_eq!(c.key.mac, c.dst_mac());
    prop_assert_eq!(c.key.ethertype, c.ethertype());
    prop_assert!(!TPIDS.contains(&c.ethertype().0));
    if let Some(tag) = stripped {
        let vlans = c.vlans();
        prop_assert_eq!(vlans.as_slice().first(), Some(&tag));
    }
    let in_frame = c.vlans().len() - usize::from(stripped.is_some());
    prop_assert_eq!(c.payload().start, 14 + 4 * in_frame);
    if let Some(ip) = &c.ip() {
        prop_assert!(c.ethertype() == EtherType::IPV4 || c.ethertype() == EtherType::IPV6);
        prop_assert!(within(c.payload(), ip.payload), "{:?}", c);
    }
    if let Some(u) = &c.udp() {
        let ip = c.ip().expect("UDP without IP");
        prop_assert_eq!(ip.protocol, UDP);
        prop_assert!(!ip.fragment);
        prop_assert!(within(ip.payload, u.payload), "{:?}", c);
        prop_assert_eq!(u.payload.start, ip.payload.start + 8);
        prop_assert_eq!(u.remote.ip(), ip.src);
        prop_assert_eq!(u.local.ip(), ip.dst);
        prop_assert_ne!(u.local.port(), 0);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Property (b): hostile frames against etherparse.

/// Checks one frame: no panic, invariants, and agreement with etherparse where both claim
/// success, for every combination of options and a stripped tag.
fn check_frame(frame: &[u8]) -> TestResult {
    for verify in [true, false] {
        let opts = Options::new().verify_udp_checksum(verify);
        let ours = classify_with(frame, None, opts);
        if let Ok(c) = &ours {
            check_invariants(frame, None, c)?;
        }
        let theirs = SlicedPacket::from_ethernet(frame);
        if let Ok(c) = &ours {
            if c.udp().is_some() {
                compare_udp(frame, c, &theirs, verify)?;
            }
        }
        if let Err(e) = &theirs {
            if etherparse_error_binds_us(frame, e) {
                prop_assert!(
                    ours.is_err(),
                    "etherparse: {}; classify accepted {:?}",
                    e,
                    ours
                );
            }
        }
        check_stripped_equivalence(frame, opts)?;
        // Any tag the kernel might report, on any frame: invariants only.
        let tag = VlanTag::from_tci(Tpid::QINQ, (frame.len() as u16).wrapping_mul(0x9e37));
        if let Ok(c) = classify_with(frame, Some(tag), opts) {
            check_invariants(frame, Some(tag), &c)?;
        }
    }
    Ok(())
}

/// Whether etherparse's rejection of `frame` means ours must reject it too.
fn etherparse_error_binds_us(frame: &[u8], e: &SliceError) -> bool {
    use EpLayer::*;
    let chain = ether_chain(frame);
    let ipv4 = matches!(chain, Some((0x0800, _)));
    let ipv6 = matches!(chain, Some((0x86dd, _)));
    // EXCLUSION: etherparse reads an IPv4 packet with protocol 51 as an Authentication Header
    // followed by the real upper layer; etherconn treats IPv4 protocol 51 as an upper layer it
    // does not parse (AH is only walked in IPv6). Errors behind such a header bind us only at
    // the IPv4 layer itself.
    let ipv4_ah = match chain {
        Some((0x0800, at)) => frame.len() > at + 9 && frame[at + 9] == 51,
        _ => false,
    };
    match e {
        SliceError::Len(l) => match l.layer {
            Ethernet2Header | VlanHeader => true,
            Ipv4Header | Ipv4Packet => ipv4,
            UdpHeader | UdpPayload => (ipv4 && !ipv4_ah) || ipv6,
            Ipv6Header
            | Ipv6Packet
            | Ipv6ExtHeader
            | Ipv6HopByHopHeader
            | Ipv6DestOptionsHeader
            | Ipv6RouteHeader
            | Ipv6FragHeader => ipv6,
            IpAuthHeader => ipv6,
            // EXCLUSION: TCP, ICMP, IGMP, ARP variants and MACsec are layers etherconn does
            // not parse (its ARP check only asks for the fixed 28-byte Ethernet/IPv4 form).
            _ => false,
        },
        SliceError::Ipv4(_) => ipv4,
        SliceError::Ipv6(_) | SliceError::Ipv6Exts(_) => ipv6,
        // EXCLUSION: see `ipv4_ah` above.
        SliceError::Ipv4Exts(_) => false,
        _ => false,
    }
}

/// `classify` returned a UDP datagram: etherparse must read the same one.
fn compare_udp(
    frame: &[u8],
    c: &Classified,
    theirs: &Result<SlicedPacket<'_>, SliceError>,
    verified: bool,
) -> TestResult {
    let u = c.udp().expect("udp");
    let ip = c.ip().expect("ip");
    let sp = match theirs {
        Ok(sp) => sp,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "classify accepts UDP {} -> {}, etherparse rejects the frame: {e}",
                u.remote, u.local
            )))
        }
    };
    let Some(LinkSlice::Ethernet2(eth)) = &sp.link else {
        return Err(TestCaseError::fail("etherparse: no Ethernet II header"));
    };
    prop_assert_eq!(eth.destination(), c.dst_mac().0);
    prop_assert_eq!(eth.source(), c.src_mac.0);
    // EXCLUSION (none needed in this direction): etherparse reads MACsec, which we treat as an
    // unknown EtherType; such a frame never reaches here with a UDP datagram. (Both read at
    // most three VLAN tags.)
    let mut tpid = eth.ether_type().0;
    let mut tags = Vec::new();
    for ext in &sp.link_exts {
        let LinkExtSlice::Vlan(v) = ext else {
            return Err(TestCaseError::fail("etherparse: MACsec where we saw VLANs"));
        };
        tags.push(VlanTag {
            tpid: Tpid::new(tpid).expect("etherparse TPID"),
            pcp: v.priority_code_point().value(),
            dei: v.drop_eligible_indicator(),
            id: VlanId::new(v.vlan_identifier().value()).unwrap(),
        });
        tpid = v.ether_type().0;
    }
    let vlans = c.vlans();
    prop_assert_eq!(vlans.as_slice(), &tags[..]);
    prop_assert_eq!(c.ethertype().0, tpid);

    let (l3_start, l3_end, ip_payload, src, dst, ttl, fragmented) = match &sp.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            let start = span_of(frame, h.slice()).start;
            // etherparse's header checksum is computed from its decoded header.
            // EXCLUSION: that decoding drops the reserved ("evil") flag bit, so its checksum
            // cannot match when the bit is set; and 0x0000 and 0xffff are the same one's
            // complement sum, so either verifies when the computed value is one of them.
            if h.slice()[6] & 0x80 == 0 {
                let calc = h.to_header().calc_header_checksum();
                let field = h.header_checksum();
                prop_assert!(
                    calc == field || (calc | field == 0xffff && (calc == 0 || field == 0)),
                    "IPv4 header checksum: etherparse computes {:04x}, frame has {:04x}",
                    calc,
                    field
                );
            }
            if verified && u.checksum != 0 {
                let calc = etherparse::UdpHeader::from_slice(&frame[ip.payload.range()])
                    .expect("UDP header")
                    .0
                    .calc_checksum_ipv4(&h.to_header(), &frame[u.payload.range()])
                    .expect("fits");
                prop_assert_eq!(calc, u.checksum, "UDP checksum (IPv4)");
            }
            (
                start,
                start + usize::from(h.total_len()),
                v4.payload(),
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                h.ttl(),
                v4.is_payload_fragmented(),
            )
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            let start = span_of(frame, h.slice()).start;
            if verified {
                let calc = etherparse::UdpHeader::from_slice(&frame[ip.payload.range()])
                    .expect("UDP header")
                    .0
                    .calc_checksum_ipv6(&h.to_header(), &frame[u.payload.range()])
                    .expect("fits");
                prop_assert_eq!(calc, u.checksum, "UDP checksum (IPv6)");
            }
            (
                start,
                start + 40 + usize::from(h.payload_length()),
                v6.payload(),
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                h.hop_limit(),
                v6.is_payload_fragmented(),
            )
        }
        other => {
            return Err(TestCaseError::fail(format!(
                "classify accepts UDP, etherparse's network layer is {other:?}"
            )))
        }
    };
    prop_assert_eq!(c.payload(), Span::new(l3_start, l3_end));
    prop_assert_eq!(ip.src, src);
    prop_assert_eq!(ip.dst, dst);
    prop_assert_eq!(ip.ttl, ttl);
    prop_assert!(!fragmented);
    prop_assert_eq!(ip_payload.ip_number.0, UDP);
    prop_assert_eq!(ip.payload, span_of(frame, ip_payload.payload));

    let Some(TransportSlice::Udp(eu)) = &sp.transport else {
        return Err(TestCaseError::fail(format!(
            "classify accepts UDP, etherparse's transport is {:?}",
            sp.transport
        )));
    };
    prop_assert_eq!(u.remote, SocketAddr::new(src, eu.source_port()));
    prop_assert_eq!(u.local, SocketAddr::new(dst, eu.destination_port()));
    prop_assert_eq!(u.checksum, eu.checksum());
    prop_assert_eq!(u.payload, span_of(frame, eu.payload()));
    Ok(())
}

/// Property (c) on one frame: the outer tag stripped by the kernel or left in the frame makes
/// no difference.
fn check_stripped_equivalence(frame: &[u8], opts: Options) -> TestResult {
    // Only a complete tag can have been stripped.
    if frame.len() < 18 || !TPIDS.contains(&be16(frame, 12)) {
        return Ok(());
    }
    let tci = be16(frame, 14);
    let tag = VlanTag {
        tpid: Tpid::new(be16(frame, 12)).unwrap(),
        pcp: (tci >> 13) as u8,
        dei: tci & 0x1000 != 0,
        id: VlanId::new(tci & 0x0fff).unwrap(),
    };
    let mut without = frame[..12].to_vec();
    without.extend_from_slice(&frame[16..]);
    let inline = classify_with(frame, None, opts);
    let offloaded = classify_with(&without, Some(tag), opts);
    prop_assert_eq!(
        offloaded.map(|c| reading(&c)),
        inline.map(|c| shifted(c, 4))
    );
    if let (Ok(a), Ok(b)) = (&offloaded, &inline) {
        check_invariants(&without, Some(tag), a)?;
        prop_assert_eq!(a.key, b.key);
        prop_assert_eq!(a.vlans(), b.vlans());
        if let (Some(ua), Some(ub)) = (a.udp(), b.udp()) {
            prop_assert_eq!(&without[ua.payload.range()], &frame[ub.payload.range()]);
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Xor { at: usize, bits: u8 },
    Set { at: usize, value: u8 },
    Truncate(usize),
    Extend(Vec<u8>),
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
}

fn position() -> impl Strategy<Value = usize> {
    // Mostly in the headers, where a change alters the parse rather than only a checksum.
    prop_oneof![3 => 0usize..80, 1 => any::<usize>()]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (position(), 1u8..=255).prop_map(|(at, bits)| Mutation::Xor { at, bits }),
        3 => (position(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
        1 => (0usize..80, prop_oneof![
                 vec(any::<u8>(), 1..9),
                 // A whole VLAN tag, to make three-tag and odd stacks.
                 (prop::sample::select(TPIDS.to_vec()), any::<u16>())
                     .prop_map(|(t, tci)| [t.to_be_bytes(), tci.to_be_bytes()].concat()),
             ])
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (0usize..80, 1usize..9).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn apply(frame: &mut Vec<u8>, m: &Mutation) {
    let len = frame.len();
    match m {
        Mutation::Xor { at, bits } if len > 0 => frame[at % len] ^= bits,
        Mutation::Set { at, value } if len > 0 => frame[at % len] = *value,
        Mutation::Truncate(n) => frame.truncate(n % (len + 1)),
        Mutation::Extend(bytes) => frame.extend_from_slice(bytes),
        Mutation::Insert { at, bytes } => {
            let at = (*at).min(len);
            frame.splice(at..at, bytes.iter().copied());
        }
        Mutation::Remove { at, len: n } => {
            let at = (*at).min(len);
            frame.drain(at..(at + n).min(len));
        }
        _ => {}
    }
}

/// Recomputes the IPv4 header and UDP checksums of a (mutated) frame where its headers can be
/// found, so that the mutation reaches the parsing rules behind the checksum checks. The walk
/// below only decides which bytes to fix up; it is not an oracle. A zero UDP checksum is left
/// alone (over IPv4 it means "none").
fn fix_checksums(frame: &mut [u8]) -> Option<()> {
    let mut et = be16(frame.get(..14)?, 12);
    let mut at = 14;
    while TPIDS.contains(&et) && frame.len() >= at + 4 {
        et = be16(frame, at + 2);
        at += 4;
    }
    let (udp_at, src, dst) = match et {
        0x0800 => {
            let ihl = usize::from(*frame.get(at)? & 0x0f) * 4;
            if ihl < 20 || frame.len() < at + ihl {
                return None;
            }
            frame[at + 10..at + 12].fill(0);
            let c = inet_checksum(0, &frame[at..at + ihl]);
            frame[at + 10..at + 12].copy_from_slice(&c.to_be_bytes());
            if frame[at + 9] != UDP {
                return None;
            }
            (at + ihl, at + 12..at + 16, at + 16..at + 20)
        }
        0x86dd if frame.len() >= at + 40 => {
            let mut next = frame[at + 6];
            let mut p = at + 40;
            for _ in 0..12 {
                let len = match next {
                    0 | 43 | 60 => (usize::from(*frame.get(p + 1)?) + 1) * 8,
                    44 => 8,
                    51 => (usize::from(*frame.get(p + 1)?) + 2) * 4,
                    _ => break,
                };
                next = *frame.get(p)?;
                p += len;
            }
            if next != UDP {
                return None;
            }
            (p, at + 8..at + 24, at + 24..at + 40)
        }
        _ => return None,
    };
    let udp_len = usize::from(be16(frame.get(udp_at..udp_at + 8)?, 4));
    if udp_len < 8 || frame.len() < udp_at + udp_len || be16(frame, udp_at + 6) == 0 {
        return None;
    }
    frame[udp_at + 6..udp_at + 8].fill(0);
    let (src, dst) = (frame[src].to_vec(), frame[dst].to_vec());
    let c = udp_checksum(&src, &dst, &frame[udp_at..udp_at + udp_len]);
    frame[udp_at + 6..udp_at + 8].copy_from_slice(&c.to_be_bytes());
    Some(())
}

/// Frames assembled from hostile parts: any VLAN stack (up to four tags, odd TPIDs), IPv4
/// with options, fragments and lengths off by a little or a lot, IPv6 with chains of extension
/// headers, UDP with lengths off and checksums right, absent or wrong. Checksums are computed
/// over whatever was assembled, so the frame gets past them to the rules behind.
#[derive(Debug, Clone)]
struct Hostile {
    macs: [u8; 12],
    tags: Vec<(u16, u16)>,
    l3: L3,
    udp: UdpPart,
    padding: Vec<u8>,
}

#[derive(Debug, Clone)]
enum L3 {
    V4 {
        ihl: u8,
        tos: u8,
        flags_frag: u16,
        ttl: u8,
        proto: u8,
        addrs: [u8; 8],
        total_delta: i32,
        bad_header_checksum: bool,
    },
    V6 {
        tc_flow: u32,
        hop: u8,
        addrs: [u8; 32],
        exts: Vec<Ext>,
        last_next: u8,
        len_delta: i32,
    },
}

#[derive(Debug, Clone)]
struct Ext {
    kind: u8,
    len_byte: u8,
    frag: u16,
    fill: u8,
}

#[derive(Debug, Clone)]
struct UdpPart {
    src_port: u16,
    dst_port: u16,
    len_delta: i32,
    checksum: Checksum,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum Checksum {
    Right,
    Zero,
    Other(u16),
}

fn delta() -> impl Strategy<Value = i32> {
    prop_oneof![8 => Just(0), 2 => -12i32..12, 1 => any::<i16>().prop_map(i32::from)]
}

fn hostile() -> impl Strategy<Value = Hostile> {
    let tag = (
        prop_oneof![9 => prop::sample::select(TPIDS.to_vec()), 1 => any::<u16>()],
        any::<u16>(),
    );
    let v4 = (
        prop_oneof![6 => Just(5u8), 3 => 6u8..=15, 1 => 0u8..5],
        any::<u8>(),
        prop_oneof![
            Just(0x4000u16),
            Just(0),
            Just(0x2000),
            Just(0x0001),
            any::<u16>()
        ],
        any::<u8>(),
        prop_oneof![8 => Just(UDP), 1 => Just(51u8), 1 => any::<u8>()],
        any::<[u8; 8]>(),
        delta(),
        prop::bool::weighted(0.05),
    )
        .prop_map(
            |(ihl, tos, flags_frag, ttl, proto, addrs, total_delta, bad_header_checksum)| L3::V4 {
                ihl,
                tos,
                flags_frag,
                ttl,
                proto,
                addrs,
                total_delta,
                bad_header_checksum,
            },
        );
    let ext = (
        prop::sample::select(vec![0u8, 43, 44, 51, 60]),
        prop_oneof![Just(0u8), Just(1), 0u8..4],
        prop_oneof![Just(0u16), Just(1), Just(6), any::<u16>()],
        any::<u8>(),
    )
        .prop_map(|(kind, len_byte, frag, fill)| Ext {
            kind,
            len_byte,
            frag,
            fill,
        });
    let v6 = (
        any::<u32>(),
        any::<u8>(),
        any::<[u8; 32]>(),
        prop_oneof![2 => Just(vec![]), 3 => vec(ext, 1..4)],
        prop_oneof![8 => Just(UDP), 1 => Just(59u8), 1 => any::<u8>()],
        delta(),
    )
        .prop_map(|(tc_flow, hop, addrs, exts, last_next, len_delta)| L3::V6 {
            tc_flow,
            hop,
            addrs,
            exts,
            last_next,
            len_delta,
        });
    let udp = (
        any::<u16>(),
        prop_oneof![9 => 1u16..=65535, 1 => Just(0u16)],
        delta(),
        prop_oneof![
            8 => Just(Checksum::Right),
            1 => Just(Checksum::Zero),
            1 => any::<u16>().prop_map(Checksum::Other),
        ],
        vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(src_port, dst_port, len_delta, checksum, payload)| UdpPart {
                src_port,
                dst_port,
                len_delta,
                checksum,
                payload,
            },
        );
    (
        any::<[u8; 12]>(),
        prop_oneof![3 => vec(tag.clone(), 0..=3), 1 => vec(tag, 4..=4)],
        prop_oneof![v4, v6],
        udp,
        prop_oneof![3 => Just(vec![]), 1 => vec(any::<u8>(), 0..24)],
    )
        .prop_map(|(macs, tags, l3, udp, padding)| Hostile {
            macs,
            tags,
            l3,
            udp,
            padding,
        })
}

fn clamp_u16(v: i64) -> u16 {
    v.clamp(0, 65535) as u16
}

fn assemble(h: &Hostile) -> Vec<u8> {
    let mut f = h.macs.to_vec();
    for (tpid, tci) in &h.tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    let u = &h.udp;
    let mut udp = Vec::new();
    udp.extend_from_slice(&u.src_port.to_be_bytes());
    udp.extend_from_slice(&u.dst_port.to_be_bytes());
    let udp_len = clamp_u16(8 + u.payload.len() as i64 + i64::from(u.len_delta));
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&u.payload);
    let covered = usize::from(udp_len).clamp(8, udp.len());
    let set_udp_checksum = |udp: &mut Vec<u8>, src: &[u8], dst: &[u8]| {
        let c = match u.checksum {
            Checksum::Right => {
                let mut sum_over = udp[..covered].to_vec();
                sum_over[4..6].copy_from_slice(&udp_len.to_be_bytes());
                inet_checksum(pseudo_sum(src, dst, udp_len), &sum_over)
            }
            Checksum::Zero => 0,
            Checksum::Other(c) => c,
        };
        let c = if c == 0 && matches!(u.checksum, Checksum::Right) {
            0xffff
        } else {
            c
        };
        udp[6..8].copy_from_slice(&c.to_be_bytes());
    };
    match &h.l3 {
        L3::V4 {
            ihl,
            tos,
            flags_frag,
            ttl,
            proto,
            addrs,
            total_delta,
            bad_header_checksum,
        } => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            let hlen = usize::from(*ihl).max(5) * 4;
            let total = clamp_u16((hlen + udp.len()) as i64 + i64::from(*total_delta));
            let mut ip = vec![0x40 | ihl, *tos];
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&0x1234u16.to_be_bytes());
            ip.extend_from_slice(&flags_frag.to_be_bytes());
            ip.extend_from_slice(&[*ttl, *proto, 0, 0]);
            ip.extend_from_slice(addrs);
            // Options: NOPs, then End of Options.
            ip.resize(hlen - 1, 1);
            ip.push(0);
            let mut c = inet_checksum(0, &ip);
            if *bad_header_checksum {
                c ^= 0x0101;
            }
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            set_udp_checksum(&mut udp, &addrs[..4], &addrs[4..]);
            f.extend_from_slice(&ip);
        }
        L3::V6 {
            tc_flow,
            hop,
            addrs,
            exts,
            last_next,
            len_delta,
        } => {
            f.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut chain = Vec::new();
            for (i, e) in exts.iter().enumerate() {
                let next = exts.get(i + 1).map_or(*last_next, |n| n.kind);
                let size = match e.kind {
                    44 => 8,
                    51 => (usize::from(e.len_byte) + 2) * 4,
                    _ => (usize::from(e.len_byte) + 1) * 8,
                };
                let start = chain.len();
                chain.resize(start + size, e.fill);
                chain[start] = next;
                if e.kind == 44 {
                    chain[start + 2..start + 4].copy_from_slice(&e.frag.to_be_bytes());
                } else {
                    chain[start + 1] = e.len_byte;
                }
            }
            let first = exts.first().map_or(*last_next, |e| e.kind);
            let plen = clamp_u16((chain.len() + udp.len()) as i64 + i64::from(*len_delta));
            let v = (6u32 << 28) | (tc_flow & 0x0fff_ffff);
            f.extend_from_slice(&v.to_be_bytes());
            f.extend_from_slice(&plen.to_be_bytes());
            f.extend_from_slice(&[first, *hop]);
            f.extend_from_slice(addrs);
            f.extend_from_slice(&chain);
            set_udp_checksum(&mut udp, &addrs[..16], &addrs[16..]);
        }
    }
    f.extend_from_slice(&udp);
    f.extend_from_slice(&h.padding);
    f
}

/// [`check_frame`], with the frame in the failure message so that it can be kept as a
/// regression file.
fn check_hostile(frame: &[u8]) -> TestResult {
    check_frame(frame).map_err(|e| TestCaseError::fail(format!("{e}\nframe: {}", hex(frame))))
}

fn ethertype_steer() -> impl Strategy<Value = Option<(u16, u8)>> {
    prop::option::of((
        prop::sample::select(vec![
            0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x9100, 0x0806, 0x88e5,
        ]),
        prop_oneof![Just(0x45u8), Just(0x46), Just(0x60), any::<u8>()],
    ))
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn mutated_frames_agree_with_etherparse(
        spec in spec(),
        mutations in vec(mutation(), 1..4),
        fix in any::<bool>(),
    ) {
        let mut frame = spec.build();
        for m in &mutations {
            apply(&mut frame, m);
        }
        if fix {
            let _ = fix_checksums(&mut frame);
        }
        check_hostile(&frame)?;
    }

    #[test]
    fn hostile_frames_agree_with_etherparse(h in hostile()) {
        check_hostile(&assemble(&h))?;
    }

    #[test]
    fn random_bytes_agree_with_etherparse(
        mut bytes in vec(any::<u8>(), 0..160),
        steer in ethertype_steer(),
    ) {
        if let Some((ethertype, first)) = steer {
            if bytes.len() >= 15 {
                bytes[12..14].copy_from_slice(&ethertype.to_be_bytes());
                bytes[14] = first;
                if TPIDS.contains(&ethertype) && bytes.len() >= 19 {
                    bytes[16..18].copy_from_slice(&[0x08, 0x00]);
                    bytes[18] = first;
                }
            }
        }
        check_hostile(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Property (c): VLAN offload.

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn stripped_outer_tag_classifies_like_inline_tag(
        spec in tagged_spec(),
        mutations in vec(mutation(), 0..3),
        fix in any::<bool>(),
    ) {
        let mut frame = spec.build();
        if mutations.is_empty() {
            // The unmutated frame must take the full path.
            let c = classify(&frame, None).expect("built frame");
            prop_assert!(c.udp().is_some());
        }
        for m in &mutations {
            apply(&mut frame, m);
        }
        if fix {
            let _ = fix_checksums(&mut frame);
        }
        for verify in [true, false] {
            let opts = Options::new().verify_udp_checksum(verify);
            check_stripped_equivalence(&frame, opts)
                .map_err(|e| TestCaseError::fail(format!("{e}\nframe: {}", hex(&frame))))?;
        }
    }
}

/// A fourth tag, whether in the frame or on top of one stripped by the kernel, is never
/// silently dropped; three are read like etherparse reads them.
#[test]
fn fourth_tag_is_rejected_inline_or_stripped() {
    let spec = Spec {
        src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
        dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
        vlans: vec![
            VlanTag::new(Tpid::QINQ, VlanId::new(10).unwrap()),
            VlanTag::dot1q(20).unwrap(),
            VlanTag::dot1q(30).unwrap(),
        ],
        src: "192.0.2.1:1000".parse().unwrap(),
        dst: "192.0.2.2:2000".parse().unwrap(),
        ttl: 64,
        dscp: 0,
        payload: b"x".to_vec(),
    };
    let frame = spec.build();
    let c = classify(&frame, None).unwrap();
    assert_eq!(c.key.vlans.as_slice(), &[10, 20, 30]);
    let sp = SlicedPacket::from_ethernet(&frame).unwrap();
    assert_eq!(sp.link_exts.len(), 3);
    assert!(matches!(sp.transport, Some(TransportSlice::Udp(_))));

    let outer = VlanTag::new(Tpid::QINQ_LEGACY, VlanId::new(5).unwrap());
    assert_eq!(classify(&frame, Some(outer)), Err(Invalid::TooManyVlanTags));
    let mut four = frame[..12].to_vec();
    four.extend_from_slice(&[0x91, 0x00, 0x00, 0x05]);
    four.extend_from_slice(&frame[12..]);
    assert_eq!(classify(&four, None), Err(Invalid::TooManyVlanTags));
    // etherparse stops after three tags too: it finds no IP layer behind the fourth TPID.
    let sp = SlicedPacket::from_ethernet(&four).unwrap();
    assert_eq!(sp.link_exts.len(), 3);
    assert!(sp.net.is_none() && sp.transport.is_none());
}

// ---------------------------------------------------------------------------------------------
// Regressions: hostile inputs that once failed a property.

fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

#[test]
fn regressions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/regressions");
    assert!(
        dir.join("README.txt").is_file(),
        "{} must explain the directory",
        dir.display()
    );
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "hex"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("readable regression file");
        let frame = parse_hex(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(e) = check_frame(&frame) {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
