//! Dispatch throughput of the shared relay table: classify + key lookup + queue push + pop, per
//! frame, with 1 or 100,000 registered endpoints and with 1 or 2 threads delivering at once
//! (the relay's receive path takes no global lock, so two threads should not slow each other),
//! and with one thread delivering in batches of 32 (`Dispatcher::delivery`); and what a
//! non-blocking poll of an empty queue costs.
//!
//! The `dispatch-spread` groups measure how delivery scales with threads when many endpoints
//! receive: 1,000 or 100,000 endpoints registered, every one of them receiving (each gets one
//! of a fixed set of distinct frames, delivered in a shuffled order). With `T` threads, each
//! thread owns a share of the endpoints (split by a hash of the endpoint, as a relay's fanout
//! by flow would split them; see `DISPATCH_SPREAD_SPLIT` below):
//! it delivers their frames 32 at a time through `Dispatcher::delivery`, then reads each of the
//! 32 back from its endpoint's queue and copies the frame out, as a reader would. The time is
//! the wall time of all threads together, per frame; `1-thread` / `2-threads` is the scaling.
//! `DISPATCH_SPREAD_PAIRS=R cargo bench --bench dispatch` runs only these, outside criterion:
//! `R` rounds, each measuring 1 and then 2 threads on 2,000,000 frames, and prints per round
//! the wall time per frame and the CPU time per frame (`/proc/thread-self/schedstat`, the
//! threads' sum divided by the thread count: what the wall time would be with every thread on
//! a core of its own, which a machine shared with other work cannot give; lines the threads
//! both write still cost CPU time whenever they run at once), then the medians of the ratios.
//! A round counts only if its threads ran at least 90% of the wall time (a busy machine that
//! takes a core from them hides what they cost each other); it keeps trying, up to 4R rounds.
//! `DISPATCH_SPREAD_ENDPOINTS=1000` (or `100000`) runs one of the two fleets only,
//! `DISPATCH_SPREAD_THREADS=1` (or `2`) one thread count only (for a profiler; the ratios are
//! then meaningless), and `DISPATCH_SPREAD_FRAMES=N` measures N frames instead of 2,000,000.
//! `DISPATCH_SPREAD_SPLIT` says how the endpoints are split between the threads: `hash` (the
//! default: by a hash of the endpoint, as a relay's fanout by flow splits them), `alternate`
//! (neighbours always on different threads) or `blocks` (contiguous halves).
//!
//! Run with `cargo bench --bench dispatch`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
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

/// Endpoints every one of which receives, with one distinct frame each.
struct Spread {
    dispatcher: Arc<Dispatcher>,
    conns: Vec<Arc<ConnEntry>>,
    frames: Vec<Vec<u8>>,
    /// For each thread count, each thread's delivery order (endpoint indices).
    orders: Vec<Vec<Vec<u32>>>,
}

/// How the endpoints are split between the threads.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Split {
    /// By a hash of the endpoint's index, as a relay's fanout by flow hash splits them.
    Hash,
    /// Endpoint `i` to thread `i % T`: neighbours (registered one after the other, so their
    /// queues' storage is adjacent in memory) always on different threads.
    Alternate,
    /// Contiguous blocks: neighbours on the same thread but at the block edges.
    Blocks,
}

fn split_from_env() -> Split {
    match std::env::var("DISPATCH_SPREAD_SPLIT").as_deref() {
        Ok("alternate") => Split::Alternate,
        Ok("blocks") => Split::Blocks,
        _ => Split::Hash,
    }
}

fn owner(split: Split, i: usize, endpoints: usize, threads: usize) -> usize {
    match split {
        Split::Hash => {
            (((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % threads as u64) as usize
        }
        Split::Alternate => i % threads,
        Split::Blocks => i * threads / endpoints,
    }
}

fn spread(endpoints: usize, max_threads: usize) -> Spread {
    let split = split_from_env();
    let dispatcher = Dispatcher::new(DispatcherConfig::default());
    let base = MacAddr([0x02, 0xed, 0, 0, 0, 0]);
    let vlan = [VlanTag::dot1q(100).unwrap()];
    let mut conns = Vec::with_capacity(endpoints);
    let mut frames = Vec::with_capacity(endpoints);
    let payload = [0x5au8; 64];
    for i in 0..endpoints {
        let mac = base.offset(i as u64);
        let entry = ConnEntry::new(4, false);
        let key = L2EndpointKey::new(mac, VlanIds::from_tags(&vlan).unwrap(), EtherType::IPV4);
        dispatcher.register(&[key], &entry, false).unwrap();
        conns.push(entry);
        let f = UdpFrame {
            src_mac: "02:00:00:00:ff:01".parse().unwrap(),
            dst_mac: mac,
            vlans: &vlan,
            src: std::net::SocketAddr::from(([192, 0, 2, 1], 1024 + (i % 60_000) as u16)),
            dst: "192.0.2.2:5000".parse().unwrap(),
            ttl: 64,
            dscp: 0,
            payload: &payload,
        };
        let mut buf = vec![0u8; 128];
        let len = build_udp_frame(&mut buf, &f).unwrap();
        buf.truncate(len);
        frames.push(buf);
    }
    // A fixed pseudo-random permutation (xorshift), split by owner thread.
    let mut perm: Vec<u32> = (0..endpoints as u32).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..perm.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        perm.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let orders = (1..=max_threads)
        .map(|threads| {
            (0..threads)
                .map(|t| {
                    perm.iter()
                        .copied()
                        .filter(|&i| owner(split, i as usize, endpoints, threads) == t)
                        .collect()
                })
                .collect()
        })
        .collect();
    Spread {
        dispatcher,
        conns,
        frames,
        orders,
    }
}

/// This thread's CPU time so far (`None` without `/proc`).
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// `threads` threads, each delivering its own endpoints' frames in batches of 32 and reading
/// them back (copying each frame out); `iters` frames in all. Wall time, and the threads' CPU
/// time summed.
fn run_spread(t: &Spread, iters: u64, threads: usize) -> (Duration, Option<Duration>) {
    let orders = &t.orders[threads - 1];
    let start = Instant::now();
    let cpu: Option<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = orders
            .iter()
            .map(|order| {
                s.spawn(move || {
                    let cpu0 = thread_cpu();
                    let per = iters / threads as u64;
                    let mut out = [0u8; 2048];
                    let mut at = 0usize;
                    let mut n = 0u64;
                    while n < per {
                        let first = at;
                        let mut batch = t.dispatcher.delivery();
                        let mut k = 0;
                        while n < per && k < 32 {
                            batch.push(black_box(&t.frames[order[at] as usize]), None, false);
                            at += 1;
                            if at == order.len() {
                                at = 0;
                            }
                            n += 1;
                            k += 1;
                        }
                        drop(batch);
                        let mut r = first;
                        for _ in 0..k {
                            let q = &t.conns[order[r] as usize].queue;
                            if let Ok(f) = q.pop(Some(Duration::ZERO)) {
                                let b = f.frame();
                                out[..b.len()].copy_from_slice(b);
                                black_box(&out);
                            }
                            r += 1;
                            if r == order.len() {
                                r = 0;
                            }
                        }
                    }
                    thread_cpu().zip(cpu0).map(|(b, a)| b - a)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .sum()
    });
    (start.elapsed(), cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `DISPATCH_SPREAD_PAIRS` mode (see the top of the file).
fn spread_pairs(rounds: usize) {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let frames = env("DISPATCH_SPREAD_FRAMES").unwrap_or(2_000_000);
    let counts: &[usize] = match env("DISPATCH_SPREAD_THREADS") {
        Some(1) => &[1],
        Some(2) => &[2],
        _ => &[1, 2],
    };
    let only: Option<usize> = std::env::var("DISPATCH_SPREAD_ENDPOINTS")
        .ok()
        .and_then(|v| v.parse().ok());
    for endpoints in [1_000usize, 100_000] {
        if only.is_some_and(|o| o != endpoints) {
            continue;
        }
        let t = spread(endpoints, 2);
        run_spread(&t, frames / 4, counts[0]);
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        let mut tried = 0;
        while wall.len() < rounds && tried < 4 * rounds {
            tried += 1;
            let mut ns = [(f64::NAN, f64::NAN); 2];
            for &threads in counts {
                let (w, c) = run_spread(&t, frames, threads);
                let per = |d: Duration| d.as_nanos() as f64 / frames as f64;
                ns[threads - 1] = (per(w), c.map_or(f64::NAN, |c| per(c) / threads as f64));
            }
            // How much of the wall time the threads ran: 1 (one thread) or 2 (two threads)
            // when nothing else took the cores.
            let (ran1, ran2) = (ns[0].1 / ns[0].0, 2.0 * ns[1].1 / ns[1].0);
            let clean = counts.iter().all(|&n| match n {
                1 => ran1 >= 0.9,
                _ => ran2 >= 1.8,
            });
            println!(
                "{endpoints} receiving, round {tried}: 1 thread {:.1} ns/frame wall, {:.1} cpu \
                 (ran {ran1:.2}); 2 threads {:.1} wall, {:.1} cpu (ran {ran2:.2}); speed-up \
                 wall {:.2}, cpu {:.2}{}",
                ns[0].0,
                ns[0].1,
                ns[1].0,
                ns[1].1,
                ns[0].0 / ns[1].0,
                ns[0].1 / ns[1].1,
                if clean {
                    ""
                } else {
                    " (machine busy: not counted)"
                }
            );
            if clean {
                wall.push(ns[0].0 / ns[1].0);
                cpu.push(ns[0].1 / ns[1].1);
            }
        }
        if wall.is_empty() {
            println!("{endpoints} receiving: no round had the two cores to itself");
            continue;
        }
        let spread_of = |v: &[f64]| {
            let (lo, hi) = v
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
            format!("{lo:.2}-{hi:.2}")
        };
        println!(
            "{endpoints} receiving: 2 threads / 1 thread, median of {} clean rounds of {tried}: \
             wall {:.2} ({}), cpu {:.2} ({})",
            wall.len(),
            median(wall.clone()),
            spread_of(&wall),
            median(cpu.clone()),
            spread_of(&cpu)
        );
    }
}

fn bench_spread(c: &mut Criterion) {
    for endpoints in [1_000usize, 100_000] {
        let t = spread(endpoints, 2);
        let mut g = c.benchmark_group(format!("dispatch-spread/{endpoints}-receiving"));
        g.throughput(Throughput::Elements(1));
        for threads in [1usize, 2] {
            g.bench_function(format!("{threads}-threads"), |b| {
                b.iter_custom(|iters| run_spread(&t, iters, threads).0)
            });
        }
        g.finish();
        let st = t.dispatcher.stats();
        assert_eq!(st.rx_invalid, 0);
        assert_eq!(st.rx_queue_full + st.rx_no_buffer + st.rx_miss, 0, "{st:?}");
    }
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
    criterion_group!(benches, bench, bench_spread, empty_poll);
}

fn main() {
    if let Some(rounds) = std::env::var("DISPATCH_SPREAD_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        spread_pairs(rounds);
        return;
    }
    group::benches();
    Criterion::default().configure_from_args().final_summary();
}
