//! `etherconn-perf echo --pcap`: the kernel's UDP stack in the other namespace of a testbed
//! sends datagrams to the echo endpoint and reads the echoes; SIGINT ends echo, and the file
//! it leaves, read by tshark, holds every frame the relay counted, both ways, with good
//! checksums: Ctrl-C closes the capture.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.

use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use etherconn_testbed::{
    leftover_namespaces, process_prefix, require_root, tshark_fields, Side, Testbed,
};

const BIN: &str = env!("CARGO_BIN_EXE_etherconn-perf");

/// The number after `key=` in `line`.
fn counter(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn echo_capture_survives_ctrl_c_and_matches_the_counters() {
    if !require_root("echo_capture_survives_ctrl_c_and_matches_the_counters") {
        return;
    }
    let prefix = "ecperf-p-";
    let tb = Testbed::new(prefix).expect("testbed");
    for side in [Side::A, Side::B] {
        let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
        tb.set_sysctl(side, &key, "1").unwrap();
    }
    // The kernel fills in UDP checksums itself instead of leaving them to an offload that a
    // veth never performs, so that the frames on the "wire" carry real ones.
    tb.set_offloads(Side::A, &[("tx", "off")]).unwrap();
    tb.add_addr(Side::A, "10.59.0.1/24").unwrap();
    let file =
        std::env::temp_dir().join(format!("etherconn-perf-echo-{}.pcapng", std::process::id()));

    let mut child =
        tb.b.command(BIN)
            .args(["echo", "--iface", &tb.b_if, "--ip", "10.59.0.10/24"])
            .args(["--mac", "02:ec:59:00:00:10", "--port", "9000", "--pcap"])
            .arg(&file)
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
    let ready = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
    if !ready.contains("ready") {
        let _ = child.kill();
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = child.wait();
        panic!("echo did not start: {ready:?} {err}");
    }

    const N: usize = 20;
    let echoed =
        tb.a.run_in(|| {
            let sock = UdpSocket::bind("10.59.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut buf = [0u8; 2048];
            let mut echoed = 0;
            for i in 0..N as u64 {
                let mut payload = [0u8; 64];
                payload[..8].copy_from_slice(&i.to_be_bytes());
                sock.send_to(&payload, "10.59.0.10:9000").unwrap();
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    echoed += usize::from(buf[..n] == payload);
                }
            }
            echoed
        })
        .unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let rest = reader.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "echo: {rest} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(echoed, N, "echoes received");
    let counters = rest
        .lines()
        .find(|l| l.contains("relay_captured="))
        .unwrap_or_else(|| panic!("no counters in {rest}"));
    let (tx, rx_offered) = (
        counter(counters, "relay_tx"),
        counter(counters, "relay_rx_offered"),
    );
    assert_eq!(
        counter(counters, "relay_captured"),
        tx + rx_offered,
        "{counters}"
    );
    assert_eq!(counter(counters, "relay_capture_dropped"), 0, "{counters}");

    let rows = tshark_fields(
        &file,
        &[
            "frame.packet_flags_direction",
            "udp.srcport",
            "udp.dstport",
            "ip.checksum.status",
            "udp.checksum.status",
            "arp.opcode",
        ],
    )
    .unwrap();
    let _ = std::fs::remove_file(&file);
    assert_eq!(rows.len() as u64, tx + rx_offered, "{counters}\n{rows:?}");
    let pick = |dir: &str, col: usize| -> Vec<&Vec<String>> {
        rows.iter()
            .filter(|r| r[0] == dir && r[col] == "9000")
            .collect()
    };
    let inbound = pick("0x00000001", 2);
    let outbound = pick("0x00000002", 1);
    for (dir, frames) in [("requests", inbound), ("echoes", outbound)] {
        assert_eq!(frames.len(), N, "{dir}: {rows:?}");
        for r in frames {
            assert_eq!(
                (r[3].as_str(), r[4].as_str()),
                ("1", "1"),
                "{dir}: checksums {r:?}"
            );
        }
    }
    // The kernel asked for echo's MAC, and the relay answered: both in the file.
    assert!(
        rows.iter().any(|r| r[0] == "0x00000001" && r[5] == "1"),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r[0] == "0x00000002" && r[5] == "2"),
        "{rows:?}"
    );
    drop(tb);
    assert!(leftover_namespaces(&process_prefix(prefix)).is_empty());
}
