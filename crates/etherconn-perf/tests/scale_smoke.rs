//! Runs the built `etherconn-perf scale` as a user would, on its smallest in-process scenarios
//! with tiny counts (and, as root, one veth scenario with a short phase): the output must be
//! well formed, the figures there and sane; no speed is asserted.

use std::process::{Command, Output};
use std::sync::{Mutex, PoisonError};

use etherconn_testbed::{leftover_namespaces, require_root};
use serde_json::Value;

mod common;

use common::{find, stdout_json, text, BIN};

/// The runs load both CPUs; one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `etherconn-perf scale args...`, asserting it succeeded.
fn scale(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .arg("scale")
        .args(args)
        .output()
        .expect("run etherconn-perf scale");
    assert!(
        out.status.success(),
        "etherconn-perf scale {args:?} failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// [`scale`] with `--json`: the one JSON object on stdout.
fn scale_json(args: &[&str]) -> (Value, Output) {
    let out = scale(&[args, &["--json"]].concat());
    (stdout_json(&out), out)
}

fn scenario<'a>(json: &'a Value, name: &str) -> &'a Value {
    find(json, "scenarios", "name", name)
}

/// The median of figure `key` of scenario `s`, checking the figure's fields on the way.
fn median(s: &Value, key: &str) -> f64 {
    let f = &s["figures"][key];
    for field in ["min", "max", "spread_pct"] {
        assert!(f[field].is_number(), "{key}.{field} missing: {s:#}");
    }
    assert!(f["n"].as_u64().unwrap_or(0) >= 1, "{key}.n: {s:#}");
    f["median"]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} has no median in {s:#}"))
}

#[test]
fn scale_json_has_the_in_process_figures_and_targets() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (json, out) = scale_json(&[
        "--only",
        "reg:ether-10k",
        "--only",
        "dispatch:ether-10k",
        "--reps",
        "1",
        "--frames",
        "1000",
    ]);
    assert!(json["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert_eq!(json["reps"], 1);
    assert_eq!(json["frames"], 1000);
    assert_eq!(json["interrupted"], false);
    let names: Vec<&str> = json["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["reg:ether-10k", "dispatch:ether-10k"]);

    let reg = scenario(&json, "reg:ether-10k");
    assert_eq!(reg["layout"], "10000 EtherConn");
    assert_eq!(reg["runs"], 1);
    // Three keys (ARP, IPv4, IPv6) per EtherConn, none left after deregistering.
    assert_eq!(median(reg, "l2_keys"), 30_000.0);
    assert_eq!(median(reg, "l4_keys"), 0.0);
    // Counted by the tool's allocator: nothing counted would read 0.
    let heap = median(reg, "heap_bytes_per_endpoint");
    assert!(
        (100.0..24.0 * 1024.0).contains(&heap),
        "{heap} heap bytes per EtherConn"
    );
    for key in ["register_ms", "unregister_ms", "size_of_EtherConn"] {
        assert!(median(reg, key) > 0.0, "{key}: {reg:#}");
    }

    let dispatch = scenario(&json, "dispatch:ether-10k");
    for mode in ["one_thread", "two_threads", "inbox_one_thread"] {
        let ratio = median(dispatch, &format!("{mode}_ratio_N_over_1"));
        assert!(ratio > 0.0 && ratio.is_finite(), "{mode}: {ratio}");
        // Three measurements per run.
        assert_eq!(dispatch["figures"][format!("{mode}_1_mfps")]["n"], 3);
    }
    let targets = json["targets"].as_array().expect("targets array");
    assert_eq!(targets.len(), 3, "{targets:#?}");
    for t in targets {
        assert_eq!(t["scenario"], "dispatch:ether-10k");
        assert!(t["met"].is_boolean() && t["value"].is_number(), "{t:#}");
    }
    // The text goes to stderr with --json.
    let err = text(&out.stderr);
    assert!(
        err.contains("== dispatch:ether-10k: 10000 EtherConn (1 runs)"),
        "{err}"
    );
    assert!(err.contains("== targets"), "{err}");
}

#[test]
fn scale_lists_scenarios_and_runs_one_child() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let list = text(&scale(&["--list"]).stdout);
    assert_eq!(list.lines().count(), 17, "{list}");
    for name in [
        "reg:shared-1000x100",
        "dispatch:ether-10k",
        "rate-inbox:shared-1000x100",
    ] {
        assert!(
            list.lines().any(|l| l.starts_with(name)),
            "{name} not in {list}"
        );
    }
    // One run, as the parent runs it: figures as `R name value` lines.
    let child = text(&scale(&["--child", "reg:ether-10k", "17"]).stdout);
    let heap: f64 = child
        .lines()
        .find_map(|l| l.strip_prefix("R heap_bytes_per_endpoint "))
        .unwrap_or_else(|| panic!("no heap figure in {child}"))
        .parse()
        .unwrap();
    assert!(heap > 100.0, "{child}");
    let bad = Command::new(BIN)
        .args(["scale", "--child", "reg:nothing", "1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("no scenario reg:nothing"));
}

#[test]
fn scale_veth_inbox_moves_frames_and_cleans_up() {
    if !require_root("scale_veth_inbox_moves_frames_and_cleans_up") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (json, _) = scale_json(&["--only", "veth-inbox", "--reps", "1", "--veth-secs", "0.3"]);
    let veth = scenario(&json, "veth-inbox:shared-1000x100");
    assert_eq!(veth["notes"], Value::Array(Vec::new()), "{veth:#}");
    for tag in ["1", "N"] {
        for key in ["sent_kpps", "delivered_kpps", "received_kpps"] {
            let v = median(veth, &format!("veth_{tag}_{key}"));
            assert!(v > 0.0, "veth_{tag}_{key} = {v}: {veth:#}");
        }
        // Two phases per run.
        assert_eq!(veth["figures"][format!("veth_{tag}_sent_kpps")]["n"], 2);
    }
    let targets = json["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "delivered and received: {targets:#?}");
    assert!(targets.iter().all(|t| t["met"].is_null()));
    // Each run's testbed went with its process.
    assert_eq!(leftover_namespaces("ecscale-"), Vec::<String>::new());
}
