//! Parse+classify and build throughput of `etherconn-core`, beside etherparse on the same frames.
//!
//! Run with `cargo bench --bench wire`; the figures in docs/performance.md come from it.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherconn::build::{build_udp_frame, UdpFrame};
use etherconn::classify::{classify, classify_with, Options};
use etherconn::wire::{Tpid, VlanId, VlanTag};

fn frame(vlans: &[VlanTag], payload_len: usize) -> Vec<u8> {
    let payload = vec![0x5a; payload_len];
    let f = UdpFrame {
        src_mac: "02:00:00:00:00:01".parse().unwrap(),
        dst_mac: "02:00:00:00:00:02".parse().unwrap(),
        vlans,
        src: "192.0.2.1:4000".parse::<SocketAddr>().unwrap(),
        dst: "192.0.2.2:5000".parse::<SocketAddr>().unwrap(),
        ttl: 64,
        dscp: 0,
        payload: &payload,
    };
    let mut buf = vec![0u8; f.len().max(60)];
    let len = build_udp_frame(&mut buf, &f).unwrap();
    buf.truncate(len);
    buf
}

fn stacks() -> [(&'static str, Vec<VlanTag>); 4] {
    [
        ("untagged", vec![]),
        ("dot1q", vec![VlanTag::dot1q(100).unwrap()]),
        (
            "qinq",
            vec![
                VlanTag::new(Tpid::QINQ, VlanId::new(200).unwrap()),
                VlanTag::dot1q(100).unwrap(),
            ],
        ),
        (
            "triple",
            vec![
                VlanTag::new(Tpid::QINQ, VlanId::new(300).unwrap()),
                VlanTag::dot1q(200).unwrap(),
                VlanTag::dot1q(100).unwrap(),
            ],
        ),
    ]
}

fn bench_classify(c: &mut Criterion) {
    for payload in [64usize, 1000] {
        let mut g = c.benchmark_group(format!("classify/{payload}B"));
        g.throughput(Throughput::Elements(1));
        for (name, vlans) in stacks() {
            let f = frame(&vlans, payload);
            g.bench_function(format!("etherconn/{name}"), |b| {
                b.iter(|| classify(black_box(&f), None).unwrap().key)
            });
            g.bench_function(format!("etherconn-no-udp-csum/{name}"), |b| {
                let opts = Options::new().verify_udp_checksum(false);
                b.iter(|| classify_with(black_box(&f), None, opts).unwrap().key)
            });
            // The row to compare with etherparse, which verifies no checksum: the same parse
            // and checks with both checksums off.
            g.bench_function(format!("etherconn-no-csum/{name}"), |b| {
                let opts = Options::new()
                    .verify_udp_checksum(false)
                    .verify_ipv4_checksum(false);
                b.iter(|| classify_with(black_box(&f), None, opts).unwrap().key)
            });
            g.bench_function(format!("etherparse/{name}"), |b| {
                b.iter(|| {
                    let p = etherparse::SlicedPacket::from_ethernet(black_box(&f)).unwrap();
                    black_box(p.transport.is_some())
                })
            });
        }
        g.finish();
    }
}

fn bench_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("build");
    g.throughput(Throughput::Elements(1));
    for payload in [64usize, 1000] {
        let data = vec![0x5a; payload];
        let vlans = [VlanTag::dot1q(100).unwrap()];
        let f = UdpFrame {
            src_mac: "02:00:00:00:00:01".parse().unwrap(),
            dst_mac: "02:00:00:00:00:02".parse().unwrap(),
            vlans: &vlans,
            src: "192.0.2.1:4000".parse().unwrap(),
            dst: "192.0.2.2:5000".parse().unwrap(),
            ttl: 64,
            dscp: 0,
            payload: &data,
        };
        let mut buf = vec![0u8; 2048];
        g.bench_function(format!("udp-ipv4-dot1q/{payload}B"), |b| {
            b.iter(|| build_udp_frame(black_box(&mut buf), black_box(&f)).unwrap())
        });
    }
    g.finish();
}

mod group {
    #![allow(missing_docs)]
    use super::*;
    criterion_group!(benches, bench_classify, bench_build);
}
criterion_main!(group::benches);
