//! One run of one scenario, in a fresh process (`scale --child NAME SEED`): it prints each
//! figure as a line `R name value`, and anything else to tell as `S text`, for the parent to
//! collect.

use etherconn_relay::{EtherConn, RxFrame, RxQueue};
use etherconn_udp::SharingRUdpConn;

use super::dispatch::{
    dispatch_one_thread, dispatch_one_thread_inbox, dispatch_one_thread_to, frames, frames_to,
    shuffled, Comparison, Rate, BATCH, FRAME_SET, WINDOW,
};
use super::fleet::{loopback, register, single_of, unregister, Layout};
use super::rate::{no_loss_rate, LOSS_TOLERANCE};
use super::veth::{self, Reader};
use crate::error::Result;

/// Prints one figure for the parent.
fn result(name: &str, value: f64) {
    println!("R {name} {value}");
}

/// Runs scenario `name` (kind `kind`, the part before the colon) on `layout` once: `frames`
/// frames per in-process measurement, `veth_secs` per veth phase, `seed` for the delivery
/// order.
pub fn run(
    kind: &str,
    name: &str,
    layout: Layout,
    frames: u64,
    veth_secs: f64,
    seed: u64,
) -> Result<()> {
    match kind {
        "reg" => reg(layout),
        "dispatch" => dispatch(layout, frames, seed),
        "profile" | "profile-inbox" => profile(kind, layout, frames, seed),
        "active" => active(layout, frames, seed),
        "veth" | "veth-inbox" => return veth(kind, layout, veth_secs, seed),
        "rate" | "rate-inbox" => return rate(kind, layout, veth_secs, seed),
        _ => println!("S scenario {name} not available here"),
    }
    Ok(())
}

/// Registration time and memory, table sizes, deregistration time.
fn reg(layout: Layout) {
    let relay = loopback();
    let r = register(relay.clone(), layout, None);
    let n = r.fleet.len() as f64;
    result("register_ms", r.elapsed.as_secs_f64() * 1e3);
    result(
        "register_us_per_endpoint",
        r.elapsed.as_secs_f64() * 1e6 / n,
    );
    result("heap_bytes_per_endpoint", r.bytes_per_endpoint());
    if let Some(rss) = r.rss_bytes {
        result("rss_bytes_per_endpoint", rss as f64 / n);
    }
    result(
        "size_of_SharingRUdpConn",
        std::mem::size_of::<SharingRUdpConn>() as f64,
    );
    result("size_of_EtherConn", std::mem::size_of::<EtherConn>() as f64);
    result("size_of_RxQueue", std::mem::size_of::<RxQueue>() as f64);
    result("size_of_RxFrame", std::mem::size_of::<RxFrame>() as f64);
    result("l2_keys", relay.dispatcher().key_count() as f64);
    result("l4_keys", r.fleet.l4_keys() as f64);
    result("unregister_ms", unregister(r.fleet).as_secs_f64() * 1e3);
    assert_eq!(relay.dispatcher().key_count(), 0);
}

/// One endpoint against the fleet, three interleaved pairs per mode.
fn dispatch(layout: Layout, frames: u64, seed: u64) {
    let c = Comparison::new(layout, seed);
    // Warm-up: every queue and buffer touched once.
    c.one_thread(FRAME_SET as u64);
    let emit = |mode: &str, (a, b): (Rate, Rate)| {
        result(&format!("{mode}_1_mfps"), a.mfps());
        result(&format!("{mode}_N_mfps"), b.mfps());
        result(&format!("{mode}_ratio_N_over_1"), b.mfps() / a.mfps());
        if let (Some(x), Some(y)) = (a.cpu_ns(), b.cpu_ns()) {
            result(&format!("{mode}_1_cpu_ns"), x);
            result(&format!("{mode}_N_cpu_ns"), y);
            result(&format!("{mode}_cpu_ratio_1_over_N"), x / y);
        }
        if let (Some(x), Some(y)) = (a.deliver_ns(), b.deliver_ns()) {
            result(&format!("{mode}_1_deliver_ns"), x);
            result(&format!("{mode}_N_deliver_ns"), y);
        }
    };
    for _ in 0..3 {
        emit("one_thread", c.one_thread(frames));
        emit("two_threads", c.two_threads(frames));
    }
    // Last: attaching to an inbox is for good.
    for r in c.one_thread_inbox(frames, 3) {
        emit("inbox_one_thread", r);
    }
}

/// Only the single-thread receive loop on one fleet (read from each endpoint, or through an
/// inbox), for a profiler: `perf record` or `valgrind --tool=cachegrind` on
/// `etherconn-perf scale --child profile:shared-1000x100 1 --frames 200000`.
fn profile(kind: &str, layout: Layout, total: u64, seed: u64) {
    let depth = (layout.endpoints() == 1).then_some(WINDOW as usize);
    let fleet = register(loopback(), layout, depth).fleet;
    fleet.set_nonblocking();
    let f = frames(layout, FRAME_SET);
    let order = shuffled(FRAME_SET, seed);
    let r = if kind == "profile-inbox" {
        let inbox = fleet.inbox(BATCH);
        dispatch_one_thread_inbox(&fleet, &inbox, &f, &order, total, BATCH)
    } else {
        dispatch_one_thread(&fleet, &f, &order, total, BATCH)
    };
    result("profile_cpu_ns", r.cpu_ns().unwrap_or(f64::NAN));
    result("profile_deliver_ns", r.deliver_ns().unwrap_or(f64::NAN));
}

/// Every endpoint registered, traffic to only `k` of them (spread over the fleet): the cost
/// follows the endpoints receiving traffic, not those registered. Queues have the default
/// depth of 4, so batches are 4 frames.
fn active(layout: Layout, total: u64, seed: u64) {
    let many = register(loopback(), layout, None).fleet;
    many.set_nonblocking();
    let n = many.len();
    let order = shuffled(FRAME_SET, seed);
    for k in [1, 16, 256, 1_000, 4_000, 16_000, 50_000, 100_000] {
        let k = k.min(n);
        let dest = |j: usize| (j % k) * (n / k);
        let f = frames_to(layout, FRAME_SET, dest);
        dispatch_one_thread_to(&many, &f, &order, FRAME_SET as u64, 4, dest);
        let r = dispatch_one_thread_to(&many, &f, &order, total, 4, dest);
        result(
            &format!("active_{k:06}_cpu_ns"),
            r.cpu_ns().unwrap_or(f64::NAN),
        );
        result(
            &format!("active_{k:06}_deliver_ns"),
            r.deliver_ns().unwrap_or(f64::NAN),
        );
    }
}

/// Overload over veth: one endpoint, then the fleet, twice.
fn veth(kind: &str, layout: Layout, secs: f64, seed: u64) -> Result<()> {
    let Some(tb) = veth::testbed_as_root(kind)? else {
        return Ok(());
    };
    for _ in 0..2 {
        for (tag, l) in [("1", single_of(layout)), ("N", layout)] {
            let r = veth::phase(&tb, l, Reader::of(kind), secs, seed);
            result(&format!("veth_{tag}_delivered_kpps"), r.delivered_pps / 1e3);
            result(&format!("veth_{tag}_sent_kpps"), r.sent_pps / 1e3);
            result(&format!("veth_{tag}_received_kpps"), r.received_pps / 1e3);
            if let Some(ns) = r.relay_cpu_ns {
                result(&format!("veth_{tag}_relay_cpu_ns"), ns);
            }
            result(
                &format!("veth_{tag}_lost_before_relay"),
                r.lost_before_relay as f64,
            );
            result(&format!("veth_{tag}_relay_drops"), r.relay_drops as f64);
            result(&format!("veth_{tag}_rx_buffers"), r.rx_buffers as f64);
        }
    }
    Ok(())
}

/// RFC 2544 throughput over veth: one endpoint, then the fleet; 7 search steps of a third of
/// `secs` each.
fn rate(kind: &str, layout: Layout, secs: f64, seed: u64) -> Result<()> {
    let Some(tb) = veth::testbed_as_root(kind)? else {
        return Ok(());
    };
    for (tag, l) in [("1", single_of(layout)), ("N", layout)] {
        let r = no_loss_rate(
            &tb,
            l,
            Reader::of(kind),
            secs / 3.0,
            7,
            LOSS_TOLERANCE,
            seed,
        );
        result(&format!("rate_{tag}_no_loss_kpps"), r.rate_pps / 1e3);
        result(&format!("rate_{tag}_loss_ppm"), r.loss * 1e6);
        result(&format!("rate_{tag}_max_sent_kpps"), r.max_sent_pps / 1e3);
        result(
            &format!("rate_{tag}_sender_bound"),
            f64::from(u8::from(r.sender_bound)),
        );
        if let Some(ns) = r.relay_cpu_ns {
            result(&format!("rate_{tag}_relay_cpu_ns"), ns);
        }
    }
    Ok(())
}
