//! In-process receive throughput: pre-built frames delivered through a loopback relay's
//! dispatcher and read back by the application, one endpoint against many, in one thread or
//! with a relay thread beside the reader.

use std::hint::spin_loop;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::MacAddr;
use etherconn_relay::{Inbox, Mail, RelayStats};

use super::fleet::{loopback, register, single_of, vlans, Fleet, Layout};
use super::procfs::thread_cpu;

/// UDP payload bytes of every test frame (78-byte frames with the VLAN tag).
pub const PAYLOAD: usize = 32;

/// Pre-built frames, all the same length, frame `j` addressed to endpoint `j % endpoints`.
pub struct Frames {
    data: Vec<u8>,
    len: usize,
}

impl Frames {
    /// Frame `j`.
    #[inline]
    pub fn get(&self, j: usize) -> &[u8] {
        &self.data[j * self.len..(j + 1) * self.len]
    }
}

/// `count` distinct frames to the endpoints of `layout`, round-robin (frame `j` to endpoint
/// `j % endpoints`); sources and payloads vary so that every frame is different bytes, whatever
/// the number of endpoints.
pub fn frames(layout: Layout, count: usize) -> Frames {
    let n = layout.endpoints();
    frames_to(layout, count, |j| j % n)
}

/// `count` distinct frames, frame `j` to endpoint `dest(j)` of `layout`.
pub fn frames_to(layout: Layout, count: usize, dest: impl Fn(usize) -> usize) -> Frames {
    let vl = vlans();
    let mut data = Vec::new();
    let mut len = 0;
    let mut buf = [0u8; 256];
    for j in 0..count {
        let payload = [j as u8; PAYLOAD];
        let f = UdpFrame {
            src_mac: MacAddr([0x02, 0xee, 0, 0, 0, 1]),
            dst_mac: layout.mac(dest(j)),
            vlans: &vl,
            src: SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 1024 + (j % 60_000) as u16)),
            dst: layout.addr(dest(j)),
            ttl: 64,
            dscp: 0,
            payload: &payload,
        };
        len = build_udp_frame(&mut buf, &f).unwrap();
        data.extend_from_slice(&buf[..len]);
    }
    Frames { data, len }
}

/// A random permutation of `0..count` (xorshift, fixed seed): the order frames are delivered in.
pub fn shuffled(count: usize, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..count as u32).collect();
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// One throughput measurement.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Frames delivered and received.
    pub frames: u64,
    /// Wall time.
    pub wall: Duration,
    /// CPU time of the delivering thread (`None` without `/proc`).
    pub cpu: Option<Duration>,
    /// Of the wall time, the part spent in `Dispatcher::deliver` (single-thread mode only).
    pub deliver: Option<Duration>,
}

impl Rate {
    /// Millions of frames per second, wall clock.
    pub fn mfps(&self) -> f64 {
        self.frames as f64 / self.wall.as_secs_f64() / 1e6
    }

    /// Delivering thread's CPU nanoseconds per frame.
    pub fn cpu_ns(&self) -> Option<f64> {
        self.cpu.map(|c| c.as_nanos() as f64 / self.frames as f64)
    }

    /// Nanoseconds per frame inside `deliver` (single-thread mode).
    pub fn deliver_ns(&self) -> Option<f64> {
        self.deliver
            .map(|d| d.as_nanos() as f64 / self.frames as f64)
    }
}

/// The relay's drop counters that grew from `before` to `after`, by name: every way a frame
/// the relay was offered can fail to reach an endpoint's queue.
pub fn relay_drops(before: &RelayStats, after: &RelayStats) -> [(&'static str, u64); 5] {
    [
        ("rx_queue_full", after.rx_queue_full - before.rx_queue_full),
        ("rx_no_buffer", after.rx_no_buffer - before.rx_no_buffer),
        ("rx_l4_miss", after.rx_l4_miss - before.rx_l4_miss),
        ("rx_invalid", after.rx_invalid - before.rx_invalid),
        ("rx_miss", after.rx_miss - before.rx_miss),
    ]
}

fn check_counters(before: RelayStats, after: RelayStats, frames: u64) {
    for (name, n) in relay_drops(&before, &after) {
        assert_eq!(n, 0, "{name} grew by {n}");
    }
    assert_eq!(after.rx_delivered - before.rx_delivered, frames);
}

/// One thread plays relay and application in turn: it delivers `batch` frames through the
/// relay's `Dispatcher::deliver` (classification, key lookup, L4 demultiplexing, queue push),
/// then receives each of them from its endpoint (`recv_from` into a buffer); `total` frames in
/// `order`, cycling.
///
/// Panics if a frame is lost (the queues must hold a batch: depth ≥ `batch` for one endpoint).
pub fn dispatch_one_thread(
    fleet: &Fleet,
    frames: &Frames,
    order: &[u32],
    total: u64,
    batch: usize,
) -> Rate {
    let n = fleet.len();
    dispatch_one_thread_to(fleet, frames, order, total, batch, |j| j % n)
}

/// [`dispatch_one_thread`] with frame `j` addressed to endpoint `dest(j)`.
pub fn dispatch_one_thread_to(
    fleet: &Fleet,
    frames: &Frames,
    order: &[u32],
    total: u64,
    batch: usize,
    dest: impl Fn(usize) -> usize,
) -> Rate {
    let mut buf = [0u8; 2048];
    deliver_and_receive(fleet, frames, order, total, batch, |chunk| {
        for &j in chunk {
            let got = fleet.take(dest(j as usize), &mut buf);
            assert!(got.is_some(), "frame {j} was not delivered");
        }
    })
}

/// [`dispatch_one_thread`] with every endpoint attached to `inbox` (token = endpoint index):
/// each batch delivered, then taken from the inbox with one `recv` and copied out, checking that
/// every frame came under its endpoint's token.
pub fn dispatch_one_thread_inbox(
    fleet: &Fleet,
    inbox: &Inbox,
    frames: &Frames,
    order: &[u32],
    total: u64,
    batch: usize,
) -> Rate {
    let n = fleet.len();
    let mut buf = [0u8; 2048];
    let mut mail = Vec::with_capacity(batch);
    deliver_and_receive(fleet, frames, order, total, batch, |chunk| {
        let got = inbox
            .recv(&mut mail, batch, Some(Duration::ZERO))
            .expect("recv");
        assert_eq!(got, chunk.len(), "frames missing from the inbox");
        for (m, &j) in mail.iter().zip(chunk) {
            let Mail::Frame { token, frame } = m else {
                panic!("unexpected {m:?}");
            };
            assert_eq!(*token, j as usize % n, "frame {j} under the wrong token");
            etherconn_udp::read_datagram(frame, &mut buf).expect("a UDP datagram");
        }
    })
}

/// The single-thread loop: `total` frames in `order`, cycling, `batch` at a time delivered
/// through the relay's dispatcher and then handed (as frame indices) to `receive`; checks that
/// the relay lost none.
fn deliver_and_receive(
    fleet: &Fleet,
    frames: &Frames,
    order: &[u32],
    total: u64,
    batch: usize,
    mut receive: impl FnMut(&[u32]),
) -> Rate {
    let d = fleet.relay.dispatcher();
    let before = d.stats();
    let mut in_deliver = Duration::ZERO;
    let mut done = 0u64;
    let mut at = 0usize;
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    while done < total {
        let end = (at + batch).min(order.len());
        let chunk = &order[at..end];
        at = if end == order.len() { 0 } else { end };
        let t = Instant::now();
        // As a relay thread delivers what its receive ring handed over: in one batch.
        let mut delivery = d.delivery();
        for &j in chunk {
            delivery.push(frames.get(j as usize), None, false);
        }
        drop(delivery);
        in_deliver += t.elapsed();
        receive(chunk);
        done += chunk.len() as u64;
    }
    let wall = t0.elapsed();
    let cpu = thread_cpu().zip(cpu0).map(|(b, a)| b - a);
    check_counters(before, d.stats(), done);
    Rate {
        frames: done,
        wall,
        cpu,
        deliver: Some(in_deliver),
    }
}

/// A relay thread delivers frames in `order` while the calling thread receives them from their
/// endpoints in the same order; the relay stays at most `window` frames ahead (as a receive ring
/// would hold it back). `cpu` is the relay thread's.
pub fn dispatch_two_threads(
    fleet: &Fleet,
    frames: &Frames,
    order: &[u32],
    total: u64,
    window: u64,
) -> Rate {
    let d = fleet.relay.dispatcher();
    let n = fleet.len();
    let consumed = AtomicU64::new(0);
    let before = d.stats();
    let t0 = Instant::now();
    let cpu = std::thread::scope(|s| {
        let relay = s.spawn(|| {
            let cpu0 = thread_cpu();
            let mut at = 0;
            // Delivered in batches, as a relay thread delivers its ring's blocks; a batch is
            // flushed before waiting for the receiver, which may be waiting for its frames.
            let mut batch = d.delivery();
            for produced in 0..total {
                let mut spins = 0u32;
                while produced - consumed.load(Ordering::Acquire) >= window {
                    batch.flush();
                    spins += 1;
                    if spins % 1024 == 0 {
                        std::thread::yield_now();
                    } else {
                        spin_loop();
                    }
                }
                batch.push(frames.get(order[at] as usize), None, false);
                at += 1;
                if at == order.len() {
                    at = 0;
                }
            }
            drop(batch);
            thread_cpu().zip(cpu0).map(|(b, a)| b - a)
        });
        let mut buf = [0u8; 2048];
        let mut at = 0;
        for k in 0..total {
            let e = order[at] as usize % n;
            at += 1;
            if at == order.len() {
                at = 0;
            }
            let mut spins = 0u32;
            loop {
                if fleet.take(e, &mut buf).is_some() {
                    break;
                }
                spins += 1;
                assert!(spins < 50_000_000, "frame {k} never arrived");
                if spins % 1024 == 0 {
                    std::thread::yield_now();
                } else {
                    spin_loop();
                }
            }
            consumed.store(k + 1, Ordering::Release);
        }
        relay.join().expect("relay thread")
    });
    let wall = t0.elapsed();
    check_counters(before, d.stats(), total);
    Rate {
        frames: total,
        wall,
        cpu,
        deliver: None,
    }
}

/// Distinct frames (and so distinct sources) per throughput run: one per endpoint of the largest
/// fleet, the same count for the one-endpoint fleet.
pub const FRAME_SET: usize = 100_000;

/// Frames per batch in single-thread mode.
pub const BATCH: usize = 32;

/// How far the relay thread may run ahead in two-thread mode.
pub const WINDOW: u64 = 1024;

/// Two fleets on their own relays, with frames and delivery order, ready to compare.
pub struct Comparison {
    /// One endpoint.
    pub one: Fleet,
    /// Many endpoints.
    pub many: Fleet,
    /// Frames to the one endpoint.
    pub frames_one: Frames,
    /// Frames to the many endpoints, round-robin.
    pub frames_many: Frames,
    /// Delivery order (a permutation of the frame indices).
    pub order: Vec<u32>,
}

impl Comparison {
    /// Registers one endpoint and `layout` on two loopback relays.
    pub fn new(layout: Layout, seed: u64) -> Comparison {
        let one = register(loopback(), single_of(layout), Some(WINDOW as usize)).fleet;
        let many = register(loopback(), layout, None).fleet;
        one.set_nonblocking();
        many.set_nonblocking();
        Comparison {
            frames_one: frames(one.layout, FRAME_SET),
            frames_many: frames(layout, FRAME_SET),
            order: shuffled(FRAME_SET, seed),
            one,
            many,
        }
    }

    /// Single-thread mode, one endpoint then many: `(one, many)`.
    pub fn one_thread(&self, total: u64) -> (Rate, Rate) {
        let a = dispatch_one_thread(&self.one, &self.frames_one, &self.order, total, BATCH);
        let b = dispatch_one_thread(&self.many, &self.frames_many, &self.order, total, BATCH);
        (a, b)
    }

    /// Single-thread mode reading through an inbox (every endpoint attached to a fresh one),
    /// one endpoint then many, `rounds` times after a warm-up: `(one, many)` each. Endpoints
    /// stay attached afterwards (their own reads then fail), so this goes last.
    pub fn one_thread_inbox(&self, total: u64, rounds: usize) -> Vec<(Rate, Rate)> {
        let (inbox_one, inbox_many) = (self.one.inbox(BATCH), self.many.inbox(BATCH));
        let run = |total: u64| {
            let go = |fleet: &Fleet, inbox: &Inbox, frames: &Frames| {
                dispatch_one_thread_inbox(fleet, inbox, frames, &self.order, total, BATCH)
            };
            (
                go(&self.one, &inbox_one, &self.frames_one),
                go(&self.many, &inbox_many, &self.frames_many),
            )
        };
        run(FRAME_SET as u64);
        (0..rounds).map(|_| run(total)).collect()
    }

    /// Two-thread mode, one endpoint then many: `(one, many)`.
    pub fn two_threads(&self, total: u64) -> (Rate, Rate) {
        let a = dispatch_two_threads(&self.one, &self.frames_one, &self.order, total, WINDOW);
        let b = dispatch_two_threads(&self.many, &self.frames_many, &self.order, total, WINDOW);
        (a, b)
    }
}

/// Receive throughput with 100,000 endpoints against one, in process. The bounds are generous
/// so that `cargo test` (debug build, on a busy CI machine) is not flaky; they still fail on an
/// order-of-magnitude regression. The strict target (within 10%) is what `scale` checks in a
/// release build, whose figures are in `docs/scale.md`.
///
/// The tests take a lock so that they run one at a time: timings should not share two cores
/// with another of them.
#[cfg(test)]
mod tests {
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use super::super::fleet::SHARED_1000X100;
    use super::super::summary;
    use super::*;

    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn median(mut v: Vec<f64>) -> f64 {
        summary::median(&mut v)
    }

    /// Frames per measurement: debug code is ten times slower.
    const TEST_FRAMES: u64 = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };

    /// Nanoseconds per frame: CPU time of the thread where available, less disturbed by other
    /// load than the wall clock.
    fn cost(r: &Rate) -> f64 {
        r.cpu_ns().unwrap_or(1e9 / (r.mfps() * 1e6))
    }

    #[test]
    fn receive_throughput_with_100k_endpoints() {
        let _g = serial();
        let frames = TEST_FRAMES;
        let c = Comparison::new(SHARED_1000X100, 17);
        assert_eq!(c.many.len(), 100_000);
        c.one_thread(FRAME_SET as u64 / 4);
        let (mut one, mut many) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let (a, b) = c.one_thread(frames);
            one.push(cost(&a));
            many.push(cost(&b));
        }
        let (one, many) = (median(one), median(many));
        let ratio = one / many;
        println!(
            "receive cost per frame (deliver + recv_from): {one:.0} ns with 1 endpoint, {many:.0} \
             ns with 100,000: throughput ratio {ratio:.3}"
        );
        // The target is 0.9 (release). Reading each endpoint's own queue it is missed: with
        // 100,000 endpoints receiving, every frame touches cache lines of per-endpoint state
        // that is no longer in cache (see docs/scale.md), which gives ~0.35 in release and ~0.5
        // in debug here, where relay and reader share one thread and no kernel work dilutes it.
        // (Through an `Inbox` it is met over veth; the test below.) The bound only catches a
        // regression beyond that, such as dispatch cost growing with the number of registered
        // endpoints.
        let bound = if cfg!(debug_assertions) { 0.3 } else { 0.15 };
        assert!(
            ratio >= bound,
            "throughput with 100,000 endpoints is {ratio:.3} of that with one (bound {bound})"
        );
    }

    #[test]
    fn registered_but_idle_endpoints_cost_no_throughput() {
        // 100,000 endpoints registered, traffic to 16 of them: the same cost as one endpoint
        // alone, i.e. dispatch does not slow down with the number of endpoints registered, only
        // with the number receiving traffic at once (their state must come from memory).
        let _g = serial();
        let frames = TEST_FRAMES;
        let c = Comparison::new(SHARED_1000X100, 23);
        let n = c.many.len();
        let k = 16;
        let dest = |j: usize| (j % k) * (n / k);
        let f = frames_to(c.many.layout, FRAME_SET, dest);
        let order = shuffled(FRAME_SET, 23);
        let (mut one, mut active) = (Vec::new(), Vec::new());
        dispatch_one_thread_to(&c.many, &f, &order, 50_000, 4, dest);
        for _ in 0..3 {
            let a = dispatch_one_thread(&c.one, &c.frames_one, &c.order, frames / 2, 4);
            let b = dispatch_one_thread_to(&c.many, &f, &order, frames / 2, 4, dest);
            one.push(cost(&a));
            active.push(cost(&b));
        }
        let (one, active) = (median(one), median(active));
        println!(
            "receive cost per frame: {one:.0} ns with 1 endpoint, {active:.0} ns to 16 of 100,000"
        );
        assert!(
            one / active >= 0.7,
            "16 active endpoints among 100,000 cost {active:.0} ns per frame against {one:.0} ns"
        );
    }

    #[test]
    fn an_inbox_hands_over_frames_for_100k_endpoints_under_their_tokens() {
        // Every endpoint attached to one inbox: each batch of frames comes out in order under
        // the right endpoint's token (checked by `dispatch_one_thread_inbox`), with nothing
        // lost, and the cost per frame stays within a generous bound of one endpoint's (the
        // strict figures, over veth, are the `veth-inbox:` and `rate-inbox:` scenarios).
        let _g = serial();
        let frames = TEST_FRAMES;
        let c = Comparison::new(SHARED_1000X100, 29);
        let runs = c.one_thread_inbox(frames, 3);
        let one = median(runs.iter().map(|(a, _)| cost(a)).collect());
        let many = median(runs.iter().map(|(_, b)| cost(b)).collect());
        let ratio = one / many;
        println!(
            "receive cost per frame through an inbox (deliver + recv + copy): {one:.0} ns with 1 \
             endpoint, {many:.0} ns with 100,000: ratio {ratio:.3}"
        );
        // Release: 0.5-0.6 on the 2-vCPU test machine (docs/scale.md), against ~0.35 reading
        // each endpoint. The bound catches a regression to per-endpoint costs.
        let bound = if cfg!(debug_assertions) { 0.3 } else { 0.4 };
        assert!(
            ratio >= bound,
            "through an inbox, 100,000 endpoints cost {ratio:.3} of one endpoint's rate (bound \
             {bound})"
        );
    }
}
