//! RFC 2544-style throughput over the veth pair (the `rate:` scenarios): a paced sender and a
//! binary search for the highest rate at which the application receives all but
//! [`LOSS_TOLERANCE`] of the frames.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_rawsock::{PacketSocket, SocketConfig, TxBatcher, TxConfig};
use etherconn_relay::DispatcherConfig;
use etherconn_testbed::Testbed;

use super::dispatch::Frames;
use super::fleet::Layout;
use super::veth::{Reader, Rig};

/// The loss a trial of the throughput search may show and still pass.
pub const LOSS_TOLERANCE: f64 = 0.001;

/// Sends `frames` in `order` from namespace `a` at `rate` frames per second (or as fast as
/// it can, for an infinite rate) for `secs`; returns the frames the kernel took and the
/// time from the first send to the last.
///
/// The pace is kept on average: whatever is due goes out in batches of up to 64, and the
/// sender sleeps while nothing is (sleeps last at least the 50 µs timer slack, so at high
/// rates frames leave in bursts of up to ~100 at the sender's peak rate; both fleets are
/// offered the same bursts).
fn paced_sender(
    tb: &Testbed,
    frames: Arc<Frames>,
    order: Arc<Vec<u32>>,
    rate: f64,
    secs: f64,
) -> std::thread::JoinHandle<std::io::Result<(u64, Duration)>> {
    let ifname = tb.a_if.clone();
    tb.a.spawn_thread_in(move || {
        let sock = PacketSocket::open(&ifname, &SocketConfig::send_only()).expect("socket");
        let mut tx = TxBatcher::new(&TxConfig::default()).expect("tx batcher");
        let batch = TxConfig::DEFAULT_BATCH as u64;
        let (mut at, mut sent, mut offered) = (0, 0u64, 0u64);
        let t0 = Instant::now();
        let end = Duration::from_secs_f64(secs);
        loop {
            let now = t0.elapsed();
            if now >= end {
                break;
            }
            let due = if rate.is_infinite() {
                u64::MAX
            } else {
                (now.as_secs_f64() * rate) as u64
            };
            if due <= offered {
                let next = Duration::from_secs_f64((offered + 32) as f64 / rate);
                std::thread::sleep(next.saturating_sub(now).min(end - now));
                continue;
            }
            for _ in 0..(due - offered).min(batch) {
                tx.push(frames.get(order[at] as usize)).expect("frame fits");
                at = (at + 1) % order.len();
                offered += 1;
            }
            // A hard error would lose the count of a partly sent batch and make the
            // trial's loss look smaller: fail instead.
            sent += tx.flush(&sock).expect("send") as u64;
        }
        (sent, t0.elapsed())
    })
}

/// What the search found for one fleet.
pub struct NoLossRate {
    /// The highest sending rate (frames the kernel took per second of sending) at which the
    /// consumer received all but `tolerance` of the frames sent.
    pub rate_pps: f64,
    /// Loss at that rate (fraction of the frames sent).
    pub loss: f64,
    /// Relay receive thread CPU ns per frame offered to it, at that rate.
    pub relay_cpu_ns: Option<f64>,
    /// The sender's unpaced rate (the upper bound of the search).
    pub max_sent_pps: f64,
    /// Whether the fleet kept up with the unpaced sender: the rate is then the sender's
    /// limit, and the fleet's own is somewhere above it.
    pub sender_bound: bool,
}

/// Sets `stop` when dropped, so that a panic in the measuring thread still ends the
/// consumer thread of the scope (which would otherwise keep the scope, and the run, alive).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// RFC 2544-style throughput: the highest offered rate at which (almost) no frame is lost
/// between the sender and the application. One unpaced trial first: if the fleet keeps up
/// with it, that rate is the answer (sender-bound); otherwise a binary search of `steps`
/// paced trials between 0 and it. Every trial lasts `secs`; it passes when the consumer
/// received at least `1 - tolerance` of the frames the kernel took from the sender, counted
/// after the relay and the consumer have gone quiet.
pub fn no_loss_rate(
    tb: &Testbed,
    layout: Layout,
    reader: Reader,
    secs: f64,
    steps: usize,
    tolerance: f64,
    seed: u64,
) -> NoLossRate {
    // The single endpoint gets a queue as deep as the relay's buffer pool, so that it can
    // ride out a scheduling gap of the consumer as well as 100,000 queues of 4 can (the
    // pool bounds both): its best throughput is the baseline. An inbox is as deep as that
    // queue, for the same reason.
    let pool = DispatcherConfig::default().rx_buffers;
    let depth = (layout.endpoints() == 1).then_some(pool);
    let rig = Rig::new(tb, layout, depth, reader, pool, seed);
    let stop = AtomicBool::new(false);
    let received = AtomicU64::new(0);
    let relay = &rig.relay;
    let result = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| rig.source.consume(&rig.fleet, &stop, &received));
        // One trial: (loss fraction, sent pps, relay CPU ns per frame offered).
        let trial = |rate: f64| {
            let r0 = received.load(Ordering::Relaxed);
            let o0 = relay.stats().rx_offered;
            let c0 = rig.relay_cpu();
            let tx = paced_sender(tb, rig.frames.clone(), rig.order.clone(), rate, secs);
            let (sent, took) = tx.join().expect("sender").expect("enter namespace a");
            // Let the relay and the consumer finish what is in flight: both counts still
            // for 100 ms.
            let mut last = (received.load(Ordering::Relaxed), relay.stats().rx_offered);
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let now = (received.load(Ordering::Relaxed), relay.stats().rx_offered);
                if now == last {
                    break;
                }
                last = now;
            }
            let c1 = rig.relay_cpu();
            let got = last.0 - r0;
            let offered = last.1 - o0;
            let loss = sent.saturating_sub(got) as f64 / sent.max(1) as f64;
            let cpu = c0
                .zip(c1)
                .map(|(a, b)| (b - a).as_nanos() as f64 / offered.max(1) as f64);
            (loss, sent as f64 / took.as_secs_f64(), cpu)
        };
        let (loss, max_sent_pps, cpu) = trial(f64::INFINITY);
        if loss <= tolerance {
            return NoLossRate {
                rate_pps: max_sent_pps,
                loss,
                relay_cpu_ns: cpu,
                max_sent_pps,
                sender_bound: true,
            };
        }
        let (mut lo, mut hi) = (0.0, max_sent_pps);
        let mut best = NoLossRate {
            rate_pps: 0.0,
            loss: 1.0,
            relay_cpu_ns: None,
            max_sent_pps,
            sender_bound: false,
        };
        for _ in 0..steps {
            let rate = (lo + hi) / 2.0;
            let (loss, sent_pps, cpu) = trial(rate);
            if loss <= tolerance {
                lo = rate;
                best.rate_pps = sent_pps;
                best.loss = loss;
                best.relay_cpu_ns = cpu;
            } else {
                hi = rate;
            }
        }
        best
    });
    rig.finish();
    result
}
