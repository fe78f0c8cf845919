//! What the smoke tests share: the built binary, and reading what it printed.

use std::process::Output;

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
