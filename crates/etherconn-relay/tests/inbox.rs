//! `Inbox`: which frames it hands over, in what order, under which token; close reports,
//! stops, timeouts, a full inbox, and what happens to the attached conn's own reads.

use std::io::ErrorKind;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use etherconn_core::wire::{EtherType, MacAddr};
use etherconn_relay::{
    DispatcherConfig, Inbox, LoopbackRelay, Mail, PacketRelay, ReadySet, RelayError,
};
use etherconn_relay::{EtherConn, EtherConnConfig};

const ET: EtherType = EtherType(0x88b5);
const SECOND: Option<Duration> = Some(Duration::from_secs(1));

fn relay() -> Arc<dyn PacketRelay> {
    LoopbackRelay::new(DispatcherConfig::default())
}

fn conns(relay: &Arc<dyn PacketRelay>, n: u64) -> Vec<EtherConn> {
    (0..n)
        .map(|i| {
            EtherConn::new(
                relay.clone(),
                MacAddr([2, 0, 0, 0, 1, 0]).offset(i),
                &[],
                EtherConnConfig::default().ethertypes(&[ET]),
            )
            .unwrap()
        })
        .collect()
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

/// (token, first payload byte) of every frame in `mail`.
fn frames(mail: &[Mail]) -> Vec<(usize, u8)> {
    mail.iter()
        .filter_map(|m| match m {
            Mail::Frame { token, frame } => Some((*token, frame.payload()[0])),
            Mail::Closed { .. } => None,
        })
        .collect()
}

#[test]
fn frames_of_every_conn_come_in_arrival_order_under_their_tokens() {
    let relay = relay();
    let a = sender(&relay);
    let cs = conns(&relay, 50);
    let inbox = Inbox::new();
    for (i, c) in cs.iter().enumerate() {
        // Tokens are the caller's: here 1000 + index.
        inbox.attach(c, 1000 + i).unwrap();
    }
    let mut sent = Vec::new();
    for k in 0..200usize {
        let to = (k * 7) % cs.len();
        a.send_to(&[k as u8; 46], ET, cs[to].local_mac()).unwrap();
        sent.push((1000 + to, k as u8));
    }
    assert_eq!(inbox.len(), 200);
    let mut got = Vec::new();
    let mut mail = Vec::with_capacity(64);
    while got.len() < sent.len() {
        let n = inbox.recv(&mut mail, 64, SECOND).unwrap();
        assert!(n > 0 && n <= 64, "{n}");
        assert_eq!(n, mail.len());
        got.extend(frames(&mail));
    }
    assert_eq!(got, sent);
    // Every frame went to the inbox: the conns' own queues hold nothing.
    assert!(cs.iter().all(|c| c.queued() == 0));
    assert_eq!(relay.stats().rx_delivered, 200);
    assert_eq!(inbox.recv(&mut mail, 64, Some(Duration::ZERO)).unwrap(), 0);
}

#[test]
fn what_the_conn_had_queued_moves_to_the_inbox_and_its_own_reads_fail() {
    let relay = relay();
    let a = sender(&relay);
    let cs = conns(&relay, 1);
    let c = &cs[0];
    a.send_to(&[1; 46], ET, c.local_mac()).unwrap();
    assert_eq!(c.queued(), 1);
    let inbox = Inbox::new();
    inbox.attach(c, 5).unwrap();
    assert_eq!(c.queued(), 0);
    a.send_to(&[2; 46], ET, c.local_mac()).unwrap();
    let mut buf = [0u8; 1500];
    for (timeout, nonblocking) in [(None, false), (SECOND, false), (None, true)] {
        c.set_read_timeout(timeout).unwrap();
        c.set_nonblocking(nonblocking).unwrap();
        let e = c.recv_from(&mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{timeout:?}: {e}");
    }
    let mut mail = Vec::new();
    inbox.recv(&mut mail, 8, SECOND).unwrap();
    assert_eq!(frames(&mail), [(5, 1), (5, 2)]);
}

#[test]
fn an_async_reader_of_the_conn_is_told_when_it_is_attached() {
    use std::task::{Context, Poll, Waker};
    let relay = relay();
    let cs = conns(&relay, 1);
    let q = etherconn_relay::Watchable::rx_queue(&cs[0]);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(q.poll_pop(&mut cx).is_pending());
    Inbox::new().attach(&cs[0], 0).unwrap();
    match q.poll_pop(&mut cx) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), ErrorKind::InvalidInput),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_dropped_inbox_gives_its_buffers_back_and_its_conns_frames_are_counted_as_misses() {
    // 16 buffers: the 10 frames held in the inbox and 12 more do not fit at once.
    let relay: Arc<dyn PacketRelay> =
        LoopbackRelay::new(DispatcherConfig::default().buffers(16, 2048));
    let a = sender(&relay);
    let cs = conns(&relay, 3);
    let inbox = Inbox::new();
    inbox.attach(&cs[0], 0).unwrap();
    inbox.attach(&cs[1], 1).unwrap();
    for _ in 0..10 {
        a.send_to(&[1; 46], ET, cs[0].local_mac()).unwrap();
    }
    assert_eq!(inbox.len(), 10);
    drop(inbox);
    let misses = relay.stats().rx_miss;
    a.send_to(&[2; 46], ET, cs[1].local_mac()).unwrap();
    assert_eq!(relay.stats().rx_miss, misses + 1);
    // The inbox's 10 buffers are back: 12 frames to the conn that reads for itself all fit.
    for _ in 0..12 {
        a.send_to(&[3; 46], ET, cs[2].local_mac()).unwrap();
    }
    let s = relay.stats();
    assert_eq!((s.rx_no_buffer, cs[2].queued()), (0, 12), "{s}");
}

#[test]
fn two_readers_share_frames_and_close_reports_without_losing_or_doubling_any() {
    // Rounds of 4 conns, 64 frames each, then dropped, while two threads read the inbox in
    // large batches: each frame and each close report goes to exactly one of them. (A reader
    // that counted the close reports before reading the ring once found fewer left after the
    // other took some, and panicked; this found it within ~150 rounds.)
    let relay = relay();
    let a = sender(&relay);
    let inbox = Inbox::with_capacity(1 << 14);
    const ROUNDS: usize = 400;
    let taken = std::sync::Mutex::new((0usize, std::collections::HashSet::new()));
    let done = std::sync::atomic::AtomicBool::new(false);
    thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut mail = Vec::with_capacity(1 << 14);
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    inbox
                        .recv(&mut mail, 1 << 14, Some(Duration::from_millis(5)))
                        .unwrap();
                    let mut t = taken.lock().unwrap();
                    for m in &mail {
                        match m {
                            Mail::Frame { .. } => t.0 += 1,
                            Mail::Closed { token } => assert!(t.1.insert(*token), "{token} twice"),
                        }
                    }
                }
            });
        }
        for r in 0..ROUNDS {
            let cs: Vec<EtherConn> = (0..4)
                .map(|k| {
                    EtherConn::new(
                        relay.clone(),
                        MacAddr([2, 0, 0, 3, 0, 0]).offset((r * 4 + k) as u64),
                        &[],
                        EtherConnConfig::default().ethertypes(&[ET]),
                    )
                    .unwrap()
                })
                .collect();
            for (k, c) in cs.iter().enumerate() {
                inbox.attach(c, r * 4 + k).unwrap();
            }
            // Paced by the room in the inbox: on a loaded machine the readers can be starved
            // long enough for an unpaced sender to overflow it, which this test is not about.
            while inbox.len() > (1 << 14) - 4 * 64 {
                thread::yield_now();
            }
            for _ in 0..64 {
                for c in &cs {
                    a.send_to(&[0; 46], ET, c.local_mac()).unwrap();
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while taken.lock().unwrap().1.len() < ROUNDS * 4 {
            assert!(Instant::now() < deadline, "close reports missing");
            thread::sleep(Duration::from_millis(1));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let t = taken.into_inner().unwrap();
    assert_eq!((t.0, t.1.len()), (ROUNDS * 4 * 64, ROUNDS * 4));
    assert_eq!(relay.stats().rx_queue_full, 0);
}

#[test]
fn a_reader_blocked_on_the_conn_is_told_when_it_is_attached() {
    let relay = relay();
    let cs = conns(&relay, 1);
    let inbox = Inbox::new();
    thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut buf = [0u8; 1500];
            cs[0].recv_from(&mut buf).map(|_| ())
        });
        thread::sleep(Duration::from_millis(50));
        inbox.attach(&cs[0], 0).unwrap();
        let e = reader.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    });
}

#[test]
fn a_conn_joins_one_inbox_once() {
    let relay = relay();
    let cs = conns(&relay, 1);
    let (one, two) = (Inbox::new(), Inbox::new());
    one.attach(&cs[0], 0).unwrap();
    assert!(matches!(one.attach(&cs[0], 1), Err(RelayError::InInbox)));
    let e = two.attach(&cs[0], 0).unwrap_err();
    assert_eq!(std::io::Error::from(e).kind(), ErrorKind::AlreadyExists);
}

#[test]
fn a_dropped_conn_is_reported_after_its_frames() {
    let relay = relay();
    let a = sender(&relay);
    let mut cs = conns(&relay, 3);
    let inbox = Inbox::new();
    for (i, c) in cs.iter().enumerate() {
        inbox.attach(c, i).unwrap();
    }
    for k in 0..3u8 {
        a.send_to(&[k; 46], ET, cs[1].local_mac()).unwrap();
    }
    drop(cs.remove(1));
    let mut mail = Vec::new();
    // A small `max` first: the close report waits until the frames are out.
    assert_eq!(inbox.recv(&mut mail, 2, SECOND).unwrap(), 2);
    assert_eq!(frames(&mail), [(1, 0), (1, 1)]);
    // The last frame, then (room left, no frame) the report.
    assert_eq!(inbox.recv(&mut mail, 2, SECOND).unwrap(), 2);
    assert_eq!(frames(&mail), [(1, 2)]);
    assert!(matches!(mail[1], Mail::Closed { token: 1 }));
    assert_eq!(mail[1].token(), 1);
    // Reported once.
    assert_eq!(inbox.recv(&mut mail, 2, Some(Duration::ZERO)).unwrap(), 0);
}

#[test]
fn stopping_the_relay_wakes_a_blocked_reader_with_every_close() {
    let relay = relay();
    let cs = conns(&relay, 10);
    let inbox = Inbox::new();
    for (i, c) in cs.iter().enumerate() {
        inbox.attach(c, i).unwrap();
    }
    thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut closed = Vec::new();
            let mut mail = Vec::new();
            while closed.len() < 10 {
                let n = inbox.recv(&mut mail, 4, None).unwrap();
                assert!(n > 0);
                closed.extend(mail.iter().map(Mail::token));
            }
            closed.sort();
            closed
        });
        thread::sleep(Duration::from_millis(50));
        relay.stop();
        assert_eq!(reader.join().unwrap(), (0..10).collect::<Vec<_>>());
    });
}

#[test]
fn a_conn_closed_before_it_is_attached_is_reported_at_once() {
    let relay = relay();
    let cs = conns(&relay, 1);
    relay.stop();
    let inbox = Inbox::new();
    inbox.attach(&cs[0], 3).unwrap();
    let mut mail = Vec::new();
    assert_eq!(inbox.recv(&mut mail, 8, Some(Duration::ZERO)).unwrap(), 1);
    assert!(matches!(mail[0], Mail::Closed { token: 3 }));
}

#[test]
fn attach_racing_close_reports_the_close_exactly_once() {
    for _ in 0..200 {
        let relay = relay();
        let cs = conns(&relay, 1);
        let inbox = Inbox::new();
        thread::scope(|s| {
            s.spawn(|| relay.stop());
            inbox.attach(&cs[0], 0).unwrap();
        });
        let mut mail = Vec::new();
        assert_eq!(inbox.recv(&mut mail, 8, SECOND).unwrap(), 1);
        assert!(matches!(mail[0], Mail::Closed { token: 0 }));
        assert_eq!(inbox.recv(&mut mail, 8, Some(Duration::ZERO)).unwrap(), 0);
    }
}

#[test]
fn a_blocked_reader_is_woken_by_a_frame_and_times_out_without_one() {
    let relay = relay();
    let a = sender(&relay);
    let cs = conns(&relay, 2);
    let inbox = Inbox::new();
    inbox.attach(&cs[1], 1).unwrap();
    thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut mail = Vec::new();
            inbox
                .recv(&mut mail, 8, Some(Duration::from_secs(10)))
                .unwrap();
            frames(&mail)
        });
        thread::sleep(Duration::from_millis(50));
        a.send_to(&[9; 46], ET, cs[1].local_mac()).unwrap();
        assert_eq!(reader.join().unwrap(), [(1, 9)]);
    });
    let mut mail = Vec::new();
    let t = Instant::now();
    assert_eq!(
        inbox
            .recv(&mut mail, 8, Some(Duration::from_millis(30)))
            .unwrap(),
        0
    );
    assert!(t.elapsed() >= Duration::from_millis(30));
    assert_eq!(inbox.recv(&mut mail, 0, None).unwrap(), 0);
}

#[test]
fn a_full_inbox_drops_and_the_relay_counts_it() {
    let relay = relay();
    let a = sender(&relay);
    let cs = conns(&relay, 4);
    let inbox = Inbox::with_capacity(5);
    assert_eq!(inbox.capacity(), 5);
    for (i, c) in cs.iter().enumerate() {
        inbox.attach(c, i).unwrap();
    }
    for k in 0..8u8 {
        a.send_to(&[k; 46], ET, cs[usize::from(k) % 4].local_mac())
            .unwrap();
    }
    let s = relay.stats();
    assert_eq!((s.rx_delivered, s.rx_queue_full), (5, 3));
    let mut mail = Vec::new();
    inbox.recv(&mut mail, 64, SECOND).unwrap();
    assert_eq!(frames(&mail), [(0, 0), (1, 1), (2, 2), (3, 3), (0, 4)]);
}

#[test]
fn frames_from_another_thread_all_arrive_once() {
    // A relay-side thread pushing while the reader sleeps and wakes: nothing lost or doubled.
    let relay = relay();
    let a = sender(&relay);
    let cs = conns(&relay, 16);
    let inbox = Inbox::with_capacity(64);
    for (i, c) in cs.iter().enumerate() {
        inbox.attach(c, i).unwrap();
    }
    const FRAMES: usize = 20_000;
    thread::scope(|s| {
        s.spawn(|| {
            for k in 0..FRAMES {
                let to = cs[k % cs.len()].local_mac();
                // Paced by the room in the inbox, so nothing is dropped.
                while inbox.len() >= 60 {
                    thread::yield_now();
                }
                a.send_to(&(k as u32).to_be_bytes().repeat(12), ET, to)
                    .unwrap();
            }
        });
        let mut mail = Vec::with_capacity(16);
        let mut next = 0usize;
        let deadline = Instant::now() + Duration::from_secs(30);
        while next < FRAMES {
            inbox.recv(&mut mail, 16, SECOND).unwrap();
            for m in &mail {
                let Mail::Frame { token, frame } = m else {
                    panic!("unexpected {m:?}")
                };
                let k = u32::from_be_bytes(frame.payload()[..4].try_into().unwrap()) as usize;
                assert_eq!((k, *token), (next, next % 16));
                next += 1;
            }
            assert!(Instant::now() < deadline, "{next} of {FRAMES}");
        }
    });
    assert_eq!(relay.stats().rx_queue_full, 0);
}

#[test]
fn a_ready_set_watching_an_attached_conn_reports_it_once_then_not_again() {
    // Its frames go to the inbox, so the set has nothing more to report; attaching lists the
    // conn once, so that a reader waiting on the set finds out (its read fails).
    let relay = relay();
    let a = sender(&relay);
    let cs = conns(&relay, 1);
    let set = ReadySet::new();
    let t = set.add(&cs[0]);
    let inbox = Inbox::new();
    inbox.attach(&cs[0], 0).unwrap();
    let mut ready = Vec::new();
    assert_eq!(set.wait(&mut ready, SECOND).unwrap(), 1);
    assert_eq!(ready, [t]);
    a.send_to(&[1; 46], ET, cs[0].local_mac()).unwrap();
    assert_eq!(
        set.wait(&mut ready, Some(Duration::from_millis(20)))
            .unwrap(),
        0
    );
    let mut mail = Vec::new();
    assert_eq!(inbox.recv(&mut mail, 8, SECOND).unwrap(), 1);
}

#[test]
fn a_close_report_never_overtakes_its_conns_frames_while_the_reader_races() {
    // One thread makes conns, sends each 3 frames and drops it; the reader, taking a few at a
    // time, must see every conn's 3 frames before its close report.
    let relay = relay();
    let a = sender(&relay);
    let inbox = Inbox::with_capacity(4096);
    const CONNS: usize = 3000;
    thread::scope(|s| {
        s.spawn(|| {
            for t in 0..CONNS {
                let c = EtherConn::new(
                    relay.clone(),
                    MacAddr([2, 0, 0, 2, 0, 0]).offset(t as u64),
                    &[],
                    EtherConnConfig::default().ethertypes(&[ET]),
                )
                .unwrap();
                inbox.attach(&c, t).unwrap();
                // Paced by the room in the inbox, so a starved reader loses nothing.
                while inbox.len() > 4096 - 3 {
                    thread::yield_now();
                }
                for k in 0..3u8 {
                    a.send_to(&[k; 46], ET, c.local_mac()).unwrap();
                }
                drop(c);
            }
        });
        let mut frames_of = vec![0u8; CONNS];
        let mut closed = 0;
        let mut mail = Vec::with_capacity(3);
        let deadline = Instant::now() + Duration::from_secs(30);
        while closed < CONNS {
            assert!(Instant::now() < deadline, "{closed} of {CONNS} closes seen");
            inbox.recv(&mut mail, 3, SECOND).unwrap();
            for m in &mail {
                match m {
                    Mail::Frame { token, frame } => {
                        assert_eq!(frame.payload()[0], frames_of[*token], "conn {token}");
                        frames_of[*token] += 1;
                    }
                    Mail::Closed { token } => {
                        assert_eq!(
                            frames_of[*token], 3,
                            "conn {token} closed before its frames"
                        );
                        frames_of[*token] = u8::MAX;
                        closed += 1;
                    }
                }
            }
        }
    });
    assert_eq!(relay.stats().rx_queue_full, 0);
}
