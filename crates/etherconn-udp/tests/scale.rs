//! Scale checks (DESIGN.md section 5, issue 4 "Scale"), on a loopback relay: registering
//! 100,000 `SharingRUdpConn`s (and 10,000 `EtherConn`s), the memory an idle endpoint costs, and
//! receive throughput with 100,000 endpoints against one.
//!
//! The bounds here are generous so that `cargo test` (debug build, on a busy CI machine) is not
//! flaky; they still fail on an order-of-magnitude regression. The strict targets (under 1 s,
//! under 4 KiB, within 10%) are checked by `examples/scale.rs` in a release build, whose figures
//! are in `docs/scale.md`. The memory bound is exact in any build: a counting global allocator
//! (in the example file, included below) counts the heap bytes registration leaves live.
//!
//! The tests take a lock so that they run one at a time: the allocator counts every thread,
//! and timings should not share two cores with another test.

#[allow(dead_code)]
#[path = "../examples/scale.rs"]
mod scale;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use scale::{Comparison, Layout, SHARED_1000X100};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The registration bound: the target is 1 s in release; debug code is several times slower and
/// CI machines are shared.
const REGISTER_BOUND: Duration = if cfg!(debug_assertions) {
    Duration::from_secs(10)
} else {
    Duration::from_secs(3)
};

#[test]
fn registering_100k_sharing_conns_is_fast_and_small() {
    let _g = serial();
    for layout in [
        SHARED_1000X100,
        Layout::OneMacIps(100_000),
        Layout::OneMacPorts(100_000),
    ] {
        let relay = scale::loopback();
        let r = scale::register(relay.clone(), layout, None);
        let per = r.bytes_per_endpoint();
        // (No RSS figure here: after the first layout, the allocator reuses freed pages. The
        // example runs each layout in a fresh process for that.)
        println!(
            "{}: registered in {:?}, {per:.0} heap bytes per idle SharingRUdpConn",
            layout.describe(),
            r.elapsed,
        );
        assert_eq!(r.fleet.len(), 100_000);
        assert_eq!(r.fleet.l4_keys(), 100_000);
        assert_eq!(
            relay.dispatcher().key_count(),
            3 * layout.l2_endpoints(),
            "ARP, IPv4 and IPv6 keys per L2 endpoint"
        );
        assert!(
            r.elapsed < REGISTER_BOUND,
            "{}: 100,000 registrations took {:?}",
            layout.describe(),
            r.elapsed
        );
        // Counted exactly, so the target itself, whatever the build.
        assert!(
            per < 4096.0,
            "{}: an idle SharingRUdpConn costs {per:.0} heap bytes",
            layout.describe()
        );
        let t = scale::unregister(r.fleet);
        println!("  unregistered in {t:?}");
        assert_eq!(relay.dispatcher().key_count(), 0);
        assert!(t < REGISTER_BOUND, "unregistering took {t:?}");
    }
}

#[test]
fn registering_10k_ether_conns() {
    let _g = serial();
    let relay = scale::loopback();
    let r = scale::register(relay.clone(), Layout::EtherConns(10_000), None);
    let per = r.bytes_per_endpoint();
    println!(
        "10,000 EtherConns: registered in {:?}, {per:.0} heap bytes per idle EtherConn",
        r.elapsed
    );
    assert_eq!(relay.dispatcher().key_count(), 30_000);
    assert!(r.elapsed < REGISTER_BOUND, "took {:?}", r.elapsed);
    // An idle EtherConn preallocates its 64-slot queue of ~250-byte frames: about 17 KB today
    // (docs/scale.md). This only guards against growth beyond that.
    assert!(
        per < 24.0 * 1024.0,
        "an idle EtherConn costs {per:.0} bytes"
    );
    drop(r.fleet);
    assert_eq!(relay.dispatcher().key_count(), 0);
}

fn median(mut v: Vec<f64>) -> f64 {
    scale::median(&mut v)
}

#[test]
fn receive_throughput_with_100k_endpoints() {
    let _g = serial();
    let frames: u64 = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let c = Comparison::new(SHARED_1000X100, 17);
    assert_eq!(c.many.len(), 100_000);
    c.one_thread(scale::FRAME_SET as u64 / 4);
    let (mut one, mut many) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (a, b) = c.one_thread(frames);
        // CPU time of the thread where available: less disturbed by other load than the wall
        // clock.
        let cost = |r: scale::Rate| r.cpu_ns().unwrap_or(1e9 / (r.mfps() * 1e6));
        one.push(cost(a));
        many.push(cost(b));
    }
    let (one, many) = (median(one), median(many));
    let ratio = one / many;
    println!(
        "receive cost per frame (deliver + recv_from): {one:.0} ns with 1 endpoint, {many:.0} ns \
         with 100,000: throughput ratio {ratio:.3}"
    );
    // The target is 0.9 (release). Reading each endpoint's own queue it is missed: with
    // 100,000 endpoints receiving, every frame touches cache lines of per-endpoint state that
    // is no longer in cache (see docs/scale.md), which gives ~0.35 in release and ~0.5 in debug
    // here, where relay and reader share one thread and no kernel work dilutes it. (Through an
    // `Inbox` it is met over veth; the test below.) The bound only catches a regression beyond
    // that, such as dispatch cost growing with the number of registered endpoints.
    let bound = if cfg!(debug_assertions) { 0.3 } else { 0.15 };
    assert!(
        ratio >= bound,
        "throughput with 100,000 endpoints is {ratio:.3} of that with one (bound {bound})"
    );
}

#[test]
fn registered_but_idle_endpoints_cost_no_throughput() {
    // 100,000 endpoints registered, traffic to 16 of them: the same cost as one endpoint alone,
    // i.e. dispatch does not slow down with the number of endpoints registered, only with the
    // number receiving traffic at once (their state must come from memory).
    let _g = serial();
    let frames: u64 = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let c = Comparison::new(SHARED_1000X100, 23);
    let n = c.many.len();
    let k = 16;
    let dest = |j: usize| (j % k) * (n / k);
    let f = scale::frames_to(c.many.layout, scale::FRAME_SET, dest);
    let order = scale::shuffled(scale::FRAME_SET, 23);
    let (mut one, mut active) = (Vec::new(), Vec::new());
    scale::dispatch_one_thread_to(&c.many, &f, &order, 50_000, 4, dest);
    for _ in 0..3 {
        let a = scale::dispatch_one_thread(&c.one, &c.frames_one, &c.order, frames / 2, 4);
        let b = scale::dispatch_one_thread_to(&c.many, &f, &order, frames / 2, 4, dest);
        let cost = |r: scale::Rate| r.cpu_ns().unwrap_or(1e9 / (r.mfps() * 1e6));
        one.push(cost(a));
        active.push(cost(b));
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
    // Every endpoint attached to one inbox: each batch of frames comes out in order under the
    // right endpoint's token (checked by `dispatch_one_thread_inbox`), with nothing lost, and
    // the cost per frame stays within a generous bound of one endpoint's (the strict figures,
    // over veth, are the example's `veth-inbox:` and `rate-inbox:` scenarios).
    let _g = serial();
    let frames: u64 = if cfg!(debug_assertions) {
        100_000
    } else {
        1_000_000
    };
    let c = Comparison::new(SHARED_1000X100, 29);
    let runs = c.one_thread_inbox(frames, 3);
    let cost = |r: &scale::Rate| r.cpu_ns().unwrap_or(1e9 / (r.mfps() * 1e6));
    let one = median(runs.iter().map(|(a, _)| cost(a)).collect());
    let many = median(runs.iter().map(|(_, b)| cost(b)).collect());
    let ratio = one / many;
    println!(
        "receive cost per frame through an inbox (deliver + recv + copy): {one:.0} ns with 1 \
         endpoint, {many:.0} ns with 100,000: ratio {ratio:.3}"
    );
    // Release: 0.5-0.6 on the 2-vCPU test machine (docs/scale.md), against ~0.35 reading each
    // endpoint. The bound catches a regression to per-endpoint costs.
    let bound = if cfg!(debug_assertions) { 0.3 } else { 0.4 };
    assert!(
        ratio >= bound,
        "through an inbox, 100,000 endpoints cost {ratio:.3} of one endpoint's rate (bound {bound})"
    );
}
