//! The parent's side of a run: each figure of a scenario as the median and spread of its runs,
//! the targets checked against them, and the JSON object of the whole run.

use std::collections::BTreeMap;

use serde::Serialize;

use super::rate::LOSS_TOLERANCE;
use crate::report::Machine;

/// The median of `v` (sorted in place); NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One figure of a scenario over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Median of the samples.
    pub median: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// `(max - min) / |median|` in percent (0 when the median is 0).
    pub spread_pct: f64,
    /// Samples: one per run, or several when a run measures the figure more than once.
    pub n: usize,
}

impl Figure {
    /// The figure of `samples`.
    pub fn of(mut samples: Vec<f64>) -> Figure {
        let (min, max) = samples
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        let m = median(&mut samples);
        let spread_pct = if m != 0.0 {
            (max - min) / m.abs() * 100.0
        } else {
            0.0
        };
        Figure {
            median: m,
            min,
            max,
            spread_pct,
            n: samples.len(),
        }
    }

    /// The figure's line of the text output.
    pub fn line(&self, key: &str) -> String {
        let Figure {
            median: m,
            min: lo,
            max: hi,
            spread_pct: spread,
            n,
        } = self;
        format!(
            "  {key:34} median {m:>12.3}   min {lo:>12.3}   max {hi:>12.3}   spread {spread:>5.1}%   (n={n})"
        )
    }
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// Its name, `kind:fleet`.
    pub name: String,
    /// The fleet it measured.
    pub layout: String,
    /// Runs (fresh processes) it was given.
    pub runs: usize,
    /// What the runs said besides figures (a scenario skipped, say).
    pub notes: Vec<String>,
    /// Its figures, by name.
    pub figures: BTreeMap<String, Figure>,
}

/// One target checked against the medians, or one comparison shown beside them.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The scenario it reads.
    pub scenario: String,
    /// The figure compared: milliseconds, bytes or a ratio, as `text` says.
    pub value: f64,
    /// Whether the target was met; none for a comparison without a target.
    pub met: Option<bool>,
    /// The line the text output shows.
    pub text: String,
}

/// A whole `scale` run.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// Where it ran.
    pub machine: Machine,
    /// `release` or `debug` (the targets are for a release build).
    pub build: &'static str,
    /// Runs per scenario asked for (veth and rate scenarios: at most 3).
    pub reps: usize,
    /// Frames per in-process throughput measurement.
    pub frames: u64,
    /// Seconds per veth phase.
    pub veth_secs: f64,
    /// Whether a signal stopped the run before its end.
    pub interrupted: bool,
    /// The scenarios run, in order.
    pub scenarios: Vec<Scenario>,
    /// The targets and comparisons that the scenarios run allow.
    pub targets: Vec<Target>,
}

fn met(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

/// The targets the medians of `scenarios` allow checking, in the order the text shows them.
pub fn targets(scenarios: &[Scenario]) -> Vec<Target> {
    let get = |s: &str, k: &str| {
        scenarios
            .iter()
            .find(|x| x.name == s)
            .and_then(|x| x.figures.get(k))
            .map(|f| f.median)
    };
    let mut out = Vec::new();
    let mut push = |scenario: &str, value: f64, ok: Option<bool>, text: String| {
        out.push(Target {
            scenario: scenario.to_owned(),
            value,
            met: ok,
            text,
        });
    };
    // Registration: each figure must stay below its bound.
    type Says = fn(&str, f64) -> String;
    let below: [(&str, f64, Says); 2] = [
        ("register_ms", 1000.0, |s, ms| {
            format!("{s}: 100,000 registrations in {ms:.1} ms (target < 1000 ms)")
        }),
        ("heap_bytes_per_endpoint", 4096.0, |s, b| {
            format!("{s}: {b:.0} heap bytes per idle SharingRUdpConn (target < 4096)")
        }),
    ];
    for s in [
        "reg:shared-1000x100",
        "reg:1mac-100k-ips",
        "reg:1mac-2ips-100k-ports",
    ] {
        for (key, bound, says) in below {
            if let Some(v) = get(s, key) {
                let ok = v < bound;
                push(s, v, Some(ok), format!("{}: {}", says(s, v), met(ok)));
            }
        }
    }
    for s in [
        "dispatch:shared-1000x100",
        "dispatch:1mac-100k-ips",
        "dispatch:ether-10k",
    ] {
        for mode in ["one_thread", "two_threads", "inbox_one_thread"] {
            if let Some(r) = get(s, &format!("{mode}_ratio_N_over_1")) {
                let ok = r >= 0.9;
                let text = format!(
                    "{s} {mode}: throughput N/1 = {r:.3} (target >= 0.90): {}{}",
                    met(ok),
                    get(s, &format!("{mode}_cpu_ratio_1_over_N"))
                        .map(|c| format!("; CPU-time ratio 1/N = {c:.3}"))
                        .unwrap_or_default()
                );
                push(s, r, Some(ok), text);
            }
        }
    }
    for (veth, rate, how) in [
        ("veth:shared-1000x100", "rate:shared-1000x100", "a ReadySet"),
        (
            "veth-inbox:shared-1000x100",
            "rate-inbox:shared-1000x100",
            "an Inbox",
        ),
    ] {
        for what in ["delivered", "received"] {
            if let (Some(a), Some(b)) = (
                get(veth, &format!("veth_1_{what}_kpps")),
                get(veth, &format!("veth_N_{what}_kpps")),
            ) {
                let text = format!(
                    "veth, read through {how}: {what} {b:.0} kpps with 100,000 endpoints vs \
                     {a:.0} kpps with 1: N/1 = {:.3}",
                    b / a
                );
                push(veth, b / a, None, text);
            }
        }
        if let (Some(a), Some(b)) = (
            get(rate, "rate_1_no_loss_kpps"),
            get(rate, "rate_N_no_loss_kpps"),
        ) {
            let r = b / a;
            let ok = r >= 0.9;
            // A fleet that kept up with the unpaced sender was measured at the sender's limit:
            // its own lies above, so a ratio against it is an upper bound.
            let bound =
                |tag: &str| get(rate, &format!("rate_{tag}_sender_bound")).is_some_and(|v| v > 0.5);
            let note = match (bound("1"), bound("N")) {
                (true, false) => "; one endpoint kept up with the sender: N/1 is an upper bound",
                (false, true) => {
                    "; 100,000 endpoints kept up with the sender: N/1 is a lower bound"
                }
                (true, true) => "; both kept up with the sender: N/1 says only that both can",
                _ => "",
            };
            let text = format!(
                "veth, read through {how}, RFC 2544 throughput (loss <= {:.1}%): {b:.0} kpps \
                 with 100,000 endpoints vs {a:.0} kpps with 1: N/1 = {r:.3} (target >= 0.90): \
                 {}{note}",
                LOSS_TOLERANCE * 100.0,
                met(ok)
            );
            push(rate, r, Some(ok), text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        assert!(median(&mut []).is_nan());
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        let f = Figure::of(vec![90.0, 110.0, 100.0]);
        assert_eq!((f.median, f.min, f.max, f.n), (100.0, 90.0, 110.0, 3));
        assert!((f.spread_pct - 20.0).abs() < 1e-9);
        assert_eq!(Figure::of(vec![0.0, 0.0]).spread_pct, 0.0);
    }

    #[test]
    fn targets_read_the_medians() {
        let scenario = |name: &str, figures: &[(&str, f64)]| Scenario {
            name: name.to_owned(),
            layout: String::new(),
            runs: 1,
            notes: Vec::new(),
            figures: figures
                .iter()
                .map(|&(k, v)| (k.to_owned(), Figure::of(vec![v])))
                .collect(),
        };
        let t = targets(&[
            scenario(
                "reg:shared-1000x100",
                &[("register_ms", 1500.0), ("heap_bytes_per_endpoint", 873.0)],
            ),
            scenario("dispatch:ether-10k", &[("one_thread_ratio_N_over_1", 0.95)]),
            scenario(
                "rate:shared-1000x100",
                &[
                    ("rate_1_no_loss_kpps", 200.0),
                    ("rate_N_no_loss_kpps", 100.0),
                    ("rate_1_sender_bound", 1.0),
                    ("rate_N_sender_bound", 0.0),
                ],
            ),
        ]);
        let met: Vec<Option<bool>> = t.iter().map(|t| t.met).collect();
        assert_eq!(met, [Some(false), Some(true), Some(true), Some(false)]);
        assert_eq!(t[3].value, 0.5);
        assert!(
            t[3].text.ends_with("N/1 is an upper bound"),
            "{}",
            t[3].text
        );
    }
}
