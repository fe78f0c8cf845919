//! `bench`: a namespace + veth testbed of its own, then, for each payload and endpoint count,
//! the kernel UDP baseline and each etherconn backend, one after the other in the same run.
//!
//! Each measurement: a receiving thread pinned to the receive CPU in namespace B (a relay
//! created there runs its receive thread on that CPU too), a sending thread pinned to the send
//! CPU in namespace A that sends bursts of [`BATCH`] as fast as it can, a warm-up, a counted
//! window, then a drain until nothing more arrives.

use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use etherconn_core::wire::{MacAddr, VlanTag};
use etherconn_testbed::{Side, Testbed};

use crate::addr::{describe_vlans, ip_offset, max_payload, wire_len};
use crate::cli::{BackendChoice, BenchArgs};
use crate::endpoint::{EndpointSet, Peer, TxSpec, BATCH};
use crate::error::{Context, Failure, Result};
use crate::kernel::KernelUdp;
use crate::kstats::PathCounters;
use crate::l2udp::{L2UdpConfig, L2UdpEndpoints};
use crate::payload::{self, Checker};
use crate::report::{CpuSnapshot, Machine, Measurement, Report};
use crate::rudp::{PeerRange, RUdpEndpoints};
use crate::{sys, Outcome};

/// What `bench` says when not run as root.
pub const NOT_ROOT: &str = "etherconn-perf bench needs root (CAP_NET_ADMIN + CAP_NET_RAW) to \
                            create its namespace testbed; run it with sudo";

/// Start of the names of the testbed's namespaces (then the pid).
pub const NETNS_PREFIX: &str = "ecperf-";

/// Kernel baseline addresses, on the veth ends (they exist only inside the namespaces).
const KERNEL_A: Ipv4Addr = Ipv4Addr::new(10, 55, 0, 1);
const KERNEL_B: Ipv4Addr = Ipv4Addr::new(10, 55, 0, 2);
/// etherconn endpoints: sender `i` is TX_IP + i with TX_MAC + i, receiver `i` likewise.
const TX_IP: Ipv4Addr = Ipv4Addr::new(10, 55, 1, 1);
const RX_IP: Ipv4Addr = Ipv4Addr::new(10, 55, 128, 1);
const TX_MAC: MacAddr = MacAddr([0x02, 0xec, 0x55, 0x01, 0x00, 0x00]);
const RX_MAC: MacAddr = MacAddr([0x02, 0xec, 0x55, 0x02, 0x00, 0x00]);
const DST_PORT: u16 = 9000;
const SRC_PORT: u16 = 40000;

/// How long a receiver waits for a datagram before it looks at its stop flag again.
const RX_WAIT: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Kernel,
    Rawsock,
    Rudp,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Rawsock => "rawsock",
            Backend::Rudp => "rudp",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Case {
    backend: Backend,
    payload: usize,
    endpoints: usize,
}

/// Flags and counters the measuring threads share with the main thread.
#[derive(Debug, Default)]
struct Shared {
    go: AtomicBool,
    stop_tx: AtomicBool,
    stop_rx: AtomicBool,
    tx: AtomicU64,
    rx: AtomicU64,
}

impl Shared {
    fn stop_all(&self) {
        self.stop_tx.store(true, Ordering::SeqCst);
        self.stop_rx.store(true, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct TxReport {
    errors: u64,
    last_error: Option<String>,
    counters: Vec<(String, u64)>,
}

#[derive(Debug)]
struct RxReport {
    backend: &'static str,
    checker: Checker,
    counters: Vec<(String, u64)>,
}

type Ready = mpsc::Sender<std::result::Result<(), String>>;

/// Runs `bench`.
pub fn run(args: &BenchArgs) -> Result<Outcome> {
    if !etherconn_testbed::is_root() {
        return Err(Failure::new(NOT_ROOT));
    }
    let vlans = args.vlans.stack();
    let max = max_payload(vlans.len());
    if let Some(p) = args.payload.iter().find(|&&p| p as usize > max) {
        return Err(Failure::new(format!(
            "--payload {p} does not fit a 1500-byte MTU with {} VLAN tag(s); at most {max}",
            vlans.len()
        )));
    }
    let mut machine = Machine::probe();
    let mut args = args.clone();
    if machine.nproc < 2 && args.rx_cpu == 1 && args.tx_cpu == 0 {
        eprintln!("etherconn-perf: one CPU only; sender and receiver both run on CPU 0");
        args.rx_cpu = 0;
    }
    // Namespaces of earlier runs that were killed (SIGKILL) before they could clean up.
    let _ = etherconn_testbed::remove_stale_namespaces(NETNS_PREFIX);

    let tb = setup_testbed(&args)?;
    let cases = plan(&args);
    let mut progress = Progress::new(cases.len() * args.repeat as usize);
    let mut runs: Vec<Vec<Measurement>> = vec![Vec::new(); cases.len()];
    let mut interrupted = false;
    'runs: for _ in 0..args.repeat {
        for (i, case) in cases.iter().enumerate() {
            if sys::stop_requested() {
                interrupted = true;
                break 'runs;
            }
            match measure(&tb, &args, &vlans, *case, &mut progress)? {
                Some(m) => runs[i].push(m),
                None => {
                    interrupted = true;
                    break 'runs;
                }
            }
        }
    }
    drop(tb);
    let mut results: Vec<Measurement> = runs.into_iter().filter_map(median_run).collect();
    machine.finish();
    fill_ratios(&mut results);
    let report = Report {
        machine,
        mode: if args.threaded_rx {
            "threaded-rx"
        } else {
            "default"
        }
        .to_owned(),
        tx_cpu: args.tx_cpu,
        rx_cpu: args.rx_cpu,
        seconds: args.seconds,
        repeat: args.repeat,
        interrupted,
        results,
    };
    progress.clear();
    if args.json {
        eprint!("{}", report.table());
        let json = serde_json::to_string_pretty(&report).context(|| "cannot encode JSON")?;
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    Ok(if interrupted {
        eprintln!("etherconn-perf: interrupted; the testbed was removed");
        Outcome::Interrupted
    } else {
        Outcome::Done
    })
}

fn setup_testbed(args: &BenchArgs) -> Result<Testbed> {
    let tb = Testbed::new(NETNS_PREFIX).context(|| "cannot create the namespace testbed")?;
    for side in [Side::A, Side::B] {
        // No router solicitations or MLD reports in the measurements.
        for key in [
            "net.ipv6.conf.all.disable_ipv6",
            "net.ipv6.conf.default.disable_ipv6",
        ] {
            let _ = tb.set_sysctl(side, key, "1");
        }
    }
    let setup = || -> std::io::Result<()> {
        tb.add_addr(Side::A, &format!("{KERNEL_A}/24"))?;
        tb.add_addr(Side::B, &format!("{KERNEL_B}/24"))?;
        tb.add_neigh(Side::A, KERNEL_B, tb.b_mac)?;
        tb.add_neigh(Side::B, KERNEL_A, tb.a_mac)?;
        Ok(())
    };
    setup().context(|| "cannot set up the testbed's addresses")?;
    if args.threaded_rx {
        tb.threaded_rx_mode(Side::B)
            .context(|| "cannot switch the receiving veth to threaded NAPI")?;
        let mut pinned = tb.pin_napi_threads(Side::B, args.rx_cpu);
        if pinned.is_err() {
            std::thread::sleep(Duration::from_millis(200));
            pinned = tb.pin_napi_threads(Side::B, args.rx_cpu);
        }
        pinned.context(|| format!("cannot pin the NAPI thread to CPU {}", args.rx_cpu))?;
    }
    Ok(tb)
}

fn plan(args: &BenchArgs) -> Vec<Case> {
    let wants = |b: BackendChoice| {
        args.backend
            .iter()
            .any(|&c| c == b || c == BackendChoice::All)
    };
    let etherconn: Vec<Backend> = [
        (BackendChoice::Rawsock, Backend::Rawsock),
        (BackendChoice::Rudp, Backend::Rudp),
    ]
    .into_iter()
    .filter(|&(c, _)| wants(c))
    .map(|(_, b)| b)
    .collect();
    let mut cases = Vec::new();
    for &payload in &args.payload {
        let payload = payload as usize;
        if wants(BackendChoice::Kernel) {
            cases.push(Case {
                backend: Backend::Kernel,
                payload,
                endpoints: 1,
            });
        }
        for &backend in &etherconn {
            for &endpoints in &args.endpoints {
                cases.push(Case {
                    backend,
                    payload,
                    endpoints: endpoints as usize,
                });
            }
        }
    }
    cases
}

/// The run with the median rx pps (the lower middle one of an even count), carrying every
/// run's rx pps.
fn median_run(mut runs: Vec<Measurement>) -> Option<Measurement> {
    let all: Vec<f64> = runs.iter().map(|m| m.rx_pps).collect();
    runs.sort_by(|a, b| a.rx_pps.total_cmp(&b.rx_pps));
    let mid = runs.len().checked_sub(1)? / 2;
    let mut m = runs.swap_remove(mid);
    m.rx_pps_runs = all;
    Some(m)
}

fn fill_ratios(results: &mut [Measurement]) {
    let kernel: Vec<(usize, f64)> = results
        .iter()
        .filter(|r| r.backend == "kernel")
        .map(|r| (r.payload, r.rx_pps))
        .collect();
    for r in results.iter_mut() {
        r.ratio_to_kernel = kernel
            .iter()
            .find(|(p, _)| *p == r.payload)
            .filter(|(_, k)| *k > 0.0)
            .map(|(_, k)| r.rx_pps / k);
    }
}

/// Runs one measurement; `None` when a signal stopped it.
fn measure(
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
        case.backend.name(),
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
    let l2 = |base_mac, base_ip, port| L2UdpConfig {
        base_mac,
        base_ip,
        endpoints: case.endpoints,
        port,
        vlans: vlans.clone(),
        answer_arp: false,
        queue_depth,
        tx_path: args.tx_path,
    };
    let rx_cfg = l2(RX_MAC, RX_IP, DST_PORT);
    let tx_cfg = l2(TX_MAC, TX_IP, SRC_PORT);
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
    threads.wait_ready(&ready_rx, "receiver")?;
    let tx_thread = {
        let (shared, ready, ifname) = (Arc::clone(&shared), ready_tx, tb.a_if.clone());
        let cpu = args.tx_cpu;
        tb.a.spawn_thread_in(move || sender(case, &ifname, &tx_cfg, cpu, &shared, &ready))
    };
    threads.tx = Some(tx_thread);
    threads.wait_ready(&ready_rx, "sender")?;

    let path0 = PathCounters::take(tb);
    shared.go.store(true, Ordering::SeqCst);
    let start = Instant::now();
    if !threads.wait_until(start + Duration::from_secs_f64(args.warmup), |_| {})? {
        return Ok(None);
    }
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
    let tx_total = shared.tx.load(Ordering::Relaxed);
    let rx_total = shared.rx.load(Ordering::Relaxed);
    let frame_bytes = wire_len(vlans.len(), case.payload);
    let rx_pps = (rx1 - rx0) as f64 / seconds;
    let mut notes = Vec::new();
    if !tagged && !args.vlans.stack().is_empty() {
        notes.push("untagged (no kernel VLAN interfaces here)".to_owned());
    }
    let rxc: std::collections::BTreeMap<String, u64> = rx_report.counters.into_iter().collect();
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
        backend: rx_report.backend.to_owned(),
        payload: case.payload,
        endpoints: case.endpoints,
        vlans: describe_vlans(&vlans),
        frame_bytes,
        tx_path: match case.backend {
            Backend::Kernel => None,
            Backend::Rawsock => Some(format!("{:?}", args.tx_path).to_lowercase()),
            Backend::Rudp => Some("send_batch".to_owned()),
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
    /// Waits for a thread's "ready" (or its setup error).
    fn wait_ready(
        &mut self,
        ready: &mpsc::Receiver<std::result::Result<(), String>>,
        what: &str,
    ) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match ready.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(())) => return Ok(()),
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

/// Opens the receiving set (in namespace B, pinned), says ready, and counts and checks what
/// arrives until told to stop.
fn receiver(
    case: Case,
    ifname: &str,
    cfg: &L2UdpConfig,
    cpu: usize,
    shared: &Shared,
    ready: &Ready,
) -> std::result::Result<RxReport, String> {
    let peers = PeerRange {
        base_mac: TX_MAC,
        base_ip: TX_IP,
        count: cfg.endpoints,
    };
    let mut set = open_and_report(
        case.backend,
        ifname,
        cfg,
        peers,
        cpu,
        SocketAddrV4::new(KERNEL_B, DST_PORT),
        ready,
    )?;
    let mut checker = Checker::new(set.endpoint_count(), case.payload);
    let tags: Vec<u16> = cfg.vlans.iter().map(|t| t.id.get()).collect();
    let want_tags = if case.backend == Backend::Kernel {
        &[][..]
    } else {
        &tags[..]
    };
    let mut misaddressed = 0u64;
    while !shared.stop_rx.load(Ordering::Relaxed) {
        let n = set
            .recv_burst(BATCH, RX_WAIT, &mut |d| {
                // Light checks of what the set reports besides the payload.
                let tags_ok = d.vlans.len() == want_tags.len()
                    && d.vlans
                        .iter()
                        .zip(want_tags)
                        .all(|(t, &id)| t.id.get() == id);
                if !tags_ok || d.to.port() != DST_PORT {
                    misaddressed += 1;
                }
                checker.check(d.endpoint, d.payload);
            })
            .map_err(|e| format!("receive failed: {e}"))?;
        if n > 0 {
            shared.rx.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    let mut counters = set.counters();
    counters.push(("misaddressed".to_owned(), misaddressed));
    Ok(RxReport {
        backend: set.backend(),
        checker,
        counters,
    })
}

/// Opens the sending set (in namespace A, pinned), says ready, waits for the start, and sends
/// bursts round robin over its endpoints (endpoint `i` to receiving endpoint `i`) until told
/// to stop.
fn sender(
    case: Case,
    ifname: &str,
    cfg: &L2UdpConfig,
    cpu: usize,
    shared: &Shared,
    ready: &Ready,
) -> std::result::Result<TxReport, String> {
    let peers = PeerRange {
        base_mac: RX_MAC,
        base_ip: RX_IP,
        count: cfg.endpoints,
    };
    let mut set = open_and_report(
        case.backend,
        ifname,
        cfg,
        peers,
        cpu,
        SocketAddrV4::new(KERNEL_A, SRC_PORT),
        ready,
    )?;
    let count = set.endpoint_count();
    // Destinations for endpoint i, repeated so that any BATCH consecutive specs are a slice.
    let specs: Vec<TxSpec> = (0..count + BATCH)
        .map(|i| {
            let e = i % count;
            let to = match case.backend {
                Backend::Kernel => Peer {
                    mac: MacAddr::UNSPECIFIED,
                    addr: SocketAddr::V4(SocketAddrV4::new(KERNEL_B, DST_PORT)),
                },
                Backend::Rawsock | Backend::Rudp => Peer {
                    mac: RX_MAC.offset(e as u64),
                    addr: SocketAddr::V4(SocketAddrV4::new(ip_offset(RX_IP, e), DST_PORT)),
                },
            };
            TxSpec { from: e, to }
        })
        .collect();
    while !shared.go.load(Ordering::SeqCst) {
        if shared.stop_tx.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut seq = vec![0u64; count];
    let (mut at, mut errors, mut in_a_row) = (0usize, 0u64, 0u32);
    let mut last_error = None;
    while !shared.stop_tx.load(Ordering::Relaxed) {
        let burst = &specs[at..at + BATCH];
        let result = set.send_burst(burst, &mut |k, buf| {
            let e = burst[k].from;
            let s = seq[e];
            seq[e] += 1;
            payload::write(buf, case.payload, s, 0)
        });
        let sent = match result {
            Ok(sent) => {
                in_a_row = 0;
                sent
            }
            Err(e) => {
                errors += 1;
                in_a_row += 1;
                if in_a_row >= 10_000 {
                    return Err(format!("sending keeps failing: {e}"));
                }
                last_error = Some(e.to_string());
                std::thread::yield_now();
                0
            }
        };
        // Unsent datagrams get their sequence numbers back, to be sent again.
        for spec in burst[sent..].iter().rev() {
            seq[spec.from] -= 1;
        }
        if sent > 0 {
            shared.tx.fetch_add(sent as u64, Ordering::Relaxed);
            at = (at + sent) % count;
        }
    }
    Ok(TxReport {
        errors,
        last_error,
        counters: set.counters(),
    })
}

/// [`open_set`], then tells the coordinating thread whether it worked.
fn open_and_report(
    backend: Backend,
    ifname: &str,
    cfg: &L2UdpConfig,
    peers: PeerRange,
    cpu: usize,
    kernel_addr: SocketAddrV4,
    ready: &Ready,
) -> std::result::Result<Box<dyn EndpointSet>, String> {
    let opened = open_set(backend, ifname, cfg, peers, cpu, kernel_addr);
    let _ = ready.send(opened.as_ref().map(|_| ()).map_err(Clone::clone));
    opened
}

fn open_set(
    backend: Backend,
    ifname: &str,
    cfg: &L2UdpConfig,
    peers: PeerRange,
    cpu: usize,
    kernel_addr: SocketAddrV4,
) -> std::result::Result<Box<dyn EndpointSet>, String> {
    sys::pin_current_thread(cpu).map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))?;
    Ok(match backend {
        Backend::Kernel => Box::new(
            KernelUdp::bind(kernel_addr)
                .map_err(|e| format!("cannot bind a UDP socket to {kernel_addr}: {e}"))?,
        ),
        Backend::Rawsock => {
            Box::new(L2UdpEndpoints::open_rawsock(ifname, cfg).map_err(|e| e.to_string())?)
        }
        Backend::Rudp => {
            Box::new(RUdpEndpoints::open_rawsock(ifname, cfg, peers).map_err(|e| e.to_string())?)
        }
    })
}

/// The progress line on stderr: rewritten in place on a terminal, one line per measurement
/// otherwise.
struct Progress {
    tty: bool,
    total: usize,
    index: usize,
    shown: bool,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            total,
            index: 0,
            shown: false,
        }
    }

    fn show(&mut self, line: &str) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K[{}/{}] {line}", self.index + 1, self.total);
            let _ = err.flush();
            self.shown = true;
        }
    }

    fn done(&mut self, line: &str) {
        self.clear();
        eprintln!("[{}/{}] {line}", self.index + 1, self.total);
        self.index += 1;
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}
