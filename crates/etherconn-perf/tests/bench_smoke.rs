//! Runs the built `etherconn-perf` as a user would: `bench` on the testbed it makes itself, and
//! `echo` in one namespace of a testbed made here, driven by `send` and by a kernel UDP socket
//! and `ping` (which reach the echo endpoints through their ARP or IPv6 neighbour discovery
//! responder) from the other, over IPv4 and IPv6.
//!
//! Packets must flow and the output must be well formed; no figure is asserted.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use etherconn_testbed::{leftover_namespaces, process_prefix, require_root, Side, Testbed};
use serde_json::Value;

mod common;

use common::{find, run_bench, text, BIN};

/// The tests load both CPUs; one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn result<'a>(json: &'a Value, backend: &str) -> &'a Value {
    find(json, "results", "backend", backend)
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v:#}"))
}

#[test]
fn bench_json_has_every_backend_and_packets_flowed() {
    if !require_root("bench_json_has_every_backend_and_packets_flowed") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (json, out) = run_bench(&[
        "bench",
        "--seconds",
        "1",
        "--json",
        "--endpoints",
        "4",
        "--warmup",
        "0.3",
    ]);
    assert!(json["machine"]["nproc"].as_u64().unwrap() >= 1);
    assert!(!json["machine"]["kernel"].as_str().unwrap().is_empty());
    assert_eq!(json["mode"], "default");
    assert_eq!(json["interrupted"], false);
    let backends: Vec<&str> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["backend"].as_str().unwrap())
        .collect();
    assert_eq!(backends, ["kernel", "rawsock", "rudp"]);
    for backend in ["kernel", "rawsock", "rudp"] {
        let r = result(&json, backend);
        for key in ["tx_pps", "rx_pps", "rx_bps"] {
            assert!(num(r, key) > 0.0, "{backend} {key} is 0: {r:#}");
        }
        let loss = num(r, "loss");
        assert!((0.0..=1.0).contains(&loss), "{backend} loss {loss}");
        assert!(r["rx_total"].as_u64().unwrap() > 0);
        assert!(r["rx_total"].as_u64().unwrap() <= r["tx_total"].as_u64().unwrap());
        assert_eq!(r["bad_payload"], 0, "{backend}: {r:#}");
        assert_eq!(r["payload"], 64);
        assert!(num(r, "ratio_to_kernel") > 0.0);
    }
    assert_eq!(num(result(&json, "kernel"), "ratio_to_kernel"), 1.0);
    let raw = result(&json, "rawsock");
    assert_eq!(raw["endpoints"], 4);
    assert!(raw["rx_counters"]["relay_rx_delivered"].as_u64().unwrap() > 0);
    assert!(raw["tx_counters"]["relay_tx"].as_u64().unwrap() > 0);
    let rudp = result(&json, "rudp");
    assert_eq!(rudp["endpoints"], 4);
    assert_eq!(rudp["tx_path"], "send_batch");
    assert!(rudp["rx_counters"]["relay_rx_delivered"].as_u64().unwrap() > 0);
    assert!(rudp["rx_counters"]["rx_datagrams"].as_u64().unwrap() > 0);
    assert!(rudp["tx_counters"]["relay_tx"].as_u64().unwrap() > 0);
    assert!(rudp["tx_counters"]["tx_send_batch_calls"].as_u64().unwrap() > 0);
    // The table goes to stderr with --json.
    assert!(text(&out.stderr).contains("x kernel"));
}

/// `--rate` paces every sender: each one's tx pps is the rate (a light load, so a loaded
/// machine still keeps it), the JSON and the header line say so, and the datagrams arrive.
/// (Not necessarily all: with other work on the machine, a receiving thread kept from its CPU
/// for tens of milliseconds lost 2% of them in one run.)
#[test]
fn bench_rate_paces_every_sender() {
    if !require_root("bench_rate_paces_every_sender") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (json, out) = run_bench(&[
        "bench",
        "--rate",
        "20000",
        "--seconds",
        "1",
        "--json",
        "--endpoints",
        "4",
        "--warmup",
        "0.3",
    ]);
    assert_eq!(json["rate_pps"], 20000);
    for backend in ["kernel", "rawsock", "rudp"] {
        let r = result(&json, backend);
        let tx = num(r, "tx_pps");
        assert!(
            (17_000.0..=23_000.0).contains(&tx),
            "{backend}: tx {tx} pps at --rate 20000: {r:#}"
        );
        let (sent, got) = (num(r, "tx_total"), num(r, "rx_total"));
        assert!(
            got <= sent && got >= 0.9 * sent,
            "{backend}: {got} of {sent} received: {r:#}"
        );
    }
    assert!(text(&out.stderr).contains("paced at 20,000 pps"));

    // Without it, the JSON says so.
    let (json, _) = run_bench(&[
        "bench",
        "--backend",
        "kernel",
        "--seconds",
        "0.2",
        "--warmup",
        "0",
        "--json",
    ]);
    assert_eq!(json["rate_pps"], Value::Null);
}

/// `--backend pcap` (feature `pcap`, on by default) measures the libpcap relay in the same run
/// as the kernel baseline and the AF_PACKET relay.
#[cfg(feature = "pcap")]
#[test]
fn bench_pcap_beside_kernel_and_rawsock() {
    if !require_root("bench_pcap_beside_kernel_and_rawsock") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (json, _) = run_bench(&[
        "bench",
        "--backend",
        "kernel,rawsock,pcap",
        "--seconds",
        "1",
        "--json",
        "--endpoints",
        "4",
        "--warmup",
        "0.3",
    ]);
    let backends: Vec<&str> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["backend"].as_str().unwrap())
        .collect();
    assert_eq!(backends, ["kernel", "rawsock", "pcap"]);
    let pcap = result(&json, "pcap");
    for key in ["tx_pps", "rx_pps", "ratio_to_kernel"] {
        assert!(num(pcap, key) > 0.0, "pcap {key} is 0: {pcap:#}");
    }
    assert_eq!(pcap["bad_payload"], 0, "{pcap:#}");
    assert_eq!(pcap["endpoints"], 4);
    assert!(pcap["rx_counters"]["relay_rx_delivered"].as_u64().unwrap() > 0);
    assert!(pcap["tx_counters"]["relay_tx"].as_u64().unwrap() > 0);
    // Counters that stayed 0 are left out of the JSON.
    let invalid = pcap["rx_counters"]["relay_rx_invalid"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(invalid, 0, "{pcap:#}");
}

/// `--backend pcap --pcap FILE`: the libpcap relay receiving measures once without and once
/// with capturing to FILE (`pcap+pcap`), and tshark reads back as many frames as that relay
/// says it captured, every datagram the checker counted among them.
#[cfg(feature = "pcap")]
#[test]
fn bench_pcap_backend_captures_to_the_pcap_file() {
    if !require_root("bench_pcap_backend_captures_to_the_pcap_file") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let file = std::env::temp_dir().join(format!(
        "etherconn-perf-bench-pcap-{}.pcapng",
        std::process::id()
    ));
    let (json, _) = run_bench(&[
        "bench",
        "--backend",
        "pcap",
        "--seconds",
        "0.5",
        "--json",
        "--endpoints",
        "2",
        "--warmup",
        "0.2",
        "--pcap",
        file.to_str().unwrap(),
    ]);
    let backends: Vec<&str> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["backend"].as_str().unwrap())
        .collect();
    assert_eq!(backends, ["pcap", "pcap+pcap"]);
    let plain = result(&json, "pcap");
    assert_eq!(
        plain["rx_counters"]["relay_captured"].as_u64().unwrap_or(0),
        0
    );
    let captured = result(&json, "pcap+pcap");
    let rxc = &captured["rx_counters"];
    let n = rxc["relay_captured"].as_u64().unwrap_or(0);
    let dropped = rxc["relay_capture_dropped"].as_u64().unwrap_or(0);
    let offered = rxc["relay_rx_offered"].as_u64().unwrap_or(0);
    let tx = rxc["relay_tx"].as_u64().unwrap_or(0);
    assert!(n > 0, "{captured:#}");
    assert_eq!(n + dropped, offered + tx, "{captured:#}");
    if etherconn_testbed::tshark_available() {
        let rows = etherconn_testbed::tshark_fields(&file, &["udp.dstport"]).unwrap();
        assert_eq!(rows.len() as u64, n, "frames in the file");
        assert!(
            rows.iter().all(|r| r[0] == "9000"),
            "only the bench's datagrams"
        );
    }
    let _ = std::fs::remove_file(&file);
}

#[test]
fn bench_qinq_reaches_tagged_endpoints() {
    if !require_root("bench_qinq_reaches_tagged_endpoints") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (json, _) = run_bench(&[
        "bench",
        "--seconds",
        "0.5",
        "--warmup",
        "0.1",
        "--json",
        "--endpoints",
        "3",
        "--payload",
        "1400",
        "--qinq",
        "200.100",
    ]);
    let raw = result(&json, "rawsock");
    assert_eq!(raw["vlans"], "200.100");
    assert_eq!(raw["frame_bytes"], 1450);
    assert!(num(raw, "rx_pps") > 0.0);
    assert_eq!(raw["rx_counters"]["misaddressed"].as_u64().unwrap_or(0), 0);
    let rudp = result(&json, "rudp");
    assert_eq!(rudp["vlans"], "200.100");
    assert_eq!(rudp["frame_bytes"], 1450);
    assert!(num(rudp, "rx_pps") > 0.0);
    assert_eq!(rudp["bad_payload"], 0, "{rudp:#}");
    assert_eq!(rudp["rx_counters"]["misaddressed"].as_u64().unwrap_or(0), 0);
    let kernel = result(&json, "kernel");
    assert_eq!(kernel["vlans"], "none");
    assert!(kernel["note"].as_str().unwrap().contains("untagged"));
}

#[test]
fn bench_three_tags_reach_tagged_endpoints() {
    if !require_root("bench_three_tags_reach_tagged_endpoints") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let (json, _) = run_bench(&[
        "bench",
        "--backend",
        "rawsock,rudp",
        "--seconds",
        "0.5",
        "--warmup",
        "0.1",
        "--json",
        "--endpoints",
        "3",
        "--payload",
        "1400",
        "--vlans",
        "300.200.100",
    ]);
    for backend in ["rawsock", "rudp"] {
        let r = result(&json, backend);
        assert_eq!(r["vlans"], "300.200.100", "{r:#}");
        // 14 + 3 tags of 4 + 20 + 8 + 1400.
        assert_eq!(r["frame_bytes"], 1454, "{r:#}");
        assert!(num(r, "rx_pps") > 0.0, "{r:#}");
        assert_eq!(r["bad_payload"].as_u64().unwrap_or(0), 0, "{r:#}");
        assert_eq!(r["rx_counters"]["misaddressed"].as_u64().unwrap_or(0), 0);
    }
}

/// A child process that is interrupted and reaped when dropped (a failing test leaves no echo
/// running; the testbed's namespace removal would kill it too).
struct Running(Option<Child>);

impl Running {
    fn interrupt_and_wait(&mut self) -> Output {
        let child = self.0.take().expect("running");
        let pid = child.id().to_string();
        let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(status.success(), "kill -INT {pid}");
        child.wait_with_output().expect("wait for echo")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The addresses of one family for [`echo_and_send`].
struct Family {
    prefix: &'static str,
    /// The kernel's address (namespace `a`), with its prefix.
    kernel: &'static str,
    /// Echo endpoint 0's address and prefix; endpoint i has + i.
    echo: &'static str,
    /// Echo endpoint `i`'s address and port 9000.
    echo_at: fn(u8) -> String,
    /// The address `send` sends from.
    send_ip: &'static str,
    /// The counter of the responder's answers `echo` prints.
    replies: &'static str,
}

#[test]
fn echo_answers_send_and_a_kernel_client_through_arp() {
    echo_and_send(&Family {
        prefix: "ecperf-t-",
        kernel: "10.56.0.1/24",
        echo: "10.56.0.10/24",
        echo_at: |i| format!("10.56.0.{}:9000", 10 + i),
        send_ip: "10.56.0.100",
        replies: "arp_replies=",
    });
}

#[test]
fn echo_answers_send_and_a_kernel_client_over_ipv6_through_neighbour_discovery() {
    echo_and_send(&Family {
        prefix: "ecperf-6-",
        kernel: "2001:db8:56::1/64",
        echo: "2001:db8:56::10/64",
        echo_at: |i| format!("[2001:db8:56::{:x}]:9000", 0x10 + i),
        send_ip: "2001:db8:56::100",
        replies: "na_replies=",
    });
}

/// `echo` on 4 endpoints in namespace `b`; `send` from namespace `a` finds endpoint 1's MAC
/// (ARP or neighbour discovery) and gets echoes; a kernel UDP socket in `a`, with no static
/// neighbour entry, gets an echo from every endpoint, and `ping` an answer.
fn echo_and_send(f: &Family) {
    if !require_root(&format!("echo_and_send {}", f.echo)) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let tb = Testbed::new(f.prefix).expect("testbed");
    tb.add_addr(Side::A, f.kernel).unwrap();

    let mut child =
        tb.b.command(BIN)
            .args([
                "echo",
                "--iface",
                &tb.b_if,
                "--ip",
                f.echo,
                "--mac",
                "02:ec:56:00:00:10",
                "--endpoints",
                "4",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echo");
    // Wait for its "ready" line on a thread, so that a hung echo fails the test instead of
    // hanging it; the rest of stdout is read after it exits.
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
    let mut echo = Running(Some(child));
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

    // etherconn on both ends: `send` finds the echo endpoint's MAC with ARP or ND.
    let out =
        tb.a.command(BIN)
            .args([
                "send",
                "--iface",
                &tb.a_if,
                "--dst",
                &(f.echo_at)(1),
                "--mac",
                "02:ec:56:00:01:00",
                "--ip",
                f.send_ip,
                "--endpoints",
                "3",
                "--seconds",
                "0.5",
                "--rate",
                "2000",
                "--payload",
                "100",
                "--json",
            ])
            .output()
            .expect("run send");
    assert!(
        out.status.success(),
        "send failed ({}): {}",
        out.status,
        text(&out.stderr)
    );
    let sent: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("send JSON ({e}): {}", text(&out.stdout)));
    assert_eq!(sent["dst_mac"], "02:ec:56:00:00:11");
    let (n_sent, n_back) = (
        sent["sent"].as_u64().unwrap(),
        sent["received"].as_u64().unwrap(),
    );
    assert!(n_sent > 0, "{sent:#}");
    assert!(n_back > 0, "no echo came back: {sent:#}");
    assert_eq!(sent["bad_payload"], 0, "{sent:#}");
    assert!(sent["rtt"]["max_us"].as_f64().unwrap() > 0.0);

    // The kernel's UDP stack as the client, without static neighbours: ARP or neighbour
    // solicitations must be answered for every endpoint, and each echo must come from the
    // address it was sent to.
    let kernel_ip: std::net::IpAddr = f.kernel.split('/').next().unwrap().parse().unwrap();
    let sock =
        tb.a.run_in(|| UdpSocket::bind(SocketAddr::new(kernel_ip, 0)))
            .unwrap()
            .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    for ep in 0..4u8 {
        let dst: SocketAddr = (f.echo_at)(ep).parse().unwrap();
        let msg = format!("hello endpoint {ep}");
        sock.send_to(msg.as_bytes(), dst).unwrap();
        let mut buf = [0u8; 256];
        let (n, from) = sock
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no echo from {dst}: {e}"));
        assert_eq!((&buf[..n], from), (msg.as_bytes(), dst));
        let ping =
            tb.a.exec(&["ping", "-c", "1", "-W", "2", &dst.ip().to_string()]);
        assert!(ping.is_ok_and(|o| o.status.success()), "ping {}", dst.ip());
    }

    let out = echo.interrupt_and_wait();
    let rest = reader.join().unwrap();
    assert!(
        out.status.success(),
        "echo exited with {}: {}",
        out.status,
        text(&out.stderr)
    );
    assert!(rest.contains("echo: received"), "echo printed: {rest}");
    assert!(rest.contains(f.replies), "echo printed: {rest}");
    assert!(rest.contains("echo_replies="), "echo printed: {rest}");
    drop(tb);
    assert_eq!(
        leftover_namespaces(&process_prefix(f.prefix)),
        Vec::<String>::new()
    );
}

/// `--backend kernel,rawsock,xdp,xdp-rudp` (feature `xdp`): EtherConns and RUdpConns on
/// AF_XDP relays in the same run as the kernel baseline and the AF_PACKET relay, then
/// `--queues 2` (a two-queue veth pair, each relay serving both queues) with a capture
/// (`--pcap`) whose frame count matches the relay's counters.
#[cfg(feature = "xdp")]
#[test]
fn bench_xdp() {
    if !require_root("bench_xdp") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let backends_of = |json: &Value| -> Vec<String> {
        json["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["backend"].as_str().unwrap().to_owned())
            .collect()
    };
    let (json, _) = run_bench(&[
        "bench",
        "--backend",
        "kernel,rawsock,xdp,xdp-rudp",
        "--seconds",
        "1",
        "--json",
        "--endpoints",
        "4",
        "--warmup",
        "0.3",
    ]);
    assert_eq!(backends_of(&json), ["kernel", "rawsock", "xdp", "xdp-rudp"]);
    for name in ["xdp", "xdp-rudp"] {
        let r = result(&json, name);
        for key in ["tx_pps", "rx_pps", "ratio_to_kernel"] {
            assert!(num(r, key) > 0.0, "{name} {key} is 0: {r:#}");
        }
        assert_eq!(r["bad_payload"], 0, "{r:#}");
        assert_eq!(r["endpoints"], 4);
        assert!(r["rx_counters"]["relay_rx_delivered"].as_u64().unwrap() > 0);
        assert!(r["tx_counters"]["relay_tx"].as_u64().unwrap() > 0);
        let invalid = r["rx_counters"]["relay_rx_invalid"].as_u64().unwrap_or(0);
        assert_eq!(invalid, 0, "{r:#}");
    }

    let file = std::env::temp_dir().join(format!(
        "etherconn-perf-bench-xdp-{}.pcapng",
        std::process::id()
    ));
    let (json, _) = run_bench(&[
        "bench",
        "--backend",
        "xdp",
        "--queues",
        "2",
        "--seconds",
        "0.5",
        "--json",
        "--endpoints",
        "2",
        "--warmup",
        "0.2",
        "--pcap",
        file.to_str().unwrap(),
    ]);
    assert_eq!(backends_of(&json), ["xdp-2q", "xdp-2q+pcap"]);
    let plain = result(&json, "xdp-2q");
    assert!(num(plain, "rx_pps") > 0.0, "{plain:#}");
    let captured = result(&json, "xdp-2q+pcap");
    let rxc = &captured["rx_counters"];
    let n = rxc["relay_captured"].as_u64().unwrap_or(0);
    let dropped = rxc["relay_capture_dropped"].as_u64().unwrap_or(0);
    let offered = rxc["relay_rx_offered"].as_u64().unwrap_or(0);
    let tx = rxc["relay_tx"].as_u64().unwrap_or(0);
    assert!(n > 0, "{captured:#}");
    assert_eq!(n + dropped, offered + tx, "{captured:#}");
    if etherconn_testbed::tshark_available() {
        let rows = etherconn_testbed::tshark_fields(&file, &["udp.dstport"]).unwrap();
        assert_eq!(rows.len() as u64, n, "frames in the file");
        assert!(
            rows.iter().all(|r| r[0] == "9000"),
            "only the bench's datagrams"
        );
    }
    let _ = std::fs::remove_file(&file);
}
