//! Dispatch throughput of the shared relay table: classify + key lookup + queue push + pop, per
//! frame, with 1 or 100,000 registered endpoints and with 1 or 2 threads delivering at once
//! (the relay's receive path takes no global lock, so two threads should not slow each other),
//! and with one thread delivering in batches of 32 (`Dispatcher::delivery`); and what a
//! non-blocking poll of an empty queue costs.
//!
//! Run with `cargo bench --bench dispatch`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use etherconn::build::{build_udp_frame, UdpFrame};
use etherconn::relay::{ConnEntry, Dispatcher, DispatcherConfig};
use etherconn::wire::{EtherType, MacAddr, VlanTag};
use etherconn::{L2EndpointKey, VlanIds};

struct Table {
    dispatcher: Arc<Dispatcher>,
    conns: Vec<Arc<ConnEntry>>,
    frames: Vec<Vec<u8>>,
}

fn table(endpoints: usize) -> Table {
    let dispatcher = Dispatcher::new(DispatcherConfig::default());
    let base = MacAddr([0x02, 0xec, 0, 0, 0, 0]);
    let vlan = [VlanTag::dot1q(100).unwrap()];
    let mut conns = Vec::with_capacity(endpoints);
    for i in 0..endpoints {
        let mac = base.offset(i as u64);
        let entry = ConnEntry::new(16, false);
        let key = L2EndpointKey::new(mac, VlanIds::from_tags(&vlan).unwrap(), EtherType::IPV4);
        dispatcher.register(&[key], &entry, false).unwrap();
        conns.push(entry);
    }
    // 256 frames to distinct endpoints spread over the table.
    let payload = [0x5au8; 64];
    let frames = (0..256)
        .map(|j| {
            let i = (j * 7919) % endpoints;
            let f = UdpFrame {
                src_mac: "02:00:00:00:ff:01".parse().unwrap(),
                dst_mac: base.offset(i as u64),
                vlans: &vlan,
                src: "192.0.2.1:4000".parse().unwrap(),
                dst: "192.0.2.2:5000".parse().unwrap(),
                ttl: 64,
                dscp: 0,
                payload: &payload,
            };
            let mut buf = vec![0u8; 128];
            let len = build_udp_frame(&mut buf, &f).unwrap();
            buf.truncate(len);
            buf
        })
        .collect();
    Table {
        dispatcher,
        conns,
        frames,
    }
}

fn run(t: &Table, iters: u64, threads: usize) -> Duration {
    let endpoints = t.conns.len();
    let start = Instant::now();
    std::thread::scope(|s| {
        for th in 0..threads {
            s.spawn(move || {
                let per = iters / threads as u64;
                for n in 0..per {
                    let j = ((n as usize) * threads + th) % t.frames.len();
                    t.dispatcher.deliver(black_box(&t.frames[j]), None, false);
                    let i = (j * 7919) % endpoints;
                    black_box(t.conns[i].queue.pop(Some(Duration::ZERO)).ok());
                }
            });
        }
    });
    start.elapsed()
}

/// One thread, frames delivered 32 at a time through `Dispatcher::delivery` (as the AF_PACKET
/// relay delivers a ring drain), then popped.
fn run_batched(t: &Table, iters: u64) -> Duration {
    let endpoints = t.conns.len();
    let start = Instant::now();
    let mut n = 0u64;
    while n < iters {
        let first = n;
        let mut batch = t.dispatcher.delivery();
        while n < iters && n - first < 32 {
            let j = n as usize % t.frames.len();
            batch.push(black_box(&t.frames[j]), None, false);
            n += 1;
        }
        drop(batch);
        for m in first..n {
            let j = m as usize % t.frames.len();
            let i = (j * 7919) % endpoints;
            black_box(t.conns[i].queue.pop(Some(Duration::ZERO)).ok());
        }
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    for endpoints in [1usize, 100_000] {
        let t = table(endpoints);
        let mut g = c.benchmark_group(format!("dispatch/{endpoints}-endpoints"));
        g.throughput(Throughput::Elements(1));
        for threads in [1usize, 2] {
            g.bench_function(format!("{threads}-threads"), |b| {
                b.iter_custom(|iters| run(&t, iters, threads))
            });
        }
        g.bench_function("1-thread-batched", |b| {
            b.iter_custom(|iters| run_batched(&t, iters))
        });
        g.finish();
        assert_eq!(t.dispatcher.stats().rx_invalid, 0);
    }
}

/// A non-blocking reader polling an empty queue: how every round of "read until `WouldBlock`"
/// ends.
fn empty_poll(c: &mut Criterion) {
    let entry = ConnEntry::new(16, false);
    c.bench_function("rxqueue/pop-empty-nonblocking", |b| {
        b.iter(|| black_box(entry.queue.pop(Some(Duration::ZERO)).is_err()))
    });
}

mod group {
    #![allow(missing_docs)]
    use super::*;
    criterion_group!(benches, bench, empty_poll);
}
criterion_main!(group::benches);
