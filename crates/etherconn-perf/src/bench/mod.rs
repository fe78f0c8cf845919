//! `bench`: a namespace + veth testbed of its own, then, for each payload and endpoint count,
//! the kernel UDP baseline and each etherconn backend, one after the other in the same run.
//!
//! Each measurement: a receiving thread pinned to the receive CPU in namespace B (a relay
//! created there runs its receive thread on that CPU too), a sending thread pinned to the send
//! CPU in namespace A that sends bursts of [`BATCH`](crate::endpoint::BATCH) as fast as it can, a warm-up, a counted
//! window, then a drain until nothing more arrives.

mod movers;
mod plan;
mod progress;
mod trial;

use std::time::Duration;

use etherconn_testbed::{Side, Testbed};

use self::plan::{plan, KERNEL_A, KERNEL_B};
use self::progress::Progress;
use self::trial::measure;
use crate::cli::BenchArgs;
use crate::error::{Context, Failure, Result};
use crate::outcome::Outcome;
use crate::report::{Machine, Measurement, Report};
use crate::sys;
use crate::testbed::quiet_testbed_with_queues;

/// What `bench` says when not run as root.
pub const NOT_ROOT: &str = "etherconn-perf bench needs root (CAP_NET_ADMIN + CAP_NET_RAW) to \
                            create its namespace testbed; run it with sudo";

/// Start of the names of the testbed's namespaces (then the pid).
pub const NETNS_PREFIX: &str = "ecperf-";

/// Runs `bench`.
pub fn run(args: &BenchArgs) -> Result<Outcome> {
    if !etherconn_testbed::is_root() {
        return Err(Failure::new(NOT_ROOT));
    }
    // The payloads fit the VLAN tags and the CPUs exist: `check` saw to it.
    let vlans = args.vlans.stack();
    let mut machine = Machine::probe();
    let mut args = args.clone();
    if machine.nproc < 2 && args.rx_cpu == 1 && args.tx_cpu == 0 {
        eprintln!("etherconn-perf: one CPU only; sender and receiver both run on CPU 0");
        args.rx_cpu = 0;
    }
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
        relay_threads: args.relay_threads,
        relay_cpus: trial::relay_cpus(&args),
        seconds: args.seconds,
        repeat: args.repeat,
        rate_pps: args.rate,
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
    #[cfg(feature = "xdp")]
    let queues = args.queues;
    #[cfg(not(feature = "xdp"))]
    let queues = 1;
    let tb = quiet_testbed_with_queues(NETNS_PREFIX, queues)?;
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
