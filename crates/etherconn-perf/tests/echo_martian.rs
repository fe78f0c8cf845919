//! `etherconn-perf echo` is no reflector: from the other namespace of a testbed, scapy
//! (`crates/etherconn-udp/tests/peers/martian_peer.py`) sends the echo endpoint requests from
//! every source a host could not or would not answer (group source MACs; martian source
//! addresses; the subnet broadcast; source port 0; one of echo's own addresses; the IPv4
//! reserved flag), then the same request from an ordinary source, and sniffs what echo sends
//! back: only the ordinary request may be answered, and echo's report must count each refusal.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use etherconn_testbed::{leftover_namespaces, process_prefix, require_root, Side, Testbed};
use serde_json::{json, Value};

/// The `etherconn-perf` binary cargo built for these tests.
const BIN: &str = env!("CARGO_BIN_EXE_etherconn-perf");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const ECHO_MAC: &str = "02:ec:57:00:00:10";
const ECHO_IP: &str = "10.57.0.10";
const PEER_IP: &str = "10.57.0.1";
const PORT: u16 = 9000;

/// `martian_peer.py` in namespace `a`, on `a_if`.
struct Forger {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Forger {
    fn start(tb: &Testbed) -> Forger {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../etherconn-udp/tests/peers/martian_peer.py");
        let mut child =
            tb.a.command("python3")
                .arg(script)
                .arg(&tb.a_if)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start python3 martian_peer.py");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Forger {
            child,
            stdin,
            stdout,
        }
    }

    fn request(&mut self, request: &Value) -> Value {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("martian_peer.py replied {reply:?} ({e}) to {request}"))
    }
}

impl Drop for Forger {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The echo child, interrupted and reaped when dropped.
struct Echo(Option<Child>);

impl Echo {
    fn interrupt_and_wait(&mut self) -> Output {
        let child = self.0.take().expect("running");
        let pid = child.id().to_string();
        let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(status.success(), "kill -INT {pid}");
        child.wait_with_output().expect("wait for echo")
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A request to the echo endpoint.
fn request(src_mac: &str, src_ip: &str, sport: u16, payload: &str, ip_extra: Value) -> Value {
    json!({
        "src": src_mac, "dst": ECHO_MAC, "ipsrc": src_ip, "ipdst": ECHO_IP,
        "sport": sport, "dport": PORT, "payload": payload, "ip": ip_extra,
    })
}

/// The number after `key=` in `line`.
fn counter(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn echo_answers_only_where_a_host_could() {
    if !require_root("echo_answers_only_where_a_host_could") {
        return;
    }
    let prefix = "ecperf-m-";
    let tb = Testbed::new(prefix).expect("testbed");
    for side in [Side::A, Side::B] {
        let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
        tb.set_sysctl(side, &key, "1").unwrap();
    }
    let a_mac = tb
        .mac(Side::A)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");

    let mut child =
        tb.b.command(BIN)
            .args([
                "echo",
                "--iface",
                &tb.b_if,
                "--ip",
                &format!("{ECHO_IP}/24"),
                "--mac",
                ECHO_MAC,
                "--endpoints",
                "2",
                "--port",
                &PORT.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echo");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        let _ = lines.read_line(&mut first);
        let _ = tx.send(first);
        let mut rest = String::new();
        let _ = lines.read_to_string(&mut rest);
        rest
    });
    let mut echo = Echo(Some(child));
    let ready = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    if !ready.contains("ready") {
        let mut err = String::new();
        if let Some(mut c) = echo.0.take() {
            let _ = c.kill();
            if let Some(mut e) = c.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let _ = c.wait();
        }
        panic!("echo did not start: {ready:?} {err}");
    }

    let none = json!({});
    let spoofed = [
        // Group source MACs: the relay drops them.
        request(
            "ff:ff:ff:ff:ff:ff",
            PEER_IP,
            4000,
            "group broadcast",
            none.clone(),
        ),
        request(
            "01:00:5e:00:00:01",
            PEER_IP,
            4000,
            "group multicast",
            none.clone(),
        ),
        // Martian sources and port 0: echo refuses them.
        request(
            &a_mac,
            "255.255.255.255",
            4000,
            "limited broadcast",
            none.clone(),
        ),
        request(&a_mac, "224.0.0.1", 4000, "multicast", none.clone()),
        request(&a_mac, "0.0.0.0", 4000, "unspecified", none.clone()),
        request(&a_mac, "127.0.0.1", 4000, "loopback", none.clone()),
        request(&a_mac, "240.0.0.1", 4000, "class e", none.clone()),
        request(&a_mac, PEER_IP, 0, "port 0", none.clone()),
        // Its own subnet's broadcast and its own second endpoint's address.
        request(
            &a_mac,
            "10.57.0.255",
            4000,
            "subnet broadcast",
            none.clone(),
        ),
        request(&a_mac, "10.57.0.11", 4000, "own address", none.clone()),
        // The reserved flag: the endpoint set drops it.
        request(&a_mac, PEER_IP, 4000, "reserved flag", json!({"flags": 4})),
    ];
    let mut frames: Vec<Value> = spoofed.to_vec();
    frames.push(request(&a_mac, PEER_IP, 4000, "normal", none.clone()));
    let mut forger = Forger::start(&tb);
    let reply = forger.request(&json!({
        "send": frames,
        "watch": {"from_mac": ECHO_MAC, "until": "normal", "timeout_ms": 5000, "grace_ms": 500},
    }));
    drop(forger);
    assert_eq!(reply["sent"], frames.len(), "{reply}");
    let caught = reply["caught"].as_array().expect("caught").clone();
    let answered: Vec<&str> = caught
        .iter()
        .map(|c| c["payload"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(answered, ["normal"], "echo answered {caught:#?}");
    let normal = &caught[0];
    assert_eq!(normal["dst"], a_mac.as_str());
    assert_eq!(normal["ipsrc"], ECHO_IP);
    assert_eq!(normal["ipdst"], PEER_IP);
    assert_eq!(
        (normal["sport"].as_u64(), normal["dport"].as_u64()),
        (Some(9000), Some(4000))
    );

    let out = echo.interrupt_and_wait();
    let rest = reader.join().unwrap();
    assert!(
        out.status.success(),
        "echo exited with {}: {}",
        out.status,
        text(&out.stderr)
    );
    let line = |start: &str| {
        rest.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start:?} line in:\n{rest}"))
            .to_owned()
    };
    let summary = line("echo: received");
    assert!(
        summary.contains("echoed 1, refused 8,"),
        "echo printed: {rest}"
    );
    let refused = line("echo: refused ");
    for (key, n) in [
        ("sender_mac", 0),
        ("martian_source", 5),
        ("martian_destination", 0),
        ("port_zero", 1),
        ("subnet_broadcast", 1),
        ("own_address", 1),
    ] {
        assert_eq!(counter(&refused, key), n, "{key} in {refused}");
    }
    let counters = line("echo: tx_datagrams");
    assert_eq!(counter(&counters, "relay_rx_group_source"), 2, "{counters}");
    assert_eq!(counter(&counters, "rx_reserved_flag"), 1, "{counters}");

    drop(tb);
    assert_eq!(
        leftover_namespaces(&process_prefix(prefix)),
        Vec::<String>::new()
    );
}
