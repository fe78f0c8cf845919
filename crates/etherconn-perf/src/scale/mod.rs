//! `scale`: what 100,000 endpoints on one relay cost: registration time, memory per idle
//! endpoint, and receive throughput with 100,000 endpoints against one.
//!
//! ```text
//! etherconn-perf scale                          # everything but profiling, 5 runs each
//! etherconn-perf scale --reps 7                 # more runs
//! etherconn-perf scale --only reg               # scenarios whose name contains "reg"
//! etherconn-perf scale --list                   # the scenario names
//! etherconn-perf scale --only dispatch --json   # one JSON object on stdout
//! ```
//!
//! Every run of a scenario is a fresh child process (this program re-executed as
//! `scale --child NAME SEED`), so resident-set figures start from a clean heap and runs do not
//! share caches or allocator state; the parent prints the median and the spread (min to max)
//! of each figure, then checks the targets:
//!
//! - registering 100,000 `SharingRUdpConn`s on one relay takes under 1 s;
//! - an idle `SharingRUdpConn` costs under 4 KiB (heap bytes counted exactly by the tool's
//!   counting allocator, struct included; the RSS delta is printed alongside);
//! - receive throughput with 100,000 endpoints is within 10% of that with one endpoint.
//!
//! The `veth:` scenario (root only) repeats the throughput comparison over a veth pair: an
//! AF_PACKET sender in one namespace, a `RawSocketRelay` in the other, the sender sending as
//! fast as it can (the rate delivered under overload). The `rate:` scenario measures the same
//! pair the RFC 2544 way: a paced sender and a binary search for the highest rate at which the
//! application receives all but [`LOSS_TOLERANCE`](rate::LOSS_TOLERANCE) of the frames. Their
//! `veth-inbox:` and `rate-inbox:` twins measure the same with the application reading through
//! an `Inbox` (every endpoint attached to one) instead of a `ReadySet` and each endpoint.

mod child;
mod dispatch;
mod fleet;
mod procfs;
mod rate;
mod summary;
mod veth;

use std::collections::BTreeMap;
use std::process::Command;

use self::fleet::{Layout, SHARED_1000X100};
use self::summary::{Figure, ScaleReport, Scenario};
use crate::cli::ScaleArgs;
use crate::error::{Context, Failure, Result};
use crate::outcome::Outcome;
use crate::report::Machine;
use crate::sys;

/// The scenarios, `kind:fleet`, in the order a run takes them.
fn scenarios() -> Vec<(&'static str, Layout)> {
    vec![
        ("reg:shared-1000x100", SHARED_1000X100),
        ("reg:1mac-100k-ips", Layout::OneMacIps(100_000)),
        ("reg:1mac-2ips-100k-ports", Layout::OneMacPorts(100_000)),
        ("reg:ether-10k", Layout::EtherConns(10_000)),
        ("reg:ether-100k", Layout::EtherConns(100_000)),
        ("dispatch:shared-1000x100", SHARED_1000X100),
        ("dispatch:1mac-100k-ips", Layout::OneMacIps(100_000)),
        ("dispatch:ether-10k", Layout::EtherConns(10_000)),
        ("active:shared-1000x100", SHARED_1000X100),
        ("profile:one", Layout::Shared { macs: 1, ports: 1 }),
        ("profile:shared-1000x100", SHARED_1000X100),
        ("profile-inbox:one", Layout::Shared { macs: 1, ports: 1 }),
        ("profile-inbox:shared-1000x100", SHARED_1000X100),
        ("veth:shared-1000x100", SHARED_1000X100),
        ("rate:shared-1000x100", SHARED_1000X100),
        ("veth-inbox:shared-1000x100", SHARED_1000X100),
        ("rate-inbox:shared-1000x100", SHARED_1000X100),
    ]
}

/// The names of the scenarios, for `--child` and `--only` to be checked against.
pub fn scenario_names() -> Vec<&'static str> {
    scenarios().into_iter().map(|(name, _)| name).collect()
}

/// The part of a scenario name before the colon: what it measures.
fn kind(name: &str) -> &str {
    name.split(':').next().unwrap_or("")
}

/// Runs `scale`: the scenario list, one run of one scenario (`--child`), or a whole run.
pub fn run(args: &ScaleArgs) -> Result<Outcome> {
    // Registration's heap figures count from here; see `CountingAlloc` for why not always.
    sys::count_heap();
    if let Some(child) = &args.child {
        let [name, seed] = child.as_slice() else {
            return Err(Failure::new("--child takes a scenario name and a seed"));
        };
        let seed: u64 = seed.parse().map_err(|_| {
            Failure::new(format!("--child {name} {seed}: the seed is not a number"))
        })?;
        let (name, layout) = scenarios()
            .into_iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| {
                Failure::new(format!(
                    "no scenario {name}; `etherconn-perf scale --list` lists them"
                ))
            })?;
        child::run(kind(name), name, layout, args.frames, args.veth_secs, seed)?;
        return Ok(Outcome::Done);
    }
    if args.list {
        for (name, layout) in scenarios() {
            println!("{name:28} {}", layout.describe());
        }
        return Ok(Outcome::Done);
    }
    parent(args)
}

/// Whether a run without `--only` takes scenario `name`, or whether `--only` names it.
fn wanted(args: &ScaleArgs, name: &str) -> bool {
    if args.only.is_empty() {
        // Profiling runs only when asked for.
        !name.starts_with("profile")
    } else {
        args.only.iter().any(|o| name.contains(o.as_str()))
    }
}

/// Runs every wanted scenario `--reps` times in child processes, printing as it goes, then the
/// targets (and the JSON object, with `--json`).
fn parent(args: &ScaleArgs) -> Result<Outcome> {
    // With --json, stdout carries the JSON object alone.
    let say = |line: &str| {
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let mut machine = Machine::probe();
    if cfg!(debug_assertions) {
        say("warning: debug build; the targets are for --release");
    }
    let exe = std::env::current_exe().context(|| "cannot find this program to re-run it")?;
    let mut done = Vec::new();
    let mut interrupted = false;
    for (name, layout) in scenarios() {
        if !wanted(args, name) {
            continue;
        }
        let reps = if matches!(kind(name), "veth" | "veth-inbox" | "rate" | "rate-inbox") {
            (args.reps as usize).min(3)
        } else {
            args.reps as usize
        };
        say(&format!("\n== {name}: {} ({reps} runs)", layout.describe()));
        let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut notes = Vec::new();
        for rep in 0..reps {
            if sys::stop_requested() {
                interrupted = true;
                break;
            }
            let out = Command::new(&exe)
                .args([
                    "scale",
                    "--child",
                    name,
                    &(rep as u64 * 7919 + 17).to_string(),
                ])
                .args(["--frames", &args.frames.to_string()])
                .args(["--veth-secs", &args.veth_secs.to_string()])
                .output()
                .context(|| format!("cannot run {name}"))?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
                return Err(Failure::new(format!(
                    "{name} run {rep} failed ({})",
                    out.status
                )));
            }
            for line in stdout.lines() {
                let mut w = line.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some("R"), Some(k), Some(v)) => samples
                        .entry(k.to_owned())
                        .or_default()
                        .push(v.parse().unwrap_or(f64::NAN)),
                    (Some("S"), ..) => {
                        say(&format!("  {}", &line[2..]));
                        notes.push(line[2..].to_owned());
                    }
                    _ => {}
                }
            }
        }
        let figures: BTreeMap<String, Figure> = samples
            .into_iter()
            .map(|(k, v)| (k, Figure::of(v)))
            .collect();
        for (k, f) in &figures {
            say(&f.line(k));
        }
        done.push(Scenario {
            name: name.to_owned(),
            layout: layout.describe(),
            runs: reps,
            notes,
            figures,
        });
        if interrupted {
            break;
        }
    }
    machine.finish();
    let targets = summary::targets(&done);
    say("\n== targets");
    for t in &targets {
        say(&format!("  {}", t.text));
    }
    if args.json {
        let report = ScaleReport {
            machine,
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            reps: args.reps as usize,
            frames: args.frames,
            veth_secs: args.veth_secs,
            interrupted,
            scenarios: done,
            targets,
        };
        let json = serde_json::to_string_pretty(&report).context(|| "cannot encode JSON")?;
        println!("{json}");
    }
    Ok(if interrupted {
        eprintln!("etherconn-perf: interrupted");
        Outcome::Interrupted
    } else {
        Outcome::Done
    })
}
