//! `ReadySet`: which conns `wait` reports, when, and what it does on timeouts, stops and removal.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use etherconn_core::wire::{EtherType, MacAddr};
use etherconn_relay::{DispatcherConfig, LoopbackRelay, PacketRelay, ReadySet};
use etherconn_relay::{EtherConn, EtherConnConfig};

const ET: EtherType = EtherType(0x88b5);
const SECOND: Option<Duration> = Some(Duration::from_secs(1));

fn relay() -> Arc<dyn PacketRelay> {
    LoopbackRelay::new(DispatcherConfig::default())
}

/// `n` non-blocking conns on `relay`, watched by a new set; returns conns and tokens.
fn watched(relay: &Arc<dyn PacketRelay>, n: u64) -> (ReadySet, Vec<EtherConn>, Vec<usize>) {
    let set = ReadySet::new();
    let (conns, tokens) = watched_by(&set, relay, n);
    (set, conns, tokens)
}

/// `n` non-blocking conns on `relay`, watched by `set`; returns conns and tokens.
fn watched_by(
    set: &ReadySet,
    relay: &Arc<dyn PacketRelay>,
    n: u64,
) -> (Vec<EtherConn>, Vec<usize>) {
    let conns: Vec<EtherConn> = (0..n)
        .map(|i| {
            let c = EtherConn::new(
                relay.clone(),
                MacAddr([2, 0, 0, 0, 1, 0]).offset(i),
                &[],
                EtherConnConfig::default().ethertypes(&[ET]),
            )
            .unwrap();
            c.set_nonblocking(true).unwrap();
            c
        })
        .collect();
    let tokens = conns.iter().map(|c| set.add(c)).collect();
    (conns, tokens)
}

fn sender(relay: &Arc<dyn PacketRelay>) -> EtherConn {
    EtherConn::new(
        relay.clone(),
        MacAddr([2, 0, 0, 0, 0, 1]),
        &[],
        EtherConnConfig::default().ethertypes(&[ET]),
    )
    .unwrap()
}

fn sorted(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v
}

#[test]
fn reports_exactly_the_conns_with_frames_level_triggered() {
    let r = relay();
    let (set, conns, tokens) = watched(&r, 10);
    let tx = sender(&r);
    let mut ready = Vec::new();
    assert_eq!(set.wait(&mut ready, Some(Duration::ZERO)).unwrap(), 0);

    // Two frames to conn 3, one to conn 6.
    for to in [3, 3, 6] {
        tx.send_to(b"x", ET, conns[to].local_mac()).unwrap();
    }
    set.wait(&mut ready, SECOND).unwrap();
    assert_eq!(sorted(ready.clone()), sorted(vec![tokens[3], tokens[6]]));

    // Read one frame from each: conn 3 still has one, and is reported again; conn 6 is not.
    let mut buf = [0u8; 64];
    conns[3].recv_from(&mut buf).unwrap();
    conns[6].recv_from(&mut buf).unwrap();
    assert_eq!(set.wait(&mut ready, Some(Duration::ZERO)).unwrap(), 1);
    assert_eq!(ready, [tokens[3]]);
    conns[3].recv_from(&mut buf).unwrap();
    assert_eq!(set.wait(&mut ready, Some(Duration::ZERO)).unwrap(), 0);

    // A conn that was handed out and drained is armed again: a new frame reports it.
    tx.send_to(b"y", ET, conns[6].local_mac()).unwrap();
    set.wait(&mut ready, SECOND).unwrap();
    assert_eq!(ready, [tokens[6]]);
}

#[test]
fn a_frame_wakes_a_blocked_waiter_and_the_timeout_expires() {
    let r = relay();
    let (set, conns, tokens) = watched(&r, 4);
    let set = Arc::new(set);
    let waiter = {
        let set = Arc::clone(&set);
        thread::spawn(move || {
            let mut ready = Vec::new();
            set.wait(&mut ready, None).unwrap();
            (ready, Instant::now())
        })
    };
    thread::sleep(Duration::from_millis(100));
    // Compared with the time the frame was sent, not with the waiter's start: on a loaded
    // machine the waiter's thread may start well after the spawn.
    let sent = Instant::now();
    sender(&r)
        .send_to(b"wake", ET, conns[2].local_mac())
        .unwrap();
    let (ready, returned) = waiter.join().unwrap();
    assert_eq!(ready, [tokens[2]]);
    assert!(
        returned >= sent,
        "returned {:?} before the frame",
        sent - returned
    );

    let mut buf = [0u8; 64];
    conns[2].recv_from(&mut buf).unwrap();
    let mut ready = Vec::new();
    let t = Instant::now();
    assert_eq!(
        set.wait(&mut ready, Some(Duration::from_millis(80)))
            .unwrap(),
        0
    );
    assert!(t.elapsed() >= Duration::from_millis(80));
    assert!(ready.is_empty());
}

#[test]
fn stopping_the_relay_reports_every_conn_closed() {
    let r = relay();
    let (set, conns, tokens) = watched(&r, 5);
    let mut ready = Vec::new();
    r.stop();
    set.wait(&mut ready, SECOND).unwrap();
    assert_eq!(sorted(ready.clone()), tokens);
    let mut buf = [0u8; 64];
    for &t in &ready {
        let e = conns[t].recv_from(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotConnected);
    }
}

#[test]
fn removed_conns_are_not_reported_and_tokens_are_reused() {
    let r = relay();
    let (set, conns, tokens) = watched(&r, 3);
    assert_eq!(set.len(), 3);
    assert!(set.remove(tokens[1]));
    assert!(!set.remove(tokens[1]), "already removed");
    assert_eq!(set.len(), 2);
    let tx = sender(&r);
    tx.send_to(b"x", ET, conns[1].local_mac()).unwrap();
    tx.send_to(b"x", ET, conns[2].local_mac()).unwrap();
    let mut ready = Vec::new();
    set.wait(&mut ready, SECOND).unwrap();
    assert_eq!(ready, [tokens[2]]);
    // The freed token goes to the next conn added.
    let again = set.add(&conns[1]);
    assert_eq!(again, tokens[1]);
    // Conn 1 already holds a frame: it is reported at once.
    set.wait(&mut ready, SECOND).unwrap();
    assert!(ready.contains(&again));
}

#[test]
fn thousands_of_conns_each_frame_found_once() {
    let r = relay();
    let (set, conns, tokens) = watched(&r, 2_000);
    let by_token: BTreeMap<usize, usize> =
        tokens.iter().enumerate().map(|(i, &t)| (t, i)).collect();
    let tx = sender(&r);
    // 3 frames to each of 300 conns spread over the set, sent from another thread while this
    // one waits.
    let targets: Vec<usize> = (0..300).map(|k| (k * 7919) % conns.len()).collect();
    let macs: Vec<MacAddr> = targets.iter().map(|&i| conns[i].local_mac()).collect();
    let sending = thread::spawn(move || {
        for round in 0..3 {
            for m in &macs {
                tx.send_to(&[round], ET, *m).unwrap();
            }
        }
    });
    let mut got = vec![0u32; conns.len()];
    let mut ready = Vec::new();
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.iter().sum::<u32>() < 900 {
        assert!(
            Instant::now() < deadline,
            "frames missing: {}",
            got.iter().sum::<u32>()
        );
        set.wait(&mut ready, SECOND).unwrap();
        for t in &ready {
            let i = by_token[t];
            while conns[i].recv_from(&mut buf).is_ok() {
                got[i] += 1;
            }
        }
    }
    sending.join().unwrap();
    for (i, &n) in got.iter().enumerate() {
        let want = if targets.contains(&i) { 3 } else { 0 };
        assert_eq!(n, want, "conn {i}");
    }
    assert_eq!(set.wait(&mut ready, Some(Duration::ZERO)).unwrap(), 0);
}

#[test]
fn a_conn_moves_to_the_last_set_it_was_added_to() {
    let r = relay();
    let (first, conns, _) = watched(&r, 2);
    let second = ReadySet::new();
    let t = second.add(&conns[1]);
    // Removing it from the first set must not unhook it from the second.
    assert!(first.remove(1));
    let tx = sender(&r);
    tx.send_to(b"x", ET, conns[1].local_mac()).unwrap();
    tx.send_to(b"x", ET, conns[0].local_mac()).unwrap();
    let mut ready = Vec::new();
    second.wait(&mut ready, SECOND).unwrap();
    assert_eq!(ready, [t]);
    first.wait(&mut ready, SECOND).unwrap();
    assert_eq!(ready, [0], "conn 0 stays in the first set");
    // A dropped set unhooks its conns; the other set still works.
    drop(first);
    let mut buf = [0u8; 64];
    conns[1].recv_from(&mut buf).unwrap();
    tx.send_to(b"y", ET, conns[1].local_mac()).unwrap();
    second.wait(&mut ready, SECOND).unwrap();
    assert_eq!(ready, [t]);
}

#[test]
fn a_full_ready_list_loses_no_conn() {
    let r = relay();
    let set = ReadySet::with_capacity(2);
    let (conns, tokens) = watched_by(&set, &r, 10);
    let tx = sender(&r);
    for c in &conns {
        tx.send_to(b"x", ET, c.local_mac()).unwrap();
    }
    let mut ready = Vec::new();
    set.wait(&mut ready, SECOND).unwrap();
    ready.sort_unstable();
    ready.dedup();
    assert_eq!(
        ready, tokens,
        "two listed, the rest found by the overflow scan"
    );
    let mut buf = [0u8; 64];
    for c in &conns {
        c.recv_from(&mut buf).unwrap();
    }
    // Everything drained and re-armed: quiet, then one new frame is reported normally.
    assert_eq!(set.wait(&mut ready, Some(Duration::ZERO)).unwrap(), 0);
    tx.send_to(b"y", ET, conns[4].local_mac()).unwrap();
    set.wait(&mut ready, SECOND).unwrap();
    assert_eq!(ready, [tokens[4]]);
}

#[test]
fn a_conn_read_elsewhere_during_an_overflow_is_not_lost() {
    // Found by review: an overflow leaves the queues whose listing failed disarmed; one that
    // was emptied by another reader before the scan must be armed again, or its later frames
    // are never reported.
    let r = relay();
    let set = ReadySet::with_capacity(1);
    let (conns, tokens) = watched_by(&set, &r, 2);
    let tx = sender(&r);
    tx.send_to(b"a", ET, conns[0].local_mac()).unwrap(); // listed: the list is full
    tx.send_to(b"b", ET, conns[1].local_mac()).unwrap(); // not listed: overflow
    let mut buf = [0u8; 64];
    conns[1].recv_from(&mut buf).unwrap(); // read by someone else
    let mut ready = Vec::new();
    set.wait(&mut ready, SECOND).unwrap();
    assert_eq!(ready, [tokens[0]]);
    conns[0].recv_from(&mut buf).unwrap();
    assert_eq!(set.wait(&mut ready, Some(Duration::ZERO)).unwrap(), 0);
    tx.send_to(b"c", ET, conns[1].local_mac()).unwrap();
    set.wait(&mut ready, SECOND).unwrap();
    assert_eq!(ready, [tokens[1]], "conn 1 must be reported again");
}

#[test]
fn an_endless_timeout_is_forever_not_a_panic() {
    let r = relay();
    let (set, conns, tokens) = watched(&r, 1);
    sender(&r).send_to(b"x", ET, conns[0].local_mac()).unwrap();
    let mut ready = Vec::new();
    set.wait(&mut ready, Some(Duration::MAX)).unwrap();
    assert_eq!(ready, tokens);
    conns[0].set_nonblocking(false).unwrap();
    conns[0].set_read_timeout(Some(Duration::MAX)).unwrap();
    let mut buf = [0u8; 64];
    // One byte sent, padded to the 46-byte minimum Ethernet payload.
    assert_eq!(conns[0].recv_from(&mut buf).unwrap().0, 46);
}

#[test]
fn a_conn_added_twice_lives_under_its_new_token() {
    let r = relay();
    let (set, conns, tokens) = watched(&r, 1);
    let again = set.add(&conns[0]);
    assert_ne!(again, tokens[0]);
    // Removing the stale token must not unhook the conn from its new one.
    assert!(set.remove(tokens[0]));
    sender(&r).send_to(b"x", ET, conns[0].local_mac()).unwrap();
    let mut ready = Vec::new();
    set.wait(&mut ready, SECOND).unwrap();
    assert_eq!(ready, [again]);
}

#[test]
fn read_ahead_hands_over_every_token_in_order_with_its_conn() {
    let relay = relay();
    let (set, conns, tokens) = watched(&relay, 40);
    let tx = sender(&relay);
    // Tokens map to conns through a table the set does not know: reversed here.
    let conn_of = |t: usize| &conns[tokens.iter().position(|&x| x == t).unwrap()];
    for to in [1usize, 5, 6, 17, 22, 23, 30, 39] {
        tx.send_to(&[to as u8], ET, conns[to].local_mac()).unwrap();
    }
    let mut ready = Vec::new();
    set.wait(&mut ready, SECOND).unwrap();
    assert_eq!(ready.len(), 8);
    let mut buf = [0u8; 64];
    let walk = ReadySet::read_ahead(&ready, conn_of);
    assert_eq!(walk.len(), 8);
    let mut seen = Vec::new();
    for (t, conn) in walk {
        assert!(
            std::ptr::eq(conn, conn_of(t)),
            "token {t} came with another conn"
        );
        let (n, _) = conn.recv_from(&mut buf).unwrap();
        seen.push((t, buf[..n][0] as usize));
        assert_eq!(
            conn.recv_from(&mut buf).unwrap_err().kind(),
            ErrorKind::WouldBlock
        );
    }
    // In the order `wait` gave, each conn holding the frame sent to it.
    assert_eq!(seen.iter().map(|&(t, _)| t).collect::<Vec<_>>(), ready);
    for (t, payload) in seen {
        assert!(std::ptr::eq(conn_of(t), &conns[payload]));
    }
    // Fewer tokens than the read-ahead distance, and none.
    assert_eq!(ReadySet::read_ahead(&ready[..2], conn_of).count(), 2);
    assert_eq!(ReadySet::read_ahead(&[], conn_of).count(), 0);
    // Reading ahead took nothing: everything was read, nothing is ready.
    assert_eq!(set.wait(&mut ready, Some(Duration::ZERO)).unwrap(), 0);
}

/// A relay delivering in batches holds its `ReadySet` listings back for a few batches (one
/// wake-up for many conns), but not while a small queue fills: a sleeping reader must hear of a
/// queue of 64 frames once it is half full, before the batches held could overflow it. A deep
/// queue's listing stays held until the delivery ends.
#[test]
fn held_wakeups_are_released_when_a_small_queue_fills() {
    let relay = relay();
    let conn = |mac: u64, depth: usize| {
        EtherConn::new(
            relay.clone(),
            MacAddr([2, 0, 0, 0, 2, 0]).offset(mac),
            &[],
            EtherConnConfig::default()
                .ethertypes(&[ET])
                .queue_depth(depth),
        )
        .unwrap()
    };
    let (small, deep) = (conn(1, 64), conn(2, 4096));
    let set = ReadySet::new();
    let (t_small, t_deep) = (set.add(&small), set.add(&deep));
    let frame = |to: &EtherConn| {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&to.local_mac().0);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&ET.0.to_be_bytes());
        f
    };
    let mut ready = Vec::new();
    let d = relay.dispatcher();

    // One batch (32 frames) for the deep queue: its listing is held while the delivery lasts.
    {
        let mut batch = d.delivery();
        for _ in 0..32 {
            batch.push(&frame(&deep), None, false);
        }
        assert_eq!(deep.queued(), 32, "the batch was queued");
        assert_eq!(set.wait(&mut ready, Some(Duration::ZERO)).unwrap(), 0);
    }
    assert_eq!(set.wait(&mut ready, Some(Duration::ZERO)).unwrap(), 1);
    assert_eq!(ready, [t_deep]);
    while deep.recv_frame_timeout(Some(Duration::ZERO)).is_ok() {}

    // One batch for the small queue: half full, so it is listed at the end of that batch,
    // with the delivery still under way.
    let mut batch = d.delivery();
    for _ in 0..32 {
        batch.push(&frame(&small), None, false);
    }
    assert_eq!(set.wait(&mut ready, Some(Duration::ZERO)).unwrap(), 1);
    assert_eq!(ready, [t_small]);
    drop(batch);
    assert_eq!(small.queued(), 32);
    // Level-triggered: still there, and nothing else.
    assert_eq!(set.wait(&mut ready, Some(Duration::ZERO)).unwrap(), 1);
    assert_eq!(ready, [t_small]);
}
