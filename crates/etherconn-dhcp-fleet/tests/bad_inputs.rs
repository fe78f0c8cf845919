//! The built `dhcp_fleet` against hostile command lines: every row of the bad-input table in
//! `docs/dhcp-fleet.md`, so that the table and what the tool does cannot drift apart.
//!
//! The table parser has a twin in `etherconn-perf/tests/bad_inputs.rs`, for that tool's table;
//! the two crates share no test code.

#![cfg(target_os = "linux")]

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dhcp_fleet");

/// The documentation, read at build time so that a changed table rebuilds the test.
const DOC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/dhcp-fleet.md"
));

/// One row: the arguments, the exit status, and the first line of stderr (`…` stands for any
/// text).
#[derive(Debug)]
struct Row {
    args: Vec<String>,
    status: i32,
    message: String,
}

/// The rows between the `bad-inputs` markers, header and rule left out.
fn rows(doc: &str) -> Vec<Row> {
    let begin = doc
        .find("<!-- bad-inputs: begin -->")
        .expect("no bad-inputs begin marker in the doc");
    let end = doc
        .find("<!-- bad-inputs: end -->")
        .expect("no bad-inputs end marker in the doc");
    doc[begin..end]
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            let [args, status, message] = cells[..] else {
                panic!("not three cells: {line}");
            };
            Row {
                args: split_args(code(args)),
                status: status
                    .parse()
                    .unwrap_or_else(|_| panic!("status in {line}")),
                message: code(message).to_owned(),
            }
        })
        .collect()
}

/// The text of a Markdown code span: `` `x` `` or ``` `` x `` ```.
fn code(cell: &str) -> &str {
    if let Some(inner) = cell.strip_prefix("`` ").and_then(|c| c.strip_suffix(" ``")) {
        return inner;
    }
    if let Some(inner) = cell.strip_prefix("``").and_then(|c| c.strip_suffix("``")) {
        return inner;
    }
    cell.strip_prefix('`')
        .and_then(|c| c.strip_suffix('`'))
        .unwrap_or_else(|| panic!("not a code span: {cell}"))
}

/// Splits at spaces; `"..."` is one argument (`""` the empty one).
fn split_args(s: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur: Option<String> = None;
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.get_or_insert_with(String::new);
            }
            ' ' if !quoted => args.extend(cur.take()),
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(!quoted, "unbalanced quotes in {s}");
    args.extend(cur);
    args
}

/// Whether `line` is `pattern` with each `…` standing for any text.
fn matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    let [first, middle @ .., last] = &parts[..] else {
        return pattern == line;
    };
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Runs the binary with `args`, in a process group of its own, and kills the group if it has
/// not ended within [`LIMIT`]: a row that is not refused must fail the test, not start a run.
fn run(args: &[String]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dhcp_fleet");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > LIMIT {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("wait")
}

/// How long a refusal may take (a debug build, on a loaded machine).
const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn the_parsers_of_the_table() {
    assert_eq!(split_args(r#"a "" "b c"  d"#), ["a", "", "b c", "d"]);
    assert_eq!(code("`` a `b` ``"), "a `b`");
    assert_eq!(code("`x`"), "x");
    assert!(matches("a … b … c", "a 1 b 2 c"));
    assert!(!matches("a … c", "a 1 b"));
    assert!(matches("abc", "abc"));
    assert!(!matches("abc", "abcd"));
}

#[test]
fn every_bad_input_in_the_doc_exits_2_with_its_message() {
    let rows = rows(DOC);
    assert!(rows.len() >= 30, "only {} rows in the table", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let out = run(&row.args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("");
        let ok = out.status.code() == Some(row.status)
            && matches(&row.message, first)
            && !stderr.contains("panicked")
            && out.stdout.is_empty();
        if !ok {
            failures.push(format!(
                "dhcp_fleet {:?}\n  want: {} {}\n  got:  {} {}\n  (stderr: {stderr:?})",
                row.args, row.status, row.message, out.status, first
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
