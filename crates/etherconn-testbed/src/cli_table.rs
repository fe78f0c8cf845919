//! Checks a command-line tool against the table of bad inputs in its documentation, so that
//! the table and what the tool does cannot drift apart.
//!
//! The table sits between `<!-- bad-inputs: begin -->` and `<!-- bad-inputs: end -->`, one row
//! per command line: the arguments as a code span, the exit status, and the first line of
//! stderr as a code span, where `…` stands for any text. [`check_bad_inputs`] runs every row
//! and fails with all the rows that did not hold. Test support: it panics on a malformed table.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `bin` with every row of the bad-input table in `doc`, and panics listing each row
/// whose exit status or first stderr line differs, that printed to stdout or that panicked.
/// `min_rows` guards against a table that lost its rows (or markers that moved).
pub fn check_bad_inputs(bin: &str, doc: &str, min_rows: usize) {
    let rows = rows(doc);
    assert!(
        rows.len() >= min_rows,
        "only {} rows in the table",
        rows.len()
    );
    let name = bin.rsplit('/').next().unwrap_or(bin);
    let mut failures = Vec::new();
    for row in &rows {
        let out = run(bin, &row.args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("");
        let ok = out.status.code() == Some(row.status)
            && matches(&row.message, first)
            && !stderr.contains("panicked")
            && out.stdout.is_empty();
        if !ok {
            failures.push(format!(
                "{name} {:?}\n  want: {} {}\n  got:  {} {}\n  (stderr: {stderr:?})",
                row.args, row.status, row.message, out.status, first
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One row: the arguments, the exit status, and the first line of stderr (`…` stands for any
/// text).
#[derive(Debug)]
pub struct Row {
    /// The command line, program name left out.
    pub args: Vec<String>,
    /// The exit status.
    pub status: i32,
    /// The first line of stderr, `…` standing for any text.
    pub message: String,
}

/// The rows between the `bad-inputs` markers, header and rule left out.
pub fn rows(doc: &str) -> Vec<Row> {
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

/// Runs the binary `bin` with `args`, in a process group of its own, and kills the group if it has
/// not ended within [`LIMIT`]: a row that is not refused must fail the test, not start a run.
fn run(bin: &str, args: &[String]) -> Output {
    let mut child = Command::new(bin)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {bin}: {e}"));
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_table_is_read_between_its_markers() {
        let doc = "x\n<!-- bad-inputs: begin -->\n| args | status | stderr |\n|---|---|---|\n\
                   | `--a \"b c\"` | 2 | `error: …` |\n<!-- bad-inputs: end -->\n| `--z` | 1 | `no` |\n";
        let rows = rows(doc);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].args.as_slice(), rows[0].status),
            (&["--a".to_owned(), "b c".to_owned()][..], 2)
        );
        assert_eq!(rows[0].message, "error: …");
    }
}
