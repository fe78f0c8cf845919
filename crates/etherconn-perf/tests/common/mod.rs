//! What the smoke tests share: the built binary, running `bench`, and reading what it printed.

use std::process::{Command, Output, Stdio};

use etherconn_testbed::leftover_namespaces;
use serde_json::Value;

/// The `etherconn-perf` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_etherconn-perf");

/// Printed bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one JSON object `out` printed on stdout (`--json`).
pub fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// The element of array `array` of `json` whose `key` is `value`.
pub fn find<'a>(json: &'a Value, array: &str, key: &str, value: &str) -> &'a Value {
    json[array]
        .as_array()
        .unwrap_or_else(|| panic!("no {array} array in {json:#}"))
        .iter()
        .find(|e| e[key] == value)
        .unwrap_or_else(|| panic!("no {array} element with {key} {value} in {json:#}"))
}

/// Runs `etherconn-perf args...` (a `bench` command with `--json`) to completion, asserting it
/// succeeded and left no namespace behind; its JSON and its output.
// The scale tests run `scale`, whose testbeds are named differently.
#[allow(dead_code)]
pub fn run_bench(args: &[&str]) -> (Value, Output) {
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etherconn-perf");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait for etherconn-perf");
    assert!(
        out.status.success(),
        "etherconn-perf {args:?} failed ({}):\n{}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(
        leftover_namespaces(&format!("ecperf-{pid}-")),
        Vec::<String>::new(),
        "bench left namespaces behind"
    );
    (stdout_json(&out), out)
}
