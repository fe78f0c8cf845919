//! The built `etherconn-perf` against hostile command lines: every row of the bad-input table
//! in `docs/performance-tool.md` (so the table and what the tool does cannot drift apart), and
//! Ctrl-C in the middle of a large set-up. The table is read and run by
//! `etherconn_testbed::cli_table`.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etherconn_testbed::{require_root, Testbed};

const BIN: &str = env!("CARGO_BIN_EXE_etherconn-perf");

/// The documentation, read at build time so that a changed table rebuilds the test.
const DOC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/performance-tool.md"
));

#[test]
fn every_bad_input_in_the_doc_exits_2_with_its_message() {
    etherconn_testbed::cli_table::check_bad_inputs(BIN, DOC, 50);
}

#[test]
fn ctrl_c_during_a_large_set_up_stops_it_promptly() {
    if !require_root("ctrl_c_during_a_large_set_up_stops_it_promptly") {
        return;
    }
    let tb = Testbed::new("ecperf-i-").expect("testbed");
    // 65,536 endpoints with 512-frame queues: about 0.8 GB and a few seconds of set-up in a
    // debug build, if it ran to the end.
    let mut child =
        tb.b.command(BIN)
            .args(["echo", "--iface", &tb.b_if, "--ip", "10.57.0.1/8"])
            .args(["--mac", "02:ec:57:00:00:01", "--endpoints", "65536"])
            .args(["--queue-depth", "512"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echo");
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -INT {pid}");
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for echo") {
            break status;
        }
        if sent.elapsed() > Duration::from_secs(2) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("echo still running 2 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = sent.elapsed();
    let mut stdout = String::new();
    let mut stderr = String::new();
    let _ = child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout);
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    if stdout.contains("ready") {
        // The machine finished the set-up in under half a second: what is left to see is
        // that SIGINT ends the serving loop, which it does with status 0.
        eprintln!("set-up finished before SIGINT ({took:?}); only the exit was checked");
        assert_eq!(status.code(), Some(0), "{stderr}");
    } else {
        assert_eq!(status.code(), Some(130), "{stderr}");
        assert!(
            stderr.contains("interrupted while registering endpoint"),
            "{stderr}"
        );
    }
    eprintln!("echo exited {took:?} after SIGINT");
}
