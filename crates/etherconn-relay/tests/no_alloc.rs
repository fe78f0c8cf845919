//! The hot path allocates nothing per packet once warm: a counting global allocator watches
//! sends, dispatch and receives through the loopback relay (the same dispatcher, pool and
//! queues as the real backends).
//!
//! The allocator counts the threads that run the code under test and no other (the test
//! harness's own threads allocate whenever they are scheduled): the test's thread, which sends,
//! dispatches (the loopback relay delivers on the sending thread) and receives, and the thread
//! that delivers in the inbox part. The relay starts no threads of its own.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use etherconn_core::wire::{EtherType, MacAddr, VlanTag};
use etherconn_relay::{DispatcherConfig, Inbox, LoopbackRelay, Mail, PacketRelay, ReadySet};
use etherconn_relay::{EtherConn, EtherConnConfig};
use etherconn_testalloc as alloc;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

#[test]
fn steady_state_send_dispatch_receive_allocates_nothing() {
    alloc::count_this_thread();
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(DispatcherConfig::default());
    let cfg = EtherConnConfig::default()
        .ethertypes(&[EtherType(0x88b5), EtherType::IPV4])
        .recv_multicast(true);
    let vlans = [VlanTag::dot1q(100).unwrap()];
    let a = EtherConn::new(
        relay.clone(),
        MacAddr([2, 0, 0, 0, 0, 1]),
        &vlans,
        cfg.clone(),
    )
    .unwrap();
    let b = EtherConn::new(relay.clone(), MacAddr([2, 0, 0, 0, 0, 2]), &vlans, cfg).unwrap();
    let payload = [0x5au8; 1000];
    let mut buf = [0u8; 2048];
    let mut round = |n: usize| {
        for i in 0..n {
            // Unicast to b, and a broadcast that fans out to both conns.
            let dst = if i % 8 == 0 {
                MacAddr::BROADCAST
            } else {
                b.local_mac()
            };
            a.send_to(&payload, EtherType(0x88b5), dst).unwrap();
            let (len, peer) = b.recv_from(&mut buf).unwrap();
            assert_eq!(len, payload.len());
            assert_eq!(peer.mac, a.local_mac());
            if i % 8 == 0 {
                a.recv_from(&mut buf).unwrap();
            }
        }
    };
    round(1_000);
    let before = alloc::allocations();
    round(20_000);
    let after = alloc::allocations();
    assert_eq!(after - before, 0, "allocations in 20,000 warm round trips");
    assert_eq!(relay.stats().rx_delivered, 21_000 - 21_000 / 8);

    // The same through a ReadySet: frames to 64 conns, found by `wait`, read, re-armed.
    let set = ReadySet::new();
    let many: Vec<EtherConn> = (0..64u64)
        .map(|i| {
            let c = EtherConn::new(
                relay.clone(),
                MacAddr([2, 0, 0, 1, 0, 0]).offset(i),
                &vlans,
                EtherConnConfig::default().ethertypes(&[EtherType(0x88b5)]),
            )
            .unwrap();
            c.set_nonblocking(true).unwrap();
            c
        })
        .collect();
    for c in &many {
        set.add(c);
    }
    let mut ready = Vec::with_capacity(many.len());
    let mut rounds = |n: usize| {
        for r in 0..n {
            for k in 0..8 {
                let to = &many[(r * 8 + k * 13) % many.len()];
                a.send_to(&payload[..64], EtherType(0x88b5), to.local_mac())
                    .unwrap();
            }
            let mut got = 0;
            while got < 8 {
                set.wait(&mut ready, Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                assert!(!ready.is_empty(), "a frame was not reported");
                for (_, conn) in ReadySet::read_ahead(&ready, |t| &many[t]) {
                    while conn.recv_from(&mut buf).is_ok() {
                        got += 1;
                    }
                }
            }
            assert_eq!(got, 8);
        }
    };
    rounds(200);
    let before = alloc::allocations();
    rounds(2_000);
    let after = alloc::allocations();
    assert_eq!(
        after - before,
        0,
        "allocations in 2,000 warm ReadySet rounds"
    );

    // The batched path the AF_PACKET relay uses: frames handed to `Dispatcher::delivery` in
    // bursts (100 frames: automatic flushes, held wake-ups, a final flush), found through the
    // set, read.
    let frames: Vec<Vec<u8>> = many
        .iter()
        .map(|c| {
            let mut f = vec![0u8; 60];
            f[..6].copy_from_slice(&c.local_mac().0);
            f[6..12].copy_from_slice(&a.local_mac().0);
            f[12..14].copy_from_slice(&[0x81, 0x00]);
            f[14..16].copy_from_slice(&100u16.to_be_bytes());
            f[16..18].copy_from_slice(&[0x88, 0xb5]);
            f
        })
        .collect();
    let mut bursts = |n: usize| {
        for r in 0..n {
            let mut batch = relay.dispatcher().delivery();
            for k in 0..100 {
                batch.push(&frames[(r + k * 7) % frames.len()], None, false);
            }
            batch.flush();
            drop(batch);
            let mut got = 0;
            while got < 100 {
                set.wait(&mut ready, Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                assert!(!ready.is_empty(), "a frame was not reported");
                for &t in &ready {
                    while many[t].recv_from(&mut buf).is_ok() {
                        got += 1;
                    }
                }
            }
            assert_eq!(got, 100);
        }
    };
    bursts(50);
    let before = alloc::allocations();
    bursts(500);
    let after = alloc::allocations();
    assert_eq!(after - before, 0, "allocations in 500 warm batched bursts");

    // The same bursts read through an inbox every conn is attached to (last: attaching is for
    // good), with a reader thread asleep between bursts, so that the batch's deferred wake-up
    // is exercised.
    let inbox = Inbox::with_capacity(256);
    for (i, c) in many.iter().enumerate() {
        inbox.attach(c, i).unwrap();
    }
    let mut mail = Vec::with_capacity(100);
    // Round `r` is asked for by storing r + 1 in `asked` (usize::MAX: stop); the delivering
    // thread waits by yielding, the reader by sleeping in `recv`.
    let asked = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            // This thread dispatches: what it allocates counts as much as the reader's.
            alloc::count_this_thread();
            let mut done = 0;
            loop {
                let a = asked.load(Ordering::Acquire);
                if a == usize::MAX {
                    return;
                }
                if a == done {
                    std::thread::yield_now();
                    continue;
                }
                let r = a - 1;
                let mut batch = relay.dispatcher().delivery();
                for k in 0..100 {
                    batch.push(&frames[(r + k * 7) % frames.len()], None, false);
                }
                drop(batch);
                done = a;
            }
        });
        let mut read = |n: usize| {
            for r in 0..n {
                asked.store(r + 1, Ordering::Release);
                let mut got = 0;
                while got < 100 {
                    let k = inbox
                        .recv(&mut mail, 100, Some(std::time::Duration::from_secs(5)))
                        .unwrap();
                    assert!(k > 0, "a frame was not handed over");
                    for m in &mail {
                        let Mail::Frame { token, frame } = m else {
                            panic!("{m:?}")
                        };
                        assert!(many[*token].keys().contains(&frame.info.key));
                        got += 1;
                    }
                }
                assert_eq!(got, 100);
                // The frames' buffers back to the pool before the next burst (the pool grows
                // to the most frames ever in flight, on first use).
                mail.clear();
            }
        };
        read(50);
        let before = alloc::allocations();
        read(500);
        let after = alloc::allocations();
        asked.store(usize::MAX, Ordering::Release);
        assert_eq!(after - before, 0, "allocations in 500 warm inbox bursts");
    });
}
