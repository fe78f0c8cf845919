//! Batched delivery (`Dispatcher::delivery`) must put every frame exactly where one-at-a-time
//! delivery (`Dispatcher::deliver`, whose rules `tests/relay.rs` checks) puts it, in the same
//! order, with the same drops and counters: the two are run side by side on identical tables
//! over random mixes of unicast, UDP-demultiplexed, broadcast, unmatched and invalid frames,
//! frames from group source MACs and martian UDP datagrams (some queues drop those), with
//! small queues (so that drop decisions, which depend on order, are compared too) and
//! batches flushed at random points.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::key::{L2EndpointKey, L4RecvKey, VlanIds};
use etherconn_core::wire::{EtherType, MacAddr, VlanTag};
use etherconn_relay::{
    ConnEntry, Dispatcher, DispatcherConfig, RelayStats, RxQueue, DELIVERY_BATCH,
};

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

const BROADCAST: MacAddr = MacAddr([0xff; 6]);
const DEPTH: usize = 3;

/// One dispatch table: plain entries, shared L2 endpoints with UDP endpoints, a default conn.
struct World {
    d: Arc<Dispatcher>,
    entries: Vec<Arc<ConnEntry>>,
    udp: Vec<Arc<RxQueue>>,
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn world(mirror: bool) -> World {
    let d = Dispatcher::new(DispatcherConfig::default().mirror_to_default(mirror));
    let key = |m: u8, vlans: VlanIds| L2EndpointKey::new(mac(m), vlans, EtherType::IPV4);
    let v7 = VlanIds::one(etherconn_core::wire::VlanId::new(7).unwrap());
    // 1: a plain conn that also takes broadcasts; 2 and 3: shared L2 endpoints (3 takes
    // broadcasts), 2 also on VLAN 7 with its own entry; default: a plain conn.
    let plain = ConnEntry::new(DEPTH, true);
    let shared2 = ConnEntry::with_l4(DEPTH, false);
    let shared2v = ConnEntry::with_l4(DEPTH, false);
    let shared3 = ConnEntry::with_l4(DEPTH, true);
    let default = ConnEntry::new(DEPTH * 4, false);
    // Some queues take only what a host would take.
    plain.queue.set_drop_martians(true);
    d.register(&[key(1, VlanIds::NONE)], &plain, false).unwrap();
    d.register(&[key(2, VlanIds::NONE)], &shared2, false)
        .unwrap();
    d.register(&[key(2, v7)], &shared2v, false).unwrap();
    d.register(&[key(3, VlanIds::NONE)], &shared3, false)
        .unwrap();
    d.set_default(&default, false).unwrap();
    let mut udp = Vec::new();
    for (entry, ip, port) in [
        (&shared2, ip(2), 100),
        (&shared2, Ipv4Addr::UNSPECIFIED.into(), 200),
        (&shared2v, ip(2), 100),
        (&shared3, ip(3), 100),
        (&shared3, ip(3), 200),
    ] {
        let q = Arc::new(RxQueue::new(DEPTH));
        q.set_drop_martians(port == 100);
        entry
            .l4
            .as_ref()
            .unwrap()
            .register(L4RecvKey::udp(ip, port), &q, false)
            .unwrap();
        udp.push(q);
    }
    World {
        d,
        entries: vec![plain, shared2, shared2v, shared3, default],
        udp,
    }
}

impl World {
    /// Every queue's frames, drained.
    fn drain(&self) -> Vec<Vec<Vec<u8>>> {
        let queues = self
            .entries
            .iter()
            .map(|e| &e.queue)
            .chain(self.udp.iter().map(|q| &**q));
        queues
            .map(|q| {
                let mut got = Vec::new();
                while let Ok(f) = q.pop(Some(Duration::ZERO)) {
                    got.push(f.frame().to_vec());
                }
                got
            })
            .collect()
    }

    fn stats(&self) -> RelayStats {
        self.d.stats()
    }
}

/// A frame: which MAC, VLAN, IP and port it is for; `garbage` makes it an invalid frame;
/// `from` 0 is an ordinary sender, 1 a group source MAC, 2 a martian source address, 3 source
/// port 0.
#[derive(Debug, Clone)]
struct Spec {
    dst: u8,
    vlan7: bool,
    ip: u8,
    port: u16,
    garbage: bool,
    from: u8,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..6,
        prop::bool::weighted(0.2),
        1u8..5,
        0u16..3,
        prop::bool::weighted(0.05),
        prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8), 1 => Just(3u8)],
    )
        .prop_map(|(dst, vlan7, ip, port, garbage, from)| Spec {
            dst,
            vlan7,
            ip,
            port: [100, 200, 300][usize::from(port)],
            garbage,
            from,
        })
}

fn frame(s: &Spec, n: usize) -> Vec<u8> {
    if s.garbage {
        // Claims IPv4 but stops inside the IP header.
        let mut f = vec![0u8; 20];
        f[..6].copy_from_slice(&mac(s.dst).0);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        return f;
    }
    let dst_mac = match s.dst {
        0 => BROADCAST,
        m => mac(m),
    };
    let tag = [VlanTag::dot1q(7).unwrap()];
    let payload = (n as u32).to_be_bytes();
    let mut buf = vec![0u8; 256];
    let len = build_udp_frame(
        &mut buf,
        &UdpFrame {
            src_mac: if s.from == 1 { BROADCAST } else { mac(99) },
            dst_mac,
            vlans: if s.vlan7 { &tag } else { &[] },
            src: match s.from {
                2 => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 5000),
                3 => SocketAddr::new(ip(99), 0),
                _ => SocketAddr::new(ip(99), 5000),
            },
            dst: SocketAddr::new(ip(s.ip), s.port),
            ttl: 64,
            dscp: 0,
            payload: &payload,
        },
    )
    .unwrap();
    buf.truncate(len);
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn batched_delivery_matches_one_at_a_time(
        specs in prop::collection::vec(spec(), 0..120),
        cuts in prop::collection::vec(1usize..(DELIVERY_BATCH + 10), 1..20),
        mirror in any::<bool>(),
        drain_every in 0usize..3,
    ) {
        let frames: Vec<Vec<u8>> = specs.iter().enumerate().map(|(n, s)| frame(s, n)).collect();
        let one = world(mirror);
        let batched = world(mirror);
        let mut got_one = Vec::new();
        let mut got_batched = Vec::new();
        // The frames in runs of `cuts[k]` (cycling); after some runs both worlds drain their
        // queues, so that drops happen at different places.
        let mut at = 0;
        let mut run = 0;
        while at < frames.len() {
            let end = (at + cuts[run % cuts.len()]).min(frames.len());
            for f in &frames[at..end] {
                one.d.deliver(f, None, false);
            }
            let mut b = batched.d.delivery();
            for f in &frames[at..end] {
                b.push(f, None, false);
                prop_assert!(b.len() < DELIVERY_BATCH);
            }
            b.flush();
            prop_assert!(b.is_empty());
            drop(b);
            at = end;
            run += 1;
            if drain_every > 0 && run % drain_every == 0 {
                got_one.push(one.drain());
                got_batched.push(batched.drain());
            }
        }
        got_one.push(one.drain());
        got_batched.push(batched.drain());
        prop_assert_eq!(got_one, got_batched);
        prop_assert_eq!(one.stats(), batched.stats());
    }
}

#[test]
fn a_dropped_batch_delivers_what_it_holds() {
    let w = world(false);
    let f = frame(
        &Spec {
            dst: 1,
            vlan7: false,
            ip: 1,
            port: 100,
            garbage: false,
            from: 0,
        },
        0,
    );
    {
        let mut b = w.d.delivery();
        b.push(&f, None, false);
        assert_eq!(w.stats().rx_delivered, 0, "held until the flush");
    }
    assert_eq!(w.stats().rx_delivered, 1);
    assert_eq!(w.drain()[0], vec![f]);
}

/// Relay threads whose batches meet the same shards in opposite orders, while two threads
/// register and remove keys in those shards: batches must take their locks in one global order,
/// or each relay thread can hold a shard the other waits for behind a queued writer (found by
/// review; std's `RwLock`, also each of the 8 inside a shard's `ShardedLock`, blocks new
/// readers while a writer waits).
///
/// A `ShardedLock` read takes the one of its 8 locks that the thread's process-wide index picks
/// (mod 8), so two threads can only wait on each other this way when their indices are equal
/// mod 8. Eight threads deliver in ascending key order and then eight, started once the first
/// eight have taken their indices, in descending order: the later eight take consecutive
/// indices, so each index mod 8 belongs to one of them, and every ascending thread shares its
/// locks with one descending thread.
#[test]
fn batches_and_registrations_on_many_threads_do_not_deadlock() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let d = Dispatcher::new(DispatcherConfig::default());
    let et = EtherType(0x88b5);
    // MAC 02:..:n lands in shard n (see `shard_index`).
    let key = |n: u8, et| L2EndpointKey::new(mac(n), VlanIds::NONE, et);
    let entries: Vec<_> = (1..=32u8)
        .map(|n| {
            let e = ConnEntry::new(4, false);
            d.register(&[key(n, et)], &e, false).unwrap();
            e
        })
        .collect();
    let frame = |n: u8| {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&mac(n).0);
        f[12..14].copy_from_slice(&et.0.to_be_bytes());
        f
    };
    let up: Vec<Vec<u8>> = (1..=32).map(frame).collect();
    let down: Vec<Vec<u8>> = (1..=32).rev().map(frame).collect();
    let stop = AtomicBool::new(false);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    const PER_ORDER: usize = 8;
    let started = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for frames in [&up, &down] {
            // The descending threads start once every ascending one has delivered (and so
            // taken its lock index).
            while started.load(Ordering::Acquire) < PER_ORDER && std::ptr::eq(frames, &down) {
                std::thread::yield_now();
            }
            for _ in 0..PER_ORDER {
                let (d, stop, done, entries, started) =
                    (&d, &stop, done_tx.clone(), &entries, &started);
                s.spawn(move || {
                    let mut first = true;
                    while !stop.load(Ordering::Relaxed) {
                        let mut b = d.delivery();
                        for f in frames {
                            b.push(f, None, false);
                        }
                        drop(b);
                        if first {
                            started.fetch_add(1, Ordering::Release);
                            first = false;
                        }
                        for e in entries {
                            while e.queue.pop(Some(Duration::ZERO)).is_ok() {}
                        }
                    }
                    drop(done);
                });
            }
        }
        for w in 0..2u8 {
            let (d, stop, done) = (&d, &stop, done_tx.clone());
            s.spawn(move || {
                let mine = ConnEntry::new(1, false);
                let other = EtherType(0x88b6 + u16::from(w));
                while !stop.load(Ordering::Relaxed) {
                    for n in (1..=32u8).rev() {
                        let k = [key(n, other)];
                        d.register(&k, &mine, false).unwrap();
                        d.deregister(&k, &mine);
                    }
                }
                drop(done);
            });
        }
        drop(done_tx);
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        // Every thread drops its sender when it ends; a deadlock keeps them.
        let finished = matches!(
            done_rx.recv_timeout(Duration::from_secs(20)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
        if !finished {
            // The scope would wait for the stuck threads forever: fail loudly instead.
            eprintln!("deadlock: relay and registering threads did not finish");
            std::process::abort();
        }
    });
    assert!(d.stats().rx_offered > 0);
}
