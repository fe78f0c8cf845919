//! Fuzzes the frame classifier: it must never panic, every range it returns must lie inside the
//! frame (and nest: UDP payload in IP payload in Ethernet payload), a kernel-stripped outer tag
//! must classify exactly like the same tag left in the frame, and every frame the builder writes
//! from fuzzer-chosen fields must classify back to those fields.
//!
//! Input layout: byte 0 holds flags (bit 0: pass a stripped tag; bits 1-2: its TPID; bit 3:
//! skip UDP checksum verification), bytes 1-2 the stripped tag's TCI, the rest is the frame.
//! The same bytes also seed the builder round trip. See docs/fuzzing.md.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::classify::{classify, classify_with, Classified, IpInfo, Options, UdpInfo};
use etherconn_core::wire::vlan::{VlanStack, MAX_TAGS};
use etherconn_core::wire::{EtherType, MacAddr, Span, Tpid, VlanTag};
use etherconn_core::{L2EndpointKey, VlanIds};
use libfuzzer_sys::fuzz_target;

const TPIDS: [Tpid; 3] = [Tpid::DOT1Q, Tpid::QINQ, Tpid::QINQ_LEGACY];

fuzz_target!(|data: &[u8]| {
    let mut input = Reader(data);
    let flags = input.u8();
    let tci = input.u16();
    let frame = input.0;
    let stripped =
        (flags & 1 != 0).then(|| VlanTag::from_tci(TPIDS[usize::from((flags >> 1) & 3) % 3], tci));
    let opts = Options::new().verify_udp_checksum(flags & 8 == 0);

    let result = classify_with(frame, stripped, opts);
    if let Ok(c) = &result {
        check_invariants(frame, stripped, c);
    }
    if stripped.is_none() {
        check_stripped_tag_equivalence(frame, opts, &result);
    }
    build_round_trip(data);
});

/// A byte source that yields zeros once the input runs out.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        core::array::from_fn(|_| self.u8())
    }
}

fn within(outer: Span, inner: Span) -> bool {
    outer.start <= inner.start && inner.start <= inner.end && inner.end <= outer.end
}

fn check_invariants(frame: &[u8], stripped: Option<VlanTag>, c: &Classified) {
    let whole = Span::new(0, frame.len());
    assert!(frame.len() >= 14);
    assert_eq!(c.dst_mac().0, frame[0..6]);
    assert_eq!(c.src_mac.0, frame[6..12]);
    assert!(within(whole, c.payload()), "{c:?}");
    assert!(c.payload().start >= 14);
    assert!(c.vlans().len() <= MAX_TAGS);
    assert_eq!(c.key.vlans.len(), c.vlans().len());
    assert_eq!(c.key.vlans, VlanIds::from_stack(&c.vlans()));
    assert_eq!(c.key.mac, c.dst_mac());
    assert_eq!(c.key.ethertype, c.ethertype());
    assert!(!c.ethertype().is_vlan_tpid());
    if let Some(tag) = stripped {
        assert_eq!(c.vlans().as_slice().first(), Some(&tag));
    }
    let in_frame_tags = c.vlans().len() - usize::from(stripped.is_some());
    assert_eq!(c.payload().start, 14 + 4 * in_frame_tags);
    if let Some(ip) = &c.ip() {
        assert!(c.ethertype() == EtherType::IPV4 || c.ethertype() == EtherType::IPV6);
        assert!(within(c.payload(), ip.payload), "{c:?}");
    }
    if let Some(u) = &c.udp() {
        let ip = c.ip().expect("UDP without IP");
        assert_eq!(ip.protocol, 17);
        assert!(!ip.fragment);
        assert!(within(ip.payload, u.payload), "{c:?}");
        assert_eq!(u.payload.start, ip.payload.start + 8);
        assert_eq!(u.remote.ip(), ip.src);
        assert_eq!(u.local.ip(), ip.dst);
        assert_ne!(u.local.port(), 0);
    }
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

fn check_stripped_tag_equivalence(
    frame: &[u8],
    opts: Options,
    with_tag: &Result<Classified, etherconn_core::classify::Invalid>,
) {
    if frame.len() < 18 {
        return;
    }
    let Some(tpid) = Tpid::new(u16::from_be_bytes([frame[12], frame[13]])) else {
        return;
    };
    let tag = VlanTag::from_tci(tpid, u16::from_be_bytes([frame[14], frame[15]]));
    let mut without = Vec::with_capacity(frame.len() - 4);
    without.extend_from_slice(&frame[..12]);
    without.extend_from_slice(&frame[16..]);
    let offloaded = classify_with(&without, Some(tag), opts);
    assert_eq!(
        offloaded.map(|c| reading(&c)),
        with_tag.map(|c| shifted(c, 4))
    );
}

fn build_round_trip(data: &[u8]) {
    let mut r = Reader(data);
    let shape = r.u8();
    let ipv6 = shape & 4 != 0;
    let mut vlans = [VlanTag::default(); MAX_TAGS];
    let ntags = usize::from(shape & 3);
    for tag in &mut vlans[..ntags] {
        let tpid = TPIDS[usize::from(r.u8() % 3)];
        *tag = VlanTag::from_tci(tpid, r.u16());
    }
    let src_mac = MacAddr(r.array());
    let dst_mac = MacAddr(r.array());
    let (src_ip, dst_ip): (IpAddr, IpAddr) = if ipv6 {
        (
            Ipv6Addr::from(r.array::<16>()).into(),
            Ipv6Addr::from(r.array::<16>()).into(),
        )
    } else {
        (
            Ipv4Addr::from(r.array::<4>()).into(),
            Ipv4Addr::from(r.array::<4>()).into(),
        )
    };
    let src = SocketAddr::new(src_ip, r.u16());
    let dst = SocketAddr::new(dst_ip, r.u16().max(1));
    let ttl = r.u8();
    let dscp = r.u8() & 63;
    let payload = &r.0[..r.0.len().min(1500)];
    let spec = UdpFrame {
        src_mac,
        dst_mac,
        vlans: &vlans[..ntags],
        src,
        dst,
        ttl,
        dscp,
        payload,
    };
    let mut buf = [0u8; 1600];
    let len = build_udp_frame(&mut buf, &spec).expect("a valid frame must build");
    let frame = &buf[..len];
    assert_eq!(len, spec.len().max(60));
    let c = classify(frame, None).expect("a built frame must classify");
    check_invariants(frame, None, &c);
    assert_eq!(c.dst_mac(), dst_mac);
    assert_eq!(c.src_mac, src_mac);
    assert_eq!(c.vlans().as_slice(), spec.vlans);
    let ip = c.ip().expect("IP layer");
    assert_eq!(ip.ttl, ttl);
    assert!(!ip.fragment);
    let u = c.udp().expect("UDP layer");
    assert_eq!(u.remote, src);
    assert_eq!(u.local, dst);
    assert_eq!(u.payload.start, spec.payload_offset());
    assert_eq!(&frame[u.payload.range()], payload);
}
