//! Fuzzes the frame builder against two readers. From the input it takes a `UdpFrame` and a
//! buffer size, and checks that:
//!
//! - `build_udp_frame` accepts exactly the frames that are valid and fit the buffer, and
//!   returns `max(len, 60)` for them;
//! - padding is zeros;
//! - `classify` reads back every field, the dispatch key and every range;
//! - etherparse (an independent parser, `SlicedPacket` and `PacketHeaders`) reads the same
//!   MACs, tags, addresses, TTL, DSCP, ports and payload, and its own checksum code computes
//!   the IPv4 header and UDP checksums the builder wrote.
//!
//! The comparison with etherparse follows `check_built_frame` in
//! `crates/etherconn-core/tests/oracle.rs`.
//!
//! Input layout (a reader yields zeros past the end, so a short input is a plain frame):
//! byte 0 is the shape (bits 0-1: 0 to 3 VLAN tags, one more with bit 3, so up to four, which
//! must be refused; bit 2: IPv6), byte 1 the faults to inject
//! (bit 0: the destination of the other family; bit 1: a buffer of any size up to what fits;
//! bit 2: DSCP above 63 allowed; high nibble 0xf: a payload of the largest size, 0xe: one byte
//! larger, both rare because they are slow).
//! Then per tag a selector (bits 0-1: TPID 0x8100, 0x88a8 or 0x9100; bit 7: PCP = selector >> 2,
//! above 7) and the big-endian TCI; destination and source MAC; source and destination
//! address (4 or 16 bytes); source and destination port (big-endian); TTL; DSCP; a slack byte
//! (extra buffer bytes, or how much of the buffer to keep); the rest is the payload. See
//! docs/fuzzing.md.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherconn_core::build::{build_udp_frame, max_udp_payload, BuildError, UdpFrame};
use etherconn_core::classify::classify;
use etherconn_core::wire::vlan::MAX_TAGS;
use etherconn_core::wire::{EtherType, MacAddr, Span, Tpid, VlanTag};
use etherconn_core::{L2EndpointKey, VlanIds};
use etherparse::{
    LinkExtSlice, LinkSlice, NetHeaders, NetSlice, PacketHeaders, PayloadSlice, SlicedPacket,
    TransportHeader, TransportSlice,
};
use libfuzzer_sys::fuzz_target;

const TPIDS: [Tpid; 3] = [Tpid::DOT1Q, Tpid::QINQ, Tpid::QINQ_LEGACY];
/// A payload this long, of zeros, stands in for "the largest payload, or one byte more".
static BIG: [u8; 65536] = [0; 65536];

fuzz_target!(|data: &[u8]| {
    check(&Input::read(data));
});

/// One builder call: the frame's fields and the size of the buffer it is written into.
#[derive(Debug)]
struct Input<'a> {
    src_mac: MacAddr,
    dst_mac: MacAddr,
    vlans: Vec<VlanTag>,
    src: SocketAddr,
    dst: SocketAddr,
    ttl: u8,
    dscp: u8,
    payload: &'a [u8],
    buf_len: usize,
}

impl<'a> Input<'a> {
    fn read(data: &'a [u8]) -> Input<'a> {
        let mut r = Reader(data);
        let shape = r.u8();
        let faults = r.u8();
        let ipv6 = shape & 4 != 0;
        let n_tags = (shape & 3) + u8::from(shape & 8 != 0);
        let vlans = (0..n_tags)
            .map(|_| {
                let sel = r.u8();
                let mut tag = VlanTag::from_tci(TPIDS[usize::from(sel & 3) % 3], r.u16());
                if sel & 0x80 != 0 {
                    // Only `VlanTag`'s public field can hold a PCP above 7: it must be refused.
                    tag.pcp = sel >> 2;
                }
                tag
            })
            .collect();
        let dst_mac = MacAddr(r.array());
        let src_mac = MacAddr(r.array());
        let src_ip = r.ip(ipv6);
        let dst_ip = r.ip(ipv6 ^ (faults & 1 != 0));
        let src = SocketAddr::new(src_ip, r.u16());
        let dst = SocketAddr::new(dst_ip, r.u16());
        let ttl = r.u8();
        let dscp = if faults & 4 != 0 { r.u8() } else { r.u8() & 63 };
        let slack = r.u8();
        let payload = match faults >> 4 {
            0xf => &BIG[..max_udp_payload(ipv6)],
            0xe => &BIG[..max_udp_payload(ipv6) + 1],
            _ => r.0,
        };
        let needed = 14 + 4 * usize::from(n_tags) + if ipv6 { 40 } else { 20 } + 8 + payload.len();
        let fits = needed.max(60) + usize::from(slack);
        let buf_len = if faults & 2 != 0 {
            fits * usize::from(slack) / 255
        } else {
            fits
        };
        Input {
            src_mac,
            dst_mac,
            vlans,
            src,
            dst,
            ttl,
            dscp,
            payload,
            buf_len,
        }
    }

    fn frame(&self) -> UdpFrame<'_> {
        UdpFrame {
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            vlans: &self.vlans,
            src: self.src,
            dst: self.dst,
            ttl: self.ttl,
            dscp: self.dscp,
            payload: self.payload,
        }
    }

    /// Whether the builder must accept the frame, stated independently of its code.
    fn valid(&self) -> bool {
        let ipv6 = self.src.is_ipv6();
        let l3 = if ipv6 { 40 } else { 20 };
        let len = 14 + 4 * self.vlans.len() + l3 + 8 + self.payload.len();
        self.vlans.len() <= MAX_TAGS
            && self.vlans.iter().all(|t| t.pcp <= 7)
            && self.src.is_ipv6() == self.dst.is_ipv6()
            // The IPv4 total length or the UDP length must fit 16 bits.
            && self.payload.len() + 8 + if ipv6 { 0 } else { 20 } <= 65535
            && self.dscp <= 63
            // Receivers drop datagrams to port 0.
            && self.dst.port() != 0
            && self.buf_len >= len.max(60)
    }

    fn ip_offset(&self) -> usize {
        14 + 4 * self.vlans.len()
    }
}

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

    fn ip(&mut self, ipv6: bool) -> IpAddr {
        if ipv6 {
            Ipv6Addr::from(self.array::<16>()).into()
        } else {
            Ipv4Addr::from(self.array::<4>()).into()
        }
    }
}

fn check(input: &Input<'_>) {
    let spec = input.frame();
    // Filled with a pattern so that the padding check means something.
    let mut buf = vec![0xa5u8; input.buf_len];
    let result = build_udp_frame(&mut buf, &spec);
    assert_eq!(result.is_ok(), input.valid(), "{input:?}: {result:?}");
    let len = match result {
        Ok(len) => len,
        Err(BuildError::BufferTooSmall { needed, available }) => {
            assert_eq!(available, input.buf_len);
            assert!(needed > available);
            return;
        }
        Err(_) => return,
    };
    assert_eq!(len, spec.len().max(60));
    let frame = &buf[..len];
    assert!(
        frame[spec.len().min(len)..].iter().all(|&b| b == 0),
        "padding"
    );
    check_etherparse(input, frame);
    check_classify(input, frame);
}

fn span_of(frame: &[u8], sub: &[u8]) -> Span {
    let start = sub.as_ptr() as usize - frame.as_ptr() as usize;
    assert!(start + sub.len() <= frame.len(), "slice outside the frame");
    Span::new(start, start + sub.len())
}

fn check_etherparse(input: &Input<'_>, frame: &[u8]) {
    let spec = input.frame();
    let sp = SlicedPacket::from_ethernet(frame).expect("etherparse reads a built frame");
    let Some(LinkSlice::Ethernet2(eth)) = &sp.link else {
        panic!("no Ethernet II header: {:?}", sp.link);
    };
    assert_eq!(eth.destination(), input.dst_mac.0);
    assert_eq!(eth.source(), input.src_mac.0);
    assert_eq!(sp.link_exts.len(), input.vlans.len());
    let mut tpid = eth.ether_type().0;
    for (ext, want) in sp.link_exts.iter().zip(&input.vlans) {
        let LinkExtSlice::Vlan(v) = ext else {
            panic!("not a VLAN tag: {ext:?}");
        };
        assert_eq!(tpid, want.tpid.get(), "TPID");
        assert_eq!(v.vlan_identifier().value(), want.id.get());
        assert_eq!(v.priority_code_point().value(), want.pcp);
        assert_eq!(v.drop_eligible_indicator(), want.dei);
        tpid = v.ether_type().0;
    }
    let udp_len = 8 + input.payload.len();
    match (&sp.net, input.src.ip(), input.dst.ip()) {
        (Some(NetSlice::Ipv4(v4)), IpAddr::V4(src), IpAddr::V4(dst)) => {
            assert_eq!(tpid, 0x0800);
            let h = v4.header();
            assert_eq!(span_of(frame, h.slice()).start, input.ip_offset());
            assert_eq!(h.ihl(), 5);
            assert_eq!(h.source_addr(), src);
            assert_eq!(h.destination_addr(), dst);
            assert_eq!(h.ttl(), input.ttl);
            assert_eq!(h.dcp().value(), input.dscp);
            assert_eq!(h.ecn().value(), 0);
            assert_eq!(h.protocol().0, 17);
            assert_eq!(usize::from(h.total_len()), 20 + udp_len);
            assert!(!h.is_fragmenting_payload());
            assert_eq!(h.to_header().calc_header_checksum(), h.header_checksum());
        }
        (Some(NetSlice::Ipv6(v6)), IpAddr::V6(src), IpAddr::V6(dst)) => {
            assert_eq!(tpid, 0x86dd);
            let h = v6.header();
            assert_eq!(span_of(frame, h.slice()).start, input.ip_offset());
            assert_eq!(h.source_addr(), src);
            assert_eq!(h.destination_addr(), dst);
            assert_eq!(h.hop_limit(), input.ttl);
            assert_eq!(h.traffic_class(), input.dscp << 2);
            assert_eq!(h.next_header().0, 17);
            assert_eq!(usize::from(h.payload_length()), udp_len);
            assert!(v6.extensions().is_empty());
        }
        (net, _, _) => panic!("wrong IP layer: {net:?}"),
    }
    let Some(TransportSlice::Udp(u)) = &sp.transport else {
        panic!("no UDP layer: {:?}", sp.transport);
    };
    assert_eq!(u.source_port(), input.src.port());
    assert_eq!(u.destination_port(), input.dst.port());
    assert_eq!(usize::from(u.length()), udp_len);
    assert_eq!(u.payload(), input.payload);
    assert_eq!(span_of(frame, u.payload()).start, spec.payload_offset());
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
    assert_eq!(u.checksum(), want, "UDP checksum");

    // The owned-header reading agrees as well.
    let ph = PacketHeaders::from_ethernet_slice(frame).expect("PacketHeaders reads a built frame");
    assert_eq!(ph.payload, PayloadSlice::Udp(input.payload));
    match (&ph.net, &ph.transport) {
        (Some(NetHeaders::Ipv4(h, _)), Some(TransportHeader::Udp(uh))) => {
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            assert_eq!(
                uh.checksum,
                uh.calc_checksum_ipv4(h, input.payload).unwrap()
            );
        }
        (Some(NetHeaders::Ipv6(h, _)), Some(TransportHeader::Udp(uh))) => {
            assert_eq!(
                uh.checksum,
                uh.calc_checksum_ipv6(h, input.payload).unwrap()
            );
        }
        other => panic!("PacketHeaders: {other:?}"),
    }
}

fn check_classify(input: &Input<'_>, frame: &[u8]) {
    let spec = input.frame();
    let c = classify(frame, None).expect("classify reads a built frame");
    let ethertype = if input.src.is_ipv4() {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    };
    assert_eq!(c.dst_mac(), input.dst_mac);
    assert_eq!(c.src_mac, input.src_mac);
    assert_eq!(c.vlans().as_slice(), &input.vlans[..]);
    assert_eq!(c.ethertype(), ethertype);
    let vlans = VlanIds::from_tags(&input.vlans).expect("at most three tags");
    assert_eq!(c.key, L2EndpointKey::new(input.dst_mac, vlans, ethertype));
    assert_eq!(c.payload(), Span::new(input.ip_offset(), spec.len()));
    let ip = c.ip().expect("IP layer");
    assert_eq!(ip.src, input.src.ip());
    assert_eq!(ip.dst, input.dst.ip());
    assert_eq!(ip.protocol, 17);
    assert_eq!(ip.ttl, input.ttl);
    assert!(!ip.fragment);
    assert_eq!(ip.payload, Span::new(spec.payload_offset() - 8, spec.len()));
    let u = c.udp().expect("UDP layer");
    assert_eq!(u.remote, input.src);
    assert_eq!(u.local, input.dst);
    assert_eq!(u.payload, Span::new(spec.payload_offset(), spec.len()));
    assert_eq!(&frame[u.payload.range()], input.payload);
    let at = spec.payload_offset() - 2;
    assert_eq!(u.checksum, u16::from_be_bytes([frame[at], frame[at + 1]]));
}
