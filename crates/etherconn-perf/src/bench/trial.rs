//! One measurement: start the receiver and the sender, warm up, count a window, drain, and
//! turn what the threads and the kernel counted into a [`Measurement`].

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use etherconn_core::wire::VlanTag;
use etherconn_testbed::{Side, Testbed};

use super::movers::{receiver, sender, RxReport, Shared, TxReport};
use super::plan::{Backend, Case, DST_PORT, RX_IP, RX_MAC, SRC_PORT, TX_IP, TX_MAC};
use super::progress::Progress;
use crate::addr::{describe_vlans, wire_len};
use crate::cli::BenchArgs;
use crate::error::{Failure, Result};
use crate::kstats::PathCounters;
use crate::l2udp::L2UdpConfig;
use crate::report::{CpuSnapshot, Measurement};
use crate::sys;
use crate::taskstat::{self, ThreadClock};

/// Runs one measurement; `None` when a signal stopped it.
pub(super) fn measure(
    tb: &Testbed,
    args: &BenchArgs,
    vlans: &[VlanTag],
    case: Case,
    progress: &mut Progress,
) -> Result<Option<Measurement>> {
    let tagged = case.backend != Backend::Kernel;
    let vlans: Vec<VlanTag> = if tagged { vlans.to_vec() } else { Vec::new() };
    let label = format!(
        "{} {} B x{}{}",
        case.name(),
        case.payload,
        case.endpoints,
        if vlans.is_empty() {
            String::new()
        } else {
            format!(" vlan {}", describe_vlans(&vlans))
        }
    );
    let queue_depth = args.queue_depth.map_or_else(
        || L2UdpConfig::default_queue_depth(case.endpoints),
        |d| d as usize,
    );
    let l2 = |base_mac, base_ip, port, pcap| L2UdpConfig {
        base_mac,
        base_ip,
        endpoints: case.endpoints,
        port,
        vlans: vlans.clone(),
        neighbours: false,
        queue_depth,
        tx_path: args.tx_path,
        pcap,
        ring: args.ring.config(),
        relay_threads: args.relay_threads as usize,
        relay_cpus: relay_cpus(args),
    };
    // The receiving relay captures: the rate measured is the receive rate.
    let rx_pcap = args.pcap.clone().filter(|_| case.capture);
    let rx_cfg = l2(RX_MAC, RX_IP.into(), DST_PORT, rx_pcap);
    let tx_cfg = l2(TX_MAC, TX_IP.into(), SRC_PORT, None);
    let shared = Arc::new(Shared::default());

    let (ready_tx, ready_rx) = mpsc::channel();
    let rx_thread = {
        let (shared, ready, ifname) = (Arc::clone(&shared), ready_tx.clone(), tb.b_if.clone());
        let cpu = args.rx_cpu;
        tb.b.spawn_thread_in(move || receiver(case, &ifname, &rx_cfg, cpu, &shared, &ready))
    };
    let mut threads = Threads {
        shared: Arc::clone(&shared),
        rx: Some(rx_thread),
        tx: None,
    };
    if !threads.wait_ready(&ready_rx, "receiver")? {
        return Ok(None);
    }
    let tx_thread = {
        let (shared, ready, ifname) = (Arc::clone(&shared), ready_tx, tb.a_if.clone());
        let (cpu, rate) = (args.tx_cpu, args.rate);
        tb.a.spawn_thread_in(move || sender(case, &ifname, &tx_cfg, cpu, rate, &shared, &ready))
    };
    threads.tx = Some(tx_thread);
    if !threads.wait_ready(&ready_rx, "sender")? {
        return Ok(None);
    }

    let path0 = PathCounters::take(tb);
    shared.go.store(true, Ordering::SeqCst);
    let start = Instant::now();
    if !threads.wait_until(start + Duration::from_secs_f64(args.warmup), |_| {})? {
        return Ok(None);
    }
    let mut clocks = shared.clocks();
    // This testbed's NAPI threads only (none unless threaded); another test's are not ours.
    let napi: Vec<u32> = [Side::A, Side::B]
        .into_iter()
        .flat_map(|side| tb.napi_threads(side).unwrap_or_default())
        .collect();
    clocks.extend(taskstat::kernel_rx_threads(&napi));
    let clocks0: Vec<_> = clocks.iter().map(ThreadClock::read).collect();
    let cpu0 = CpuSnapshot::take();
    let t0 = Instant::now();
    let (tx0, rx0) = (
        shared.tx.load(Ordering::Relaxed),
        shared.rx.load(Ordering::Relaxed),
    );
    let window = Duration::from_secs_f64(args.seconds);
    let mut last = (t0, tx0, rx0);
    let finished = threads.wait_until(t0 + window, |now| {
        if now.duration_since(last.0) >= Duration::from_millis(250) {
            let (tx, rx) = (
                shared.tx.load(Ordering::Relaxed),
                shared.rx.load(Ordering::Relaxed),
            );
            let dt = now.duration_since(last.0).as_secs_f64();
            progress.show(&format!(
                "{label}: {:.1}/{:.1} s  tx {:.0} pps  rx {:.0} pps",
                now.duration_since(t0).as_secs_f64(),
                args.seconds,
                (tx - last.1) as f64 / dt,
                (rx - last.2) as f64 / dt
            ));
            last = (now, tx, rx);
        }
    })?;
    if !finished {
        return Ok(None);
    }
    let t1 = Instant::now();
    let (tx1, rx1) = (
        shared.tx.load(Ordering::Relaxed),
        shared.rx.load(Ordering::Relaxed),
    );
    let cpu1 = CpuSnapshot::take();
    let clocks1: Vec<_> = clocks.iter().map(ThreadClock::read).collect();

    shared.stop_tx.store(true, Ordering::SeqCst);
    let tx_report = threads.join_tx()?;
    // Drain: until nothing arrived for 200 ms (at most 2 s).
    let drain_end = Instant::now() + Duration::from_secs(2);
    let mut seen = (Instant::now(), shared.rx.load(Ordering::Relaxed));
    while Instant::now() < drain_end && !sys::stop_requested() {
        std::thread::sleep(Duration::from_millis(20));
        let now_rx = shared.rx.load(Ordering::Relaxed);
        if now_rx != seen.1 {
            seen = (Instant::now(), now_rx);
        } else if seen.0.elapsed() >= Duration::from_millis(200) {
            break;
        }
    }
    shared.stop_rx.store(true, Ordering::SeqCst);
    let rx_report = threads.join_rx()?;
    let path = path0.delta(&PathCounters::take(tb));

    let seconds = t1.duration_since(t0).as_secs_f64();
    let thread_cpu = taskstat::usage_pct(&clocks, &clocks0, &clocks1, t1.duration_since(t0));
    let tx_total = shared.tx.load(Ordering::Relaxed);
    let rx_total = shared.rx.load(Ordering::Relaxed);
    let frame_bytes = wire_len(vlans.len(), case.payload);
    let rx_pps = (rx1 - rx0) as f64 / seconds;
    let mut notes = Vec::new();
    if !tagged && !args.vlans.stack().is_empty() {
        notes.push("untagged (no kernel VLAN interfaces here)".to_owned());
    }
    let rxc: std::collections::BTreeMap<String, u64> = rx_report.counters.into_iter().collect();
    if let Some(&captured) = rxc.get("relay_captured").filter(|&&v| v > 0) {
        let dropped = rxc.get("relay_capture_dropped").copied().unwrap_or(0);
        notes.push(format!(
            "{captured} captured, {dropped} dropped from the capture"
        ));
    }
    if let Some(&full) = rxc.get("relay_rx_queue_full").filter(|&&v| v > 0) {
        notes.push(format!("{full} dropped on full conn queues"));
    }
    let counter = |m: &std::collections::BTreeMap<String, u64>, k: &str| m.get(k).copied();
    if let (Some(veth), Some(offered)) = (
        counter(&path, "veth_b_rx_packets"),
        counter(&rxc, "relay_rx_offered"),
    ) {
        if veth > offered {
            notes.push(format!(
                "{} lost between the veth and the relay (ring or backlog full)",
                veth - offered
            ));
        }
    }
    if let Some(carried) = counter(&path, "veth_a_tx_packets") {
        if tx_total > carried {
            // A UDP socket on a noqueue veth gets no backpressure when the peer's NAPI ring
            // is full; AF_PACKET with qdisc bypass gets ENOBUFS, and the relay sends again.
            notes.push(format!(
                "{} dropped by the veth (receive ring full)",
                tx_total - carried
            ));
        }
    }
    if let Some(n) = counter(&path, "udp_b_RcvbufErrors") {
        notes.push(format!("{n} dropped on a full socket buffer"));
    }
    if rx_report.checker.out_of_order > 0 || rx_report.checker.bad > 0 {
        notes.push(format!(
            "{} out of order, {} bad payloads",
            rx_report.checker.out_of_order, rx_report.checker.bad
        ));
    }
    if let Some(&wrong) = rxc.get("misaddressed").filter(|&&v| v > 0) {
        notes.push(format!("{wrong} with the wrong VLAN tags or port"));
    }
    if let Some(e) = &tx_report.last_error {
        notes.push(format!("{} send errors, last: {e}", tx_report.errors));
    }
    let m = Measurement {
        backend: if case.capture {
            format!("{}+pcap", rx_report.backend)
        } else {
            rx_report.backend.to_owned()
        },
        payload: case.payload,
        endpoints: case.endpoints,
        vlans: describe_vlans(&vlans),
        frame_bytes,
        tx_path: match case.backend {
            Backend::Kernel => None,
            Backend::Rawsock => Some(format!("{:?}", args.tx_path).to_lowercase()),
            Backend::Rudp => Some("send_batch".to_owned()),
            #[cfg(feature = "pcap")]
            Backend::Pcap => Some(format!("{:?}", args.tx_path).to_lowercase()),
            #[cfg(feature = "xdp")]
            Backend::Xdp(_) => Some(format!("{:?}", args.tx_path).to_lowercase()),
            #[cfg(feature = "xdp")]
            Backend::XdpRudp(_) => Some("send_batch".to_owned()),
        },
        seconds,
        rx_pps_runs: vec![rx_pps],
        tx_packets: tx1 - tx0,
        rx_packets: rx1 - rx0,
        tx_pps: (tx1 - tx0) as f64 / seconds,
        rx_pps,
        rx_bps: rx_pps * frame_bytes as f64 * 8.0,
        loss: if tx_total == 0 {
            0.0
        } else {
            (1.0 - rx_total as f64 / tx_total as f64).max(0.0)
        },
        ratio_to_kernel: None,
        tx_total,
        rx_total,
        out_of_order: rx_report.checker.out_of_order,
        bad_payload: rx_report.checker.bad,
        tx_errors: tx_report.errors,
        cpu: cpu0.usage_until(&cpu1),
        thread_cpu_pct: thread_cpu.into_iter().collect(),
        path_counters: path,
        tx_counters: tx_report.counters.into_iter().collect(),
        rx_counters: rxc,
        note: notes.join("; "),
    };
    progress.done(&format!(
        "{label}: tx {:.0} pps, rx {:.0} pps, loss {:.2}%",
        m.tx_pps,
        m.rx_pps,
        m.loss * 100.0
    ));
    Ok(Some(m))
}

/// CPUs the AF_PACKET relays' receive threads may run on: `--relay-cpus` when given, else
/// with more than one thread the sender's and the receiver's CPUs (one thread keeps the CPU of
/// the thread opening it).
pub(super) fn relay_cpus(args: &BenchArgs) -> Vec<usize> {
    if !args.relay_cpus.is_empty() {
        let mut cpus = args.relay_cpus.clone();
        cpus.sort_unstable();
        cpus.dedup();
        return cpus;
    }
    if args.relay_threads <= 1 {
        return Vec::new();
    }
    let mut cpus = vec![args.tx_cpu, args.rx_cpu];
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}

/// The two threads of a measurement; dropping it stops and joins whatever is still running,
/// so that no socket (and no namespace) outlives a failed or interrupted measurement.
struct Threads {
    shared: Arc<Shared>,
    rx: Option<JoinHandle<std::io::Result<std::result::Result<RxReport, String>>>>,
    tx: Option<JoinHandle<std::io::Result<std::result::Result<TxReport, String>>>>,
}

fn joined<T>(
    h: JoinHandle<std::io::Result<std::result::Result<T, String>>>,
    what: &str,
) -> Result<T> {
    match h.join() {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(e))) => Err(Failure::new(format!("{what}: {e}"))),
        Ok(Err(e)) => Err(Failure::new(format!(
            "{what}: cannot enter its network namespace: {e}"
        ))),
        Err(_) => Err(Failure::new(format!("{what} thread panicked"))),
    }
}

impl Threads {
    /// Waits for a thread's "ready" (or its setup error); `false` if a signal asked to stop
    /// (a thread's set-up gives up when it sees the signal, and says so as an error).
    fn wait_ready(
        &mut self,
        ready: &mpsc::Receiver<std::result::Result<(), String>>,
        what: &str,
    ) -> Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match ready.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(())) => return Ok(true),
                Ok(Err(_)) if sys::stop_requested() => {
                    self.stop();
                    return Ok(false);
                }
                Ok(Err(e)) => {
                    self.stop();
                    return Err(Failure::new(format!("{what} setup failed: {e}")));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Some(e) = self.early_exit() {
                        return Err(e);
                    }
                }
                Err(_) => {
                    self.stop();
                    return Err(Failure::new(format!("{what} did not start")));
                }
            }
        }
    }

    /// An error if a thread ended before it was told to (its own error, or a panic).
    fn early_exit(&mut self) -> Option<Failure> {
        let rx_done = self.rx.as_ref().is_some_and(JoinHandle::is_finished);
        let tx_done = self.tx.as_ref().is_some_and(JoinHandle::is_finished);
        if !rx_done && !tx_done {
            return None;
        }
        self.shared.stop_all();
        let mut err = None;
        if let Some(h) = self.rx.take() {
            if let Err(e) = joined(h, "receiver") {
                err = Some(e);
            }
        }
        if let Some(h) = self.tx.take() {
            if let Err(e) = joined(h, "sender") {
                err = err.or(Some(e));
            }
        }
        Some(err.unwrap_or_else(|| Failure::new("a measuring thread stopped early")))
    }

    /// Waits until `until`, calling `tick` every 50 ms; `false` if a signal asked to stop.
    fn wait_until(&mut self, until: Instant, mut tick: impl FnMut(Instant)) -> Result<bool> {
        loop {
            if sys::stop_requested() {
                self.stop();
                return Ok(false);
            }
            if let Some(e) = self.early_exit() {
                return Err(e);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(true);
            }
            tick(now);
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }

    fn join_tx(&mut self) -> Result<TxReport> {
        let h = self.tx.take().ok_or_else(|| Failure::new("no sender"))?;
        joined(h, "sender")
    }

    fn join_rx(&mut self) -> Result<RxReport> {
        let h = self.rx.take().ok_or_else(|| Failure::new("no receiver"))?;
        joined(h, "receiver")
    }

    fn stop(&mut self) {
        self.shared.stop_all();
        if let Some(h) = self.tx.take() {
            let _ = h.join();
        }
        if let Some(h) = self.rx.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop();
    }
}
