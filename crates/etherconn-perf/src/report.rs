//! Results: the machine they came from, CPU use, the table and the JSON object.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// The machine a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Online CPUs.
    pub nproc: usize,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// CPU model name.
    pub cpu_model: String,
    /// 1, 5 and 15 minute load averages when the run started (other work on the machine).
    pub loadavg_start: String,
    /// The same when it ended.
    pub loadavg_end: String,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn loadavg() -> String {
    read_trimmed("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Machine {
    /// Reads what `/proc` says about this machine now.
    pub fn probe() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, usize::from),
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            cpu_model,
            loadavg_start: loadavg(),
            loadavg_end: String::new(),
        }
    }

    /// Records the load average at the end of the run.
    pub fn finish(&mut self) {
        self.loadavg_end = loadavg();
    }
}

/// Jiffies per CPU from `/proc/stat`: (user+nice, system, idle+iowait, irq+softirq, steal).
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot(Vec<[u64; 5]>);

impl CpuSnapshot {
    /// Reads `/proc/stat` now.
    pub fn take() -> CpuSnapshot {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let mut cpus = Vec::new();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            match f.next() {
                Some(name) if name.starts_with("cpu") && name.len() > 3 => {}
                _ => continue,
            }
            let v: Vec<u64> = f.map(|x| x.parse().unwrap_or(0)).collect();
            let g = |i: usize| v.get(i).copied().unwrap_or(0);
            cpus.push([g(0) + g(1), g(2), g(3) + g(4), g(5) + g(6), g(7)]);
        }
        CpuSnapshot(cpus)
    }

    /// What each CPU did between `self` and `later`.
    pub fn usage_until(&self, later: &CpuSnapshot) -> Vec<CpuUsage> {
        self.0
            .iter()
            .zip(&later.0)
            .enumerate()
            .map(|(cpu, (a, b))| {
                let d: Vec<f64> = (0..5).map(|i| b[i].saturating_sub(a[i]) as f64).collect();
                let total = d.iter().sum::<f64>().max(1.0);
                let pct = |x: f64| (1000.0 * x / total).round() / 10.0;
                CpuUsage {
                    cpu,
                    busy_pct: pct(total - d[2]),
                    user_pct: pct(d[0]),
                    system_pct: pct(d[1]),
                    irq_softirq_pct: pct(d[3]),
                    steal_pct: pct(d[4]),
                }
            })
            .collect()
    }
}

/// One CPU's time during a measurement, in percent.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUsage {
    /// CPU number.
    pub cpu: usize,
    /// Not idle.
    pub busy_pct: f64,
    /// User space.
    pub user_pct: f64,
    /// Kernel, outside interrupts.
    pub system_pct: f64,
    /// Hard and soft interrupts (the veth receive path, unless threaded).
    pub irq_softirq_pct: f64,
    /// Taken by the hypervisor.
    pub steal_pct: f64,
}

/// One measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// `rawsock`, `kernel`, ...
    pub backend: String,
    /// UDP payload bytes.
    pub payload: usize,
    /// Endpoints per side.
    pub endpoints: usize,
    /// VLAN stack of the frames: `none`, `100`, `200.100`.
    pub vlans: String,
    /// Bytes per frame on the wire (Ethernet header and tags to the end of the payload, padded
    /// to 60; no preamble, FCS or gap).
    pub frame_bytes: usize,
    /// How etherconn bursts reached the relay (`batch`, `conn`); none for the kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_path: Option<String>,
    /// Length of the counted window.
    pub seconds: f64,
    /// rx pps of every run of this measurement (`--repeat`); the figures here are the median
    /// run's.
    pub rx_pps_runs: Vec<f64>,
    /// Datagrams sent in the window.
    pub tx_packets: u64,
    /// Datagrams received in the window.
    pub rx_packets: u64,
    /// Sent datagrams per second.
    pub tx_pps: f64,
    /// Received datagrams per second.
    pub rx_pps: f64,
    /// Received bits per second on the wire (`rx_pps * frame_bytes * 8`).
    pub rx_bps: f64,
    /// `1 - received / sent` over the whole run (warm-up and drain included).
    pub loss: f64,
    /// `rx_pps` over the kernel baseline's `rx_pps` at the same payload (1.0 for the kernel).
    pub ratio_to_kernel: Option<f64>,
    /// Datagrams sent in the whole run.
    pub tx_total: u64,
    /// Datagrams received in the whole run.
    pub rx_total: u64,
    /// Received out of sequence (reordered or duplicated) on their endpoint.
    pub out_of_order: u64,
    /// Received with the wrong length or content.
    pub bad_payload: u64,
    /// Failed send calls.
    pub tx_errors: u64,
    /// CPU time during the window.
    pub cpu: Vec<CpuUsage>,
    /// Each measuring thread's CPU time during the window, in percent of one CPU: `sender`,
    /// `reader` (the receiving thread), the receiving AF_PACKET relay's receive threads
    /// (`etherconn-rx0`, ...) and the kernel's receive threads (`napi/...`, `ksoftirqd/N`),
    /// from their `/proc` schedstat.
    pub thread_cpu_pct: BTreeMap<String, f64>,
    /// Kernel counters along the path that changed during the whole run, warm-up and drain
    /// included (veth ends, namespace B's UDP stack, per-CPU backlog drops).
    pub path_counters: BTreeMap<String, u64>,
    /// Counters of the sending side.
    pub tx_counters: BTreeMap<String, u64>,
    /// Counters of the receiving side.
    pub rx_counters: BTreeMap<String, u64>,
    /// Anything that qualifies the figures.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// A whole `bench` run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// `default` (veth receive work on the sender's CPU) or `threaded-rx`.
    pub mode: String,
    /// CPU of the senders.
    pub tx_cpu: usize,
    /// CPU of the receivers.
    pub rx_cpu: usize,
    /// Receive threads of every AF_PACKET relay (`--relay-threads`).
    pub relay_threads: u32,
    /// CPUs those threads may run on; empty: the CPU of the thread that opened the relay.
    pub relay_cpus: Vec<usize>,
    /// Seconds per measurement window.
    pub seconds: f64,
    /// Runs per measurement (the median is reported).
    pub repeat: u32,
    /// Datagrams per second each sender was paced at (`--rate`); `None`: as fast as it can.
    pub rate_pps: Option<u64>,
    /// Whether the run was stopped by a signal before it finished.
    pub interrupted: bool,
    /// The measurements, in the order they ran.
    pub results: Vec<Measurement>,
}

fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let mode = if self.mode == "threaded-rx" {
            format!(
                "threaded-rx (veth NAPI thread pinned to CPU {}, with the receiver)",
                self.rx_cpu
            )
        } else {
            format!(
                "default (veth receive work runs on the sender's CPU {})",
                self.tx_cpu
            )
        };
        let _ = writeln!(
            s,
            "etherconn-perf bench: {} CPUs ({}), kernel {}, load {} -> {}",
            m.nproc, m.cpu_model, m.kernel, m.loadavg_start, m.loadavg_end
        );
        let _ = writeln!(
            s,
            "mode: {mode}; sender on CPU {} (ns A){}, receiver on CPU {} (ns B); {} s per measurement{}{}",
            self.tx_cpu,
            self.rate_pps
                .map_or_else(String::new, |r| format!(" paced at {} pps", thousands(r as f64))),
            self.rx_cpu,
            self.seconds,
            if self.repeat > 1 {
                format!(", median of {} runs", self.repeat)
            } else {
                String::new()
            },
            if self.interrupted { "; INTERRUPTED" } else { "" }
        );
        let _ = writeln!(
            s,
            "AF_PACKET relays (rawsock, rudp): {} receive thread{} {}",
            self.relay_threads,
            if self.relay_threads == 1 {
                ""
            } else {
                "s (fanout hash)"
            },
            if self.relay_cpus.is_empty() {
                "on the CPU of the thread opening the relay".to_owned()
            } else {
                format!(
                    "free to run on CPUs {}",
                    self.relay_cpus
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
        );
        let _ = writeln!(
            s,
            "{:<12} {:>7} {:>7} {:>9} {:>11} {:>11} {:>9} {:>7} {:>8} {:>14}  note",
            "backend",
            "vlans",
            "payload",
            "endpoints",
            "tx pps",
            "rx pps",
            "rx Mbit/s",
            "loss",
            "x kernel",
            "cpu busy/si %"
        );
        for r in &self.results {
            let ratio = r
                .ratio_to_kernel
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
            let cpu = r
                .cpu
                .iter()
                .map(|c| format!("{:.0}/{:.0}", c.busy_pct, c.irq_softirq_pct))
                .collect::<Vec<_>>()
                .join(" ");
            let mut note = r.note.clone();
            if !r.thread_cpu_pct.is_empty() {
                let threads = r
                    .thread_cpu_pct
                    .iter()
                    .filter(|(_, &v)| v >= 0.5)
                    .map(|(k, v)| format!("{} {v:.0}", k.trim_start_matches("etherconn-")))
                    .collect::<Vec<_>>()
                    .join(" ");
                let threads = format!("thread cpu %: {threads}");
                note = if note.is_empty() {
                    threads
                } else {
                    format!("{threads}; {note}")
                };
            }
            if r.rx_pps_runs.len() > 1 {
                let runs = r
                    .rx_pps_runs
                    .iter()
                    .map(|&x| thousands(x))
                    .collect::<Vec<_>>()
                    .join(" / ");
                note = if note.is_empty() {
                    format!("runs: {runs}")
                } else {
                    format!("runs: {runs}; {note}")
                };
            }
            let _ = writeln!(
                s,
                "{:<12} {:>7} {:>7} {:>9} {:>11} {:>11} {:>9.1} {:>6.2}% {:>8} {:>14}  {}",
                r.backend,
                r.vlans,
                r.payload,
                r.endpoints,
                thousands(r.tx_pps),
                thousands(r.rx_pps),
                r.rx_bps / 1e6,
                r.loss * 100.0,
                ratio,
                cpu,
                note
            );
        }
        let _ = writeln!(
            s,
            "rx Mbit/s counts each frame from the destination MAC to the end of the UDP payload \
             (VLAN tags included, padded to 60 bytes); no preamble, FCS or inter-frame gap."
        );
        let _ = writeln!(
            s,
            "x kernel = rx pps / the kernel UDP socket's rx pps at the same payload in this run. \
             veth figures drift 5-25% between runs: compare ratios from one run."
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn cpu_usage_from_snapshots() {
        let a = CpuSnapshot(vec![[0, 0, 0, 0, 0]]);
        let b = CpuSnapshot(vec![[10, 20, 50, 20, 0]]);
        let u = a.usage_until(&b);
        assert_eq!(u[0].busy_pct, 50.0);
        assert_eq!(u[0].irq_softirq_pct, 20.0);
        assert!(!CpuSnapshot::take().0.is_empty());
    }
}
