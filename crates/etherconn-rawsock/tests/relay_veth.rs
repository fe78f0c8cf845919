//! `RawSocketRelay` and `EtherConn` over a veth pair between two network namespaces, checked
//! against independent peers: the kernel's UDP stack, scapy (`tests/peers/send_frames.py`) and
//! tshark.
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::io::{self, BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{EtherType, MacAddr, Tpid, VlanId, VlanTag};
use etherconn_rawsock::{Error, RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::{EtherConn, EtherConnConfig};
use etherconn_relay::{PacketRelay, RelayError, RelayStats, RxFrame};
use etherconn_testbed::{Side, Testbed};

const WAIT: Duration = Duration::from_secs(5);

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn tag(tpid: Tpid, id: u16) -> VlanTag {
    VlanTag::new(tpid, VlanId::new(id).unwrap())
}

/// A relay on `b_if`, created by a thread inside namespace `b`.
fn relay_in_b(tb: &Testbed) -> Arc<RawSocketRelay> {
    tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
        .unwrap()
        .unwrap()
}

fn conn(
    relay: &Arc<RawSocketRelay>,
    m: MacAddr,
    vlans: &[VlanTag],
    cfg: EtherConnConfig,
) -> EtherConn {
    let relay: Arc<dyn PacketRelay> = relay.clone();
    let c = EtherConn::new(relay, m, vlans, cfg).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c
}

/// Sends one UDP datagram from `conn` (its MAC and VLAN stack).
fn send_udp(c: &EtherConn, dst_mac: MacAddr, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    let vlans = c.vlans().to_vec();
    let frame = UdpFrame {
        src_mac: c.local_mac(),
        dst_mac,
        vlans: &vlans,
        src,
        dst,
        ttl: 64,
        dscp: 0,
        payload,
    };
    c.send_built(|buf| build_udp_frame(buf, &frame)).unwrap();
}

fn udp_payload(rx: &RxFrame) -> &[u8] {
    let udp = rx.info.udp().expect("a UDP datagram");
    &rx.frame()[udp.payload.range()]
}

/// Turns IPv6 off on both veth ends, so the kernel sends no link-local noise that counters see.
fn quiet(tb: &Testbed) {
    for side in [Side::A, Side::B] {
        let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
        tb.set_sysctl(side, &key, "1").unwrap();
    }
}

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// `tests/peers/send_frames.py` running in namespace `a` on `a_if`, fed one JSON list of frame
/// specs per line.
struct Scapy {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Scapy {
    fn start(tb: &Testbed) -> Scapy {
        let mut child =
            tb.a.command("python3")
                .arg(peers_dir().join("send_frames.py"))
                .arg(&tb.a_if)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start python3 send_frames.py");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Scapy {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends the frames (a JSON list) in order and waits until scapy has sent them all.
    fn send(&mut self, specs: &serde_like::Json) {
        let line = specs.to_string();
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        assert!(
            reply.starts_with("sent "),
            "send_frames.py failed on {line}: {reply:?}"
        );
    }
}

impl Drop for Scapy {
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

/// A tiny JSON writer for frame specs (no JSON crate among the dev-dependencies).
mod serde_like {
    use std::fmt;

    #[derive(Clone, Debug)]
    pub enum Json {
        Str(String),
        Num(i64),
        Bool(bool),
        Arr(Vec<Json>),
        Obj(Vec<(String, Json)>),
    }

    impl fmt::Display for Json {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Json::Str(s) => write!(f, "\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
                Json::Num(n) => write!(f, "{n}"),
                Json::Bool(b) => write!(f, "{b}"),
                Json::Arr(v) => {
                    f.write_str("[")?;
                    for (i, x) in v.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "{x}")?;
                    }
                    f.write_str("]")
                }
                Json::Obj(v) => {
                    f.write_str("{")?;
                    for (i, (k, x)) in v.iter().enumerate() {
                        if i > 0 {
                            f.write_str(",")?;
                        }
                        write!(f, "\"{k}\":{x}")?;
                    }
                    f.write_str("}")
                }
            }
        }
    }
}
use serde_like::Json;

/// A frame spec for `send_frames.py`.
#[derive(Clone)]
struct Spec(Vec<(String, Json)>);

impl Spec {
    /// An IPv4/UDP frame from 02:aa:00:00:00:01 / 10.88.0.1:`sport` to `dst` / 10.88.0.2:7000.
    fn udp4(dst: &str, sport: u16, payload: &str) -> Spec {
        Spec(vec![])
            .s("dst", dst)
            .s("src", "02:aa:00:00:00:01")
            .s("ipsrc", "10.88.0.1")
            .s("ipdst", "10.88.0.2")
            .n("sport", i64::from(sport))
            .n("dport", 7000)
            .s("payload", payload)
    }

    fn s(mut self, k: &str, v: &str) -> Spec {
        self.0.push((k.into(), Json::Str(v.into())));
        self
    }

    fn n(mut self, k: &str, v: i64) -> Spec {
        self.0.push((k.into(), Json::Num(v)));
        self
    }

    fn b(mut self, k: &str) -> Spec {
        self.0.push((k.into(), Json::Bool(true)));
        self
    }

    fn tags(mut self, tags: &[(u16, u16)]) -> Spec {
        let v = tags
            .iter()
            .map(|&(tpid, id)| {
                Json::Arr(vec![
                    Json::Num(tpid.into()),
                    Json::Num(id.into()),
                    Json::Num(0),
                ])
            })
            .collect();
        self.0.push(("tags".into(), Json::Arr(v)));
        self
    }

    fn ip(mut self, k: &str, v: i64) -> Spec {
        self.0
            .push(("ip".into(), Json::Obj(vec![(k.into(), Json::Num(v))])));
        self
    }
}

fn specs(list: &[Spec]) -> Json {
    Json::Arr(list.iter().map(|s| Json::Obj(s.0.clone())).collect())
}

/// Waits (up to `WAIT`) until `pred` holds for the relay's counters.
fn wait_stats(
    relay: &RawSocketRelay,
    what: &str,
    pred: impl Fn(&RelayStats) -> bool,
) -> RelayStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = relay.stats();
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn assert_no_leftovers(prefix: &str) {
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

/// Kernel UDP in namespace `a` <-> three EtherConns with MACs and IPs the OS does not know.
fn kernel_udp_roundtrip(prefix: &str, v6: bool) {
    let tb = Testbed::new(prefix).unwrap();
    let (a_cidr, a_ip): (&str, IpAddr) = if v6 {
        ("2001:db8:77::1/64", "2001:db8:77::1".parse().unwrap())
    } else {
        ("10.77.0.1/24", "10.77.0.1".parse().unwrap())
    };
    tb.add_addr(Side::A, a_cidr).unwrap();
    let server =
        tb.a.run_in(move || UdpSocket::bind(SocketAddr::new(a_ip, 0)))
            .unwrap()
            .unwrap();
    server.set_read_timeout(Some(WAIT)).unwrap();
    let server_addr = server.local_addr().unwrap();
    let relay = relay_in_b(&tb);
    let a_mac = MacAddr(tb.a_mac);

    let mut conns = Vec::new();
    for n in 1..=3u16 {
        let m = mac(&format!("02:ec:00:00:00:0{n}"));
        let ip: IpAddr = if v6 {
            format!("2001:db8:77::1{n}").parse().unwrap()
        } else {
            format!("10.77.0.1{n}").parse().unwrap()
        };
        tb.add_neigh(Side::A, ip, m.0).unwrap();
        let c = conn(&relay, m, &[], EtherConnConfig::default());
        conns.push((c, SocketAddr::new(ip, 40000 + n)));
    }

    for (c, local) in &conns {
        let msg = format!("hello from {local}");
        send_udp(c, a_mac, *local, server_addr, msg.as_bytes());
    }
    let mut buf = [0u8; 1500];
    let mut seen = Vec::new();
    for _ in 0..conns.len() {
        let (n, from) = server.recv_from(&mut buf).expect("kernel socket receives");
        assert_eq!(&buf[..n], format!("hello from {from}").as_bytes());
        seen.push(from);
        server
            .send_to(format!("reply to {from}").as_bytes(), from)
            .unwrap();
    }
    seen.sort();
    let mut expected: Vec<SocketAddr> = conns.iter().map(|(_, a)| *a).collect();
    expected.sort();
    assert_eq!(seen, expected);

    for (c, local) in &conns {
        let rx = c.recv_frame().expect("reply reaches its EtherConn");
        let udp = rx.info.udp().expect("UDP");
        assert_eq!(udp.remote, server_addr);
        assert_eq!(udp.local, *local);
        assert_eq!(rx.info.src_mac, a_mac);
        assert_eq!(rx.info.dst_mac(), c.local_mac());
        assert_eq!(udp_payload(&rx), format!("reply to {local}").as_bytes());
        assert_eq!(c.queued(), 0, "exactly one reply for {local}");
    }
    let s = relay.stats();
    assert_eq!(s.rx_invalid, 0, "{s}");
    assert!(s.tx >= 3, "{s}");
    relay.stop();
    drop(conns);
    drop(tb);
    assert_no_leftovers(prefix);
}

#[test]
fn kernel_udp_ipv4_peer() {
    if !etherconn_testbed::require_root("kernel_udp_ipv4_peer") {
        return;
    }
    kernel_udp_roundtrip("ecrv-k4-", false);
}

#[test]
fn kernel_udp_ipv6_peer() {
    if !etherconn_testbed::require_root("kernel_udp_ipv6_peer") {
        return;
    }
    kernel_udp_roundtrip("ecrv-k6-", true);
}

const X: &str = "02:ec:00:00:01:01";

#[test]
fn scapy_vlan_ingress_reaches_exactly_its_conn() {
    if !etherconn_testbed::require_root("scapy_vlan_ingress_reaches_exactly_its_conn") {
        return;
    }
    let prefix = "ecrv-vin-";
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let relay = relay_in_b(&tb);
    let x = mac(X);
    let cfg = EtherConnConfig::default;
    let c100 = conn(&relay, x, &[tag(Tpid::DOT1Q, 100)], cfg());
    let c200_100 = conn(
        &relay,
        x,
        &[tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 100)],
        cfg(),
    );
    let c300_100 = conn(
        &relay,
        x,
        &[tag(Tpid::QINQ_LEGACY, 300), tag(Tpid::DOT1Q, 100)],
        cfg(),
    );
    let untagged = conn(&relay, x, &[], cfg());
    let c101 = conn(&relay, x, &[tag(Tpid::DOT1Q, 101)], cfg());

    let mut scapy = Scapy::start(&tb);
    scapy.send(&specs(&[
        Spec::udp4(X, 1100, "dot1q-100").tags(&[(0x8100, 100)]),
        Spec::udp4(X, 1200, "qinq-200-100").tags(&[(0x88a8, 200), (0x8100, 100)]),
        Spec::udp4(X, 1300, "9100-300-100").tags(&[(0x9100, 300), (0x8100, 100)]),
        Spec::udp4(X, 1000, "untagged"),
    ]));

    let expect = |c: &EtherConn, port: u16, marker: &str, ids: &[u16], tpids: &[u16]| {
        let rx = c.recv_frame().unwrap_or_else(|e| panic!("{marker}: {e}"));
        let udp = rx.info.udp().expect("UDP");
        assert_eq!(udp.remote.port(), port, "{marker}");
        assert_eq!(udp_payload(&rx), marker.as_bytes());
        let got: Vec<u16> = rx
            .info
            .vlans()
            .as_slice()
            .iter()
            .map(|t| t.id.get())
            .collect();
        assert_eq!(got, ids, "{marker}");
        let got: Vec<u16> = rx
            .info
            .vlans()
            .as_slice()
            .iter()
            .map(|t| t.tpid.get())
            .collect();
        assert_eq!(
            got, tpids,
            "{marker}: TPIDs as received (outer tag put back)"
        );
        assert_eq!(rx.info.src_mac, mac("02:aa:00:00:00:01"));
    };
    expect(&c100, 1100, "dot1q-100", &[100], &[0x8100]);
    expect(
        &c200_100,
        1200,
        "qinq-200-100",
        &[200, 100],
        &[0x88a8, 0x8100],
    );
    expect(
        &c300_100,
        1300,
        "9100-300-100",
        &[300, 100],
        &[0x9100, 0x8100],
    );
    expect(&untagged, 1000, "untagged", &[], &[]);
    // The untagged frame was sent last and the relay has one receive thread, so every earlier
    // frame has been dispatched by now.
    for c in [&c100, &c200_100, &c300_100, &untagged, &c101] {
        assert_eq!(c.queued(), 0, "{c:?} got more than its frame");
    }
    let s = wait_stats(&relay, "4 delivered", |s| s.rx_delivered == 4);
    assert_eq!(s.rx_offered, 4, "{s}");
    assert_eq!(
        (
            s.rx_invalid,
            s.rx_miss,
            s.rx_to_default,
            s.rx_multicast_delivered,
            s.rx_multicast_ignored
        ),
        (0, 0, 0, 0, 0),
        "{s}"
    );
    drop(scapy);
    relay.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}

/// tshark in namespace `a` capturing on `a_if` into a pcap file (for at most 30 s), printing
/// the UDP source port of each frame as it captures it.
struct Capture {
    child: Child,
    file: PathBuf,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Capture {
    /// Starts tshark and returns once it captures: tshark's "Capturing on" comes before the
    /// capture socket sees frames, so `probe` is called (it should send a non-UDP frame) every
    /// 100 ms until tshark shows a captured frame.
    fn start(tb: &Testbed, probe: impl Fn()) -> Capture {
        let file = std::env::temp_dir().join(format!(
            "etherconn-relay-veth-{}-{}.pcap",
            std::process::id(),
            tb.a_if
        ));
        let _ = std::fs::remove_file(&file);
        let mut child =
            tb.a.command("tshark")
                .args([
                    "-i",
                    &tb.a_if,
                    "-a",
                    "duration:30",
                    "-l",
                    "-P",
                    "-T",
                    "fields",
                ])
                .args(["-e", "frame.number", "-e", "udp.srcport", "-w"])
                .arg(&file)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start tshark");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let cap = Capture { child, file, lines };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "tshark did not start capturing");
            probe();
            if cap.lines.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
        }
        cap
    }

    /// Waits until tshark has shown `n` UDP frames (or fails after 10 s).
    fn wait_udp(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = 0;
        while seen < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("tshark showed {seen} of {n} UDP frames"));
            if line.split('\t').nth(1).is_some_and(|p| !p.is_empty()) {
                seen += 1;
            }
        }
    }

    /// Stops tshark (SIGINT, so it completes the file).
    fn stop(&mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGINT) };
    }

    /// Waits for tshark to stop and returns the decoded fields, one line per frame.
    fn finish(mut self, fields: &[&str]) -> Vec<Vec<String>> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(25);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "tshark capture exited with {st}");
                break;
            }
            assert!(Instant::now() < deadline, "tshark capture did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut cmd = std::process::Command::new("tshark");
        cmd.arg("-r").arg(&self.file).args([
            "-Y",
            "udp",
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            "-T",
            "fields",
            "-E",
            "separator=/t",
        ]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().expect("run tshark -r");
        assert!(
            out.status.success(),
            "tshark -r: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

#[test]
fn vlan_egress_decoded_by_tshark() {
    if !etherconn_testbed::require_root("vlan_egress_decoded_by_tshark") {
        return;
    }
    let prefix = "ecrv-veg-";
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let relay = relay_in_b(&tb);
    let stacks: [(&str, Vec<VlanTag>); 3] = [
        ("02:ec:00:00:02:01", vec![]),
        (
            "02:ec:00:00:02:02",
            vec![VlanTag::dot1q(100).unwrap().with_pcp(5)],
        ),
        (
            "02:ec:00:00:02:03",
            vec![tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 100)],
        ),
    ];
    let conns: Vec<EtherConn> = stacks
        .iter()
        .map(|(m, v)| conn(&relay, mac(m), v, EtherConnConfig::default()))
        .collect();
    let a_mac = MacAddr(tb.a_mac);
    let cap = Capture::start(&tb, || {
        conns[0]
            .send_to(b"probe", EtherType(0x88b5), a_mac)
            .unwrap();
    });
    for (i, c) in conns.iter().enumerate() {
        let port = 5000 + i as u16;
        let v4s: SocketAddr = format!("10.66.0.{}:{port}", 10 + i).parse().unwrap();
        let v4d: SocketAddr = "10.66.0.1:9".parse().unwrap();
        send_udp(c, a_mac, v4s, v4d, b"tshark checks me, ipv4");
        let v6s: SocketAddr = format!("[2001:db8:66::{}]:{port}", 10 + i).parse().unwrap();
        let v6d: SocketAddr = "[2001:db8:66::1]:9".parse().unwrap();
        send_udp(c, a_mac, v6s, v6d, b"tshark checks me, ipv6, odd");
    }
    cap.wait_udp(6);
    let rows = cap.finish(&[
        "ieee8021ad.id",
        "ieee8021ad.priority",
        "vlan.id",
        "vlan.priority",
        "vlan.etype",
        "eth.type",
        "eth.src",
        "eth.dst",
        "ip.src",
        "ipv6.src",
        "udp.srcport",
        "ip.checksum.status",
        "udp.checksum.status",
    ]);
    // Columns: 802.1ad id, PCP; 802.1Q id, PCP, next type; outer EtherType; MACs;
    // IPv4/IPv6 source; UDP source port; IPv4 header and UDP checksum status (1 = good).
    let m = a_mac.to_string();
    let m = m.as_str();
    #[rustfmt::skip]
    let expected: Vec<[&str; 13]> = vec![
        ["", "", "", "", "", "0x0800", "02:ec:00:00:02:01", m, "10.66.0.10", "", "5000", "1", "1"],
        ["", "", "", "", "", "0x86dd", "02:ec:00:00:02:01", m, "", "2001:db8:66::10", "5000", "", "1"],
        ["", "", "100", "5", "0x0800", "0x8100", "02:ec:00:00:02:02", m, "10.66.0.11", "", "5001", "1", "1"],
        ["", "", "100", "5", "0x86dd", "0x8100", "02:ec:00:00:02:02", m, "", "2001:db8:66::11", "5001", "", "1"],
        ["200", "0", "100", "0", "0x0800", "0x88a8", "02:ec:00:00:02:03", m, "10.66.0.12", "", "5002", "1", "1"],
        ["200", "0", "100", "0", "0x86dd", "0x88a8", "02:ec:00:00:02:03", m, "", "2001:db8:66::12", "5002", "", "1"],
    ];
    assert_eq!(rows.len(), expected.len(), "{rows:#?}");
    for (row, exp) in rows.iter().zip(&expected) {
        assert_eq!(row, &exp.map(str::to_owned).to_vec(), "all rows: {rows:#?}");
    }
    relay.stop();
    drop(conns);
    drop(tb);
    assert_no_leftovers(prefix);
}

#[test]
fn dispatch_rules_over_the_wire() {
    if !etherconn_testbed::require_root("dispatch_rules_over_the_wire") {
        return;
    }
    let prefix = "ecrv-dsp-";
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let relay = relay_in_b(&tb);
    let mut scapy = Scapy::start(&tb);
    let x = mac(X);
    let unknown = "02:ec:00:00:09:99";
    let bcast = "ff:ff:ff:ff:ff:ff";
    let plain = conn(&relay, x, &[], EtherConnConfig::default());

    // Unknown unicast, no default conn: a miss. Then a frame for `plain` as a sentinel.
    scapy.send(&specs(&[
        Spec::udp4(unknown, 2001, "to nobody"),
        Spec::udp4(X, 2002, "sentinel 1"),
    ]));
    assert_eq!(udp_payload(&plain.recv_frame().unwrap()), b"sentinel 1");
    let s = wait_stats(&relay, "miss", |s| {
        (s.rx_miss, s.rx_delivered, s.rx_to_default) == (1, 1, 0)
    });
    assert_eq!(
        (s.rx_miss, s.rx_delivered, s.rx_to_default),
        (1, 1, 0),
        "{s}"
    );

    // Duplicate keys are refused, replacing needs asking.
    let relay_dyn: Arc<dyn PacketRelay> = relay.clone();
    match EtherConn::new(relay_dyn.clone(), x, &[], EtherConnConfig::default()) {
        Err(RelayError::KeyInUse(k)) => assert_eq!(k.to_string(), "02:ec:00:00:01:01#0x0806"),
        other => panic!("duplicate registration: {other:?}"),
    }

    // With a default conn, unknown unicast goes there.
    let default = conn(
        &relay,
        mac("02:ec:00:00:0d:ef"),
        &[],
        EtherConnConfig::default().default_conn(true),
    );
    assert!(matches!(
        EtherConn::new(
            relay_dyn,
            mac("02:ec:00:00:0d:e0"),
            &[],
            EtherConnConfig::default().default_conn(true)
        ),
        Err(RelayError::DefaultInUse)
    ));
    scapy.send(&specs(&[Spec::udp4(unknown, 2003, "to default")]));
    let rx = default.recv_frame().unwrap();
    assert_eq!(udp_payload(&rx), b"to default");
    assert_eq!(rx.info.dst_mac(), mac(unknown));
    wait_stats(&relay, "s.rx_miss, s.rx_to_default == (1, 1)", |s| {
        (s.rx_miss, s.rx_to_default) == (1, 1)
    });

    // Broadcast reaches the receive-multicast conns of its VLAN stack and the default conn.
    let m_untagged = conn(
        &relay,
        mac("02:ec:00:00:03:01"),
        &[],
        EtherConnConfig::default().recv_multicast(true),
    );
    let m_vlan = conn(
        &relay,
        mac("02:ec:00:00:03:02"),
        &[tag(Tpid::DOT1Q, 100)],
        EtherConnConfig::default().recv_multicast(true),
    );
    scapy.send(&specs(&[Spec::udp4(bcast, 2004, "bcast untagged")]));
    assert_eq!(
        udp_payload(&m_untagged.recv_frame().unwrap()),
        b"bcast untagged"
    );
    assert_eq!(
        udp_payload(&default.recv_frame().unwrap()),
        b"bcast untagged"
    );
    scapy.send(&specs(&[
        Spec::udp4(bcast, 2005, "bcast vlan 100").tags(&[(0x8100, 100)])
    ]));
    let rx = m_vlan.recv_frame().unwrap();
    assert_eq!(udp_payload(&rx), b"bcast vlan 100");
    assert_eq!(rx.info.vlans().as_slice()[0].id.get(), 100);
    assert_eq!(
        udp_payload(&default.recv_frame().unwrap()),
        b"bcast vlan 100"
    );
    for c in [&plain, &default, &m_untagged, &m_vlan] {
        assert_eq!(c.queued(), 0, "{c:?}");
    }
    let s = wait_stats(
        &relay,
        "s.rx_multicast_delivered, s.rx_to_default == (2, 3)",
        |s| (s.rx_multicast_delivered, s.rx_to_default) == (2, 3),
    );
    assert_eq!(s.rx_multicast_ignored, 0, "{s}");

    // Dropped conns stop receiving: with no default, frames for them are misses.
    drop(default);
    drop(plain);
    scapy.send(&specs(&[
        Spec::udp4(X, 2006, "to a dropped conn"),
        Spec::udp4("02:ec:00:00:03:01", 2007, "sentinel 2"),
    ]));
    assert_eq!(
        udp_payload(&m_untagged.recv_frame().unwrap()),
        b"sentinel 2"
    );
    let s = wait_stats(&relay, "dropped conns", |s| {
        (s.rx_miss, s.rx_to_default, s.rx_delivered) == (2, 3, 2)
    });
    assert_eq!(
        (s.rx_miss, s.rx_to_default, s.rx_delivered),
        (2, 3, 2),
        "{s}"
    );
    // A broadcast nobody wants on VLAN 300 is counted as ignored.
    scapy.send(&specs(&[
        Spec::udp4(bcast, 2008, "bcast vlan 300").tags(&[(0x8100, 300)]),
        Spec::udp4("02:ec:00:00:03:01", 2009, "sentinel 3"),
    ]));
    assert_eq!(
        udp_payload(&m_untagged.recv_frame().unwrap()),
        b"sentinel 3"
    );
    let s = wait_stats(&relay, "multicast ignored", |s| s.rx_multicast_ignored == 1);
    assert_eq!(s.rx_invalid, 0, "{s}");
    drop(scapy);
    relay.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}

/// Sends `bad` then a valid sentinel; returns the counter change once the sentinel arrived.
fn bad_then_sentinel(
    scapy: &mut Scapy,
    relay: &RawSocketRelay,
    c: &EtherConn,
    bad: Spec,
    n: u16,
) -> (RelayStats, RelayStats) {
    let before = relay.stats();
    let marker = format!("sentinel {n}");
    scapy.send(&specs(&[bad, Spec::udp4(X, 3000 + n, &marker)]));
    let rx = c.recv_frame().unwrap_or_else(|e| panic!("{marker}: {e}"));
    assert_eq!(
        udp_payload(&rx),
        marker.as_bytes(),
        "only the sentinel reaches the conn"
    );
    assert_eq!(c.queued(), 0);
    // The relay counts a delivery just after queueing the frame.
    let after = wait_stats(relay, "sentinel counted", |s| {
        s.rx_delivered > before.rx_delivered
    });
    (before, after)
}

#[test]
fn bad_input_from_scapy_is_counted_and_dropped() {
    if !etherconn_testbed::require_root("bad_input_from_scapy_is_counted_and_dropped") {
        return;
    }
    let prefix = "ecrv-bad-";
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let relay = relay_in_b(&tb);
    let mut scapy = Scapy::start(&tb);
    let x = mac(X);
    let c = conn(&relay, x, &[], EtherConnConfig::default());
    let c100 = conn(
        &relay,
        x,
        &[tag(Tpid::DOT1Q, 100)],
        EtherConnConfig::default(),
    );
    let def = conn(
        &relay,
        mac("02:ec:00:00:0d:ef"),
        &[],
        EtherConnConfig::default().default_conn(true),
    );

    // (name, frame, counted as invalid?, of which a bad checksum?)
    let x_hex = X.replace(':', "");
    let cases: Vec<(&str, Spec, bool, bool)> = vec![
        (
            "20-byte runt IPv4 frame",
            Spec(vec![]).s("raw", &format!("{x_hex}02aa0000000108004500001e0000")),
            true,
            false,
        ),
        (
            "IPv4 IHL 4",
            Spec::udp4(X, 1, "ihl").ip("ihl", 4),
            true,
            false,
        ),
        (
            "IPv4 bad header checksum",
            Spec::udp4(X, 2, "bad ip sum").b("bad_ip_chksum"),
            true,
            true,
        ),
        (
            "IPv4 total length past the frame",
            Spec::udp4(X, 4, "long").ip("len", 500),
            true,
            false,
        ),
        (
            "truncated UDP header",
            Spec::udp4(X, 5, "abcd").b("no_udp"),
            true,
            false,
        ),
        (
            "three VLAN tags",
            Spec::udp4(X, 6, "3 tags").tags(&[(0x88a8, 10), (0x8100, 20), (0x8100, 100)]),
            true,
            false,
        ),
    ];
    let mut n = 0;
    for (name, bad, invalid, bad_sum) in cases {
        n += 1;
        let (b, a) = bad_then_sentinel(&mut scapy, &relay, &c, bad, n);
        let offered = a.rx_offered - b.rx_offered;
        println!("{name}: {b} -> {a}");
        // The kernel filter passes ARP/IPv4/IPv6 behind at most two tags, so a frame with three
        // never reaches the dispatcher; every other bad frame is offered and counted invalid.
        let filtered = name == "three VLAN tags";
        assert_eq!(offered, if filtered { 1 } else { 2 }, "{name}: {b} -> {a}");
        let invalid = u64::from(invalid && !filtered);
        assert_eq!(a.rx_invalid - b.rx_invalid, invalid, "{name}: {b} -> {a}");
        assert_eq!(
            a.rx_bad_checksum - b.rx_bad_checksum,
            u64::from(bad_sum),
            "{name}: {b} -> {a}"
        );
        assert_eq!(a.rx_delivered - b.rx_delivered, 1, "{name}: {b} -> {a}");
        assert_eq!(a.rx_to_default - b.rx_to_default, 0, "{name}: {b} -> {a}");
        assert_eq!(a.rx_miss - b.rx_miss, 0, "{name}: {b} -> {a}");
        assert_eq!(def.queued() + c100.queued(), 0, "{name}");
    }

    // Unknown EtherType: the kernel filter drops it, the dispatcher never sees it.
    n += 1;
    let et = Spec(vec![])
        .s("dst", X)
        .s("src", "02:aa:00:00:00:01")
        .s("l3", "ether")
        .n("ethertype", 0x88b5)
        .s(
            "payload",
            "local experimental ethertype 1 padding padding padding",
        );
    let (b, a) = bad_then_sentinel(&mut scapy, &relay, &c, et, n);
    assert_eq!(
        a.rx_offered - b.rx_offered,
        1,
        "0x88b5 filtered: {b} -> {a}"
    );
    assert_eq!(a.rx_invalid, b.rx_invalid);

    drop(scapy);
    relay.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}

/// A bad UDP checksum in a frame from scapy must be caught. veth marks frames that arrive
/// without a checksum status as `CHECKSUM_UNNECESSARY` when its receive checksum offload is on
/// (the default), which AF_PACKET reports as `TP_STATUS_CSUM_VALID`.
fn bad_udp_checksum(prefix: &str, rx_csum_offload: bool) {
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    if !rx_csum_offload {
        tb.set_offloads(Side::B, &[("rx", "off")]).unwrap();
    }
    let relay = relay_in_b(&tb);
    let mut scapy = Scapy::start(&tb);
    let c = conn(&relay, mac(X), &[], EtherConnConfig::default());
    let (b, a) = bad_then_sentinel(
        &mut scapy,
        &relay,
        &c,
        Spec::udp4(X, 3, "bad udp sum").b("bad_udp_chksum"),
        1,
    );
    assert_eq!(a.rx_offered - b.rx_offered, 2, "{b} -> {a}");
    assert_eq!(a.rx_invalid - b.rx_invalid, 1, "{b} -> {a}");
    assert_eq!(a.rx_bad_checksum - b.rx_bad_checksum, 1, "{b} -> {a}");
    drop(scapy);
    relay.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}

#[test]
fn bad_udp_checksum_from_scapy_rx_offload_off() {
    if !etherconn_testbed::require_root("bad_udp_checksum_from_scapy_rx_offload_off") {
        return;
    }
    bad_udp_checksum("ecrv-bu0-", false);
}

#[test]
fn bad_udp_checksum_from_scapy_default_offloads() {
    if !etherconn_testbed::require_root("bad_udp_checksum_from_scapy_default_offloads") {
        return;
    }
    bad_udp_checksum("ecrv-bu1-", true);
}

#[test]
fn stop_wakes_blocked_reader_and_open_errors() {
    if !etherconn_testbed::require_root("stop_wakes_blocked_reader_and_open_errors") {
        return;
    }
    let prefix = "ecrv-stp-";
    let tb = Testbed::new(prefix).unwrap();
    let relay = relay_in_b(&tb);
    let c = conn(&relay, mac(X), &[], EtherConnConfig::default());
    c.set_read_timeout(None).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let r = c.recv_from(&mut buf).map(|(n, _)| n);
        tx.send(Instant::now()).unwrap();
        r
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(rx.try_recv().is_err(), "reader returned before stop");
    let stopped_at = Instant::now();
    relay.stop();
    let woke_at = rx
        .recv_timeout(Duration::from_secs(2))
        .expect("blocked reader woken by stop");
    let latency = woke_at.duration_since(stopped_at);
    assert!(
        latency < Duration::from_millis(200),
        "woken after {latency:?}"
    );
    let err = reader
        .join()
        .unwrap()
        .expect_err("recv after stop is an error");
    assert_eq!(err.kind(), io::ErrorKind::NotConnected, "{err}");
    relay.stop(); // idempotent

    let r =
        tb.b.run_in(|| RawSocketRelay::new("doesnotexist0", RawSocketRelayConfig::default()))
            .unwrap();
    assert!(
        matches!(&r, Err(Error::NoSuchInterface { name }) if name == "doesnotexist0"),
        "{r:?}"
    );
    tb.b.ip(&["link", "set", &tb.b_if, "down"]).unwrap();
    let r =
        tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
            .unwrap();
    assert!(
        matches!(&r, Err(Error::InterfaceDown { name }) if *name == tb.b_if),
        "{r:?}"
    );
    drop(tb);
    assert_no_leftovers(prefix);
}

/// The brief's assumption: a thread spawned by a thread that entered a namespace starts in that
/// namespace (clone copies the network namespace), so the relay's receive threads, spawned from
/// the `run_in` thread, live in `b`.
#[test]
fn spawned_threads_inherit_network_namespace() {
    if !etherconn_testbed::require_root("spawned_threads_inherit_network_namespace") {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let prefix = "ecrv-nsi-";
    let tb = Testbed::new(prefix).unwrap();
    let ns_ino = std::fs::metadata(tb.b.path()).unwrap().ino();
    let here = || std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
    let root_ino = here();
    let (inside, child) =
        tb.b.run_in(|| (here(), std::thread::spawn(here).join().unwrap()))
            .unwrap();
    assert_ne!(root_ino, ns_ino);
    assert_eq!(inside, ns_ino);
    assert_eq!(child, ns_ino, "a thread spawned inside b is in b");
    assert_eq!(here(), root_ino, "the test thread did not move");
    drop(tb);
    assert_no_leftovers(prefix);
}

/// A relay with two receive threads (a `PACKET_FANOUT` hash group): frames for 64 endpoints
/// with distinct MACs, some behind VLAN 100, sent by a second relay in namespace `a` (batched
/// through `send_batch`), each reach exactly their conn, once, with nothing counted twice.
#[test]
fn fanout_relay_with_two_threads_delivers_each_frame_once() {
    if !etherconn_testbed::require_root("fanout_relay_with_two_threads_delivers_each_frame_once") {
        return;
    }
    const ENDPOINTS: u16 = 64;
    const PER_ENDPOINT: u16 = 20;
    let prefix = "ecrv-fo-";
    {
        let tb = Testbed::new(prefix).unwrap();
        quiet(&tb);
        let rx_relay = tb
            .b
            .run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default().threads(2)))
            .unwrap()
            .unwrap();
        let tx_relay =
            tb.a.run_in(|| RawSocketRelay::new(&tb.a_if, RawSocketRelayConfig::default()))
                .unwrap()
                .unwrap();
        let base = mac("02:ec:f0:00:00:00");
        let v100 = [VlanTag::dot1q(100).unwrap()];
        let vlans_of = |i: u16| -> &[VlanTag] {
            if i % 2 == 0 {
                &[]
            } else {
                &v100
            }
        };
        let conns: Vec<EtherConn> = (0..ENDPOINTS)
            .map(|i| {
                conn(
                    &rx_relay,
                    base.offset(u64::from(i)),
                    vlans_of(i),
                    EtherConnConfig::default().queue_depth(usize::from(PER_ENDPOINT) * 2),
                )
            })
            .collect();

        // Build every frame, then send them in batches through the sender relay.
        let mut frames = Vec::new();
        for round in 0..PER_ENDPOINT {
            for i in 0..ENDPOINTS {
                let payload = [i.to_be_bytes(), round.to_be_bytes()].concat();
                let f = UdpFrame {
                    src_mac: mac("02:ec:f1:00:00:01"),
                    dst_mac: base.offset(u64::from(i)),
                    vlans: vlans_of(i),
                    src: "10.79.0.1:7000".parse().unwrap(),
                    dst: SocketAddr::new(format!("10.79.1.{}", i + 1).parse().unwrap(), 9000 + i),
                    ttl: 64,
                    dscp: 0,
                    payload: &payload,
                };
                let mut buf = vec![0u8; 128];
                let len = build_udp_frame(&mut buf, &f).unwrap();
                buf.truncate(len);
                frames.push(buf);
            }
        }
        for chunk in frames.chunks(32) {
            let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
            let mut sent = 0;
            while sent < refs.len() {
                sent += tx_relay.send_batch(&refs[sent..], Some(WAIT)).unwrap();
            }
        }
        let total = u64::from(ENDPOINTS) * u64::from(PER_ENDPOINT);
        assert_eq!(tx_relay.stats().tx, total);

        for (i, c) in conns.iter().enumerate() {
            let mut rounds = Vec::new();
            for _ in 0..PER_ENDPOINT {
                let rx = c.recv_frame().unwrap();
                let p = udp_payload(&rx);
                assert_eq!(
                    u16::from_be_bytes([p[0], p[1]]),
                    i as u16,
                    "frame for another conn"
                );
                rounds.push(u16::from_be_bytes([p[2], p[3]]));
                assert_eq!(rx.info.vlans().as_slice().len(), i % 2);
            }
            rounds.sort_unstable();
            assert_eq!(
                rounds,
                (0..PER_ENDPOINT).collect::<Vec<_>>(),
                "endpoint {i}: each round once"
            );
            assert_eq!(c.queued(), 0, "endpoint {i}: no duplicate");
        }
        let st = wait_stats(&rx_relay, "all delivered", |s| s.rx_delivered == total);
        assert_eq!(st.rx_offered, total, "{st}");
        assert_eq!(st.rx_invalid + st.rx_miss + st.rx_queue_full, 0, "{st}");
        rx_relay.stop();
        tx_relay.stop();
    }
    assert_no_leftovers(prefix);
}
