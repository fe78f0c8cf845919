//! A forging peer against `RUdpConn` and `SharingRUdpConn` on an AF_PACKET relay, over a veth
//! pair between two network namespaces: scapy (`tests/peers/martian_peer.py`, in namespace
//! `a`) sends each spoofed source a host drops (a group source MAC; martian source addresses,
//! IPv4 and IPv6; source port 0) to each conn, then the same datagram from an ordinary
//! source. Nothing spoofed may be delivered, each must be counted by the relay
//! (`rx_group_source`, `rx_martian`), and the ordinary datagram must arrive.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::wire::MacAddr;
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::PacketRelay;
use etherconn_testbed::{Side, Testbed};
use etherconn_udp::{
    RUdpConfig, RUdpConn, SharedConfig, SharedEtherConn, SharingConfig, SharingRUdpConn,
};

const WAIT: Duration = Duration::from_secs(5);
const PEER_MAC: &str = "02:aa:77:00:00:01";
const PEER4: &str = "10.77.0.1";
const PEER6: &str = "2001:db8:77::1";

/// `tests/peers/martian_peer.py` in namespace `a`, on `a_if`.
struct Forger {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Forger {
    fn start(tb: &Testbed) -> Forger {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/martian_peer.py");
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

    /// Sends the frames in order; returns once scapy has sent them all.
    fn send(&mut self, specs: &[String]) {
        let line = format!("{{\"send\":[{}]}}", specs.join(","));
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        assert!(
            reply.starts_with(&format!("{{\"sent\": {}", specs.len())),
            "martian_peer.py failed on {line}: {reply:?}"
        );
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

/// One UDP frame for `martian_peer.py` (every value here is plain ASCII: no JSON escaping).
struct Frame {
    src_mac: String,
    dst_mac: MacAddr,
    src: SocketAddr,
    dst: SocketAddr,
    payload: String,
    ip_extra: &'static str,
}

impl Frame {
    fn json(&self) -> String {
        let l3 = if self.src.is_ipv4() { "ipv4" } else { "ipv6" };
        format!(
            "{{\"src\":\"{}\",\"dst\":\"{}\",\"l3\":\"{l3}\",\"ipsrc\":\"{}\",\"ipdst\":\"{}\",\
             \"sport\":{},\"dport\":{},\"payload\":\"{}\",\"ip\":{{{}}}}}",
            self.src_mac,
            self.dst_mac,
            self.src.ip(),
            self.dst.ip(),
            self.src.port(),
            self.dst.port(),
            self.payload,
            self.ip_extra,
        )
    }
}

/// A spoofed sender: its source MAC and address, and the counter that must count it.
#[derive(Clone, Copy, Debug)]
struct Spoof {
    mac: &'static str,
    src: &'static str,
    counter: Counter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counter {
    GroupSource,
    Martian,
}

const fn spoof(mac: &'static str, src: &'static str, counter: Counter) -> Spoof {
    Spoof { mac, src, counter }
}

const SPOOFS4: &[Spoof] = &[
    spoof("ff:ff:ff:ff:ff:ff", "10.77.0.1:4000", Counter::GroupSource),
    spoof("01:00:5e:00:00:01", "10.77.0.1:4000", Counter::GroupSource),
    spoof("03:00:00:00:00:01", "10.77.0.1:4000", Counter::GroupSource),
    spoof(PEER_MAC, "255.255.255.255:4000", Counter::Martian),
    spoof(PEER_MAC, "224.0.0.1:4000", Counter::Martian),
    spoof(PEER_MAC, "239.255.255.250:4000", Counter::Martian),
    spoof(PEER_MAC, "127.0.0.1:4000", Counter::Martian),
    spoof(PEER_MAC, "0.0.0.0:4000", Counter::Martian),
    spoof(PEER_MAC, "0.1.2.3:4000", Counter::Martian),
    spoof(PEER_MAC, "240.0.0.1:4000", Counter::Martian),
    spoof(PEER_MAC, "10.77.0.1:0", Counter::Martian),
];

const SPOOFS6: &[Spoof] = &[
    spoof(
        "33:33:00:00:00:01",
        "[2001:db8:77::1]:4000",
        Counter::GroupSource,
    ),
    spoof(
        "ff:ff:ff:ff:ff:ff",
        "[2001:db8:77::1]:4000",
        Counter::GroupSource,
    ),
    spoof(PEER_MAC, "[ff02::1]:4000", Counter::Martian),
    spoof(PEER_MAC, "[ff05::1:3]:4000", Counter::Martian),
    spoof(PEER_MAC, "[::1]:4000", Counter::Martian),
    spoof(PEER_MAC, "[::]:4000", Counter::Martian),
    spoof(PEER_MAC, "[::ffff:10.77.0.1]:4000", Counter::Martian),
    spoof(PEER_MAC, "[2001:db8:77::1]:0", Counter::Martian),
];

/// What the conn types share here.
trait Receiver {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    fn local(&self) -> SocketAddr;
}

impl Receiver for RUdpConn {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        RUdpConn::recv_from(self, buf)
    }
    fn local(&self) -> SocketAddr {
        self.local_addr().unwrap()
    }
}

impl Receiver for SharingRUdpConn {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        SharingRUdpConn::recv_from(self, buf)
    }
    fn local(&self) -> SocketAddr {
        self.local_addr().unwrap()
    }
}

/// Everything `conn` receives up to and including the datagram with payload `last`.
fn received_until(conn: &dyn Receiver, last: &str) -> Vec<(String, SocketAddr)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let (n, from) = conn
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("{}: no {last:?} after {got:?}: {e}", conn.local()));
        let payload = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = payload == last;
        got.push((payload, from));
        if done {
            return got;
        }
    }
}

#[test]
fn conns_take_nothing_a_host_drops_and_the_relay_counts_it() {
    if !etherconn_testbed::require_root("conns_take_nothing_a_host_drops_and_the_relay_counts_it") {
        return;
    }
    let prefix = "ecmartian-";
    let tb = Testbed::new(prefix).unwrap();
    // No kernel chatter (router solicitations, MLD) on the link.
    for side in [Side::A, Side::B] {
        let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
        tb.set_sysctl(side, &key, "1").unwrap();
    }
    let relay =
        tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
            .unwrap()
            .unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();

    let mac = |n: u8| MacAddr([0x02, 0xec, 0x77, 0, 0, n]);
    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    let rudp = |m: MacAddr, local: &str| {
        let c = RUdpConn::new(dyn_relay.clone(), m, &[], sa(local), RUdpConfig::default()).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c
    };
    let r4 = rudp(mac(1), "10.77.0.2:7000");
    let r6 = rudp(mac(2), "[2001:db8:77::2]:7000");
    let shared =
        SharedEtherConn::new(dyn_relay.clone(), mac(3), &[], SharedConfig::default()).unwrap();
    let sharing = |local: &str| {
        let c = shared.bind(sa(local), SharingConfig::default()).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c
    };
    let s4 = sharing("10.77.0.3:7000");
    let s6 = sharing("[2001:db8:77::3]:7000");
    let targets: [(&dyn Receiver, MacAddr); 4] =
        [(&r4, mac(1)), (&r6, mac(2)), (&s4, mac(3)), (&s6, mac(3))];

    let mut forger = Forger::start(&tb);
    let before = relay.stats();
    let (mut group, mut martian) = (0u64, 0u64);
    for &(conn, conn_mac) in &targets {
        let local = conn.local();
        let (spoofs, normal) = if local.is_ipv4() {
            (SPOOFS4, sa(&format!("{PEER4}:4000")))
        } else {
            (SPOOFS6, sa(&format!("[{PEER6}]:4000")))
        };
        let mut frames: Vec<String> = spoofs
            .iter()
            .map(|s| {
                match s.counter {
                    Counter::GroupSource => group += 1,
                    Counter::Martian => martian += 1,
                }
                Frame {
                    src_mac: s.mac.to_owned(),
                    dst_mac: conn_mac,
                    src: sa(s.src),
                    dst: local,
                    payload: format!("spoofed {} {}", s.mac, s.src),
                    ip_extra: "",
                }
                .json()
            })
            .collect();
        // The IPv4 reserved flag is no reason to drop (Linux takes it too): delivered.
        if local.is_ipv4() {
            frames.push(
                Frame {
                    src_mac: PEER_MAC.to_owned(),
                    dst_mac: conn_mac,
                    src: normal,
                    dst: local,
                    payload: "reserved flag".to_owned(),
                    ip_extra: "\"flags\":4",
                }
                .json(),
            );
        }
        frames.push(
            Frame {
                src_mac: PEER_MAC.to_owned(),
                dst_mac: conn_mac,
                src: normal,
                dst: local,
                payload: "normal".to_owned(),
                ip_extra: "",
            }
            .json(),
        );
        forger.send(&frames);

        // Frames of one conn arrive in the order sent: once the ordinary one is in, every
        // spoofed one before it was dropped or delivered.
        let got = received_until(conn, "normal");
        let mut expected = Vec::new();
        if local.is_ipv4() {
            expected.push(("reserved flag".to_owned(), normal));
        }
        expected.push(("normal".to_owned(), normal));
        assert_eq!(got, expected, "{local}");
    }
    let s = relay.stats();
    assert_eq!(s.rx_group_source - before.rx_group_source, group, "{s}");
    assert_eq!(s.rx_martian - before.rx_martian, martian, "{s}");
    assert_eq!(s.rx_invalid, 0, "{s}");
    assert_eq!(s.rx_queue_full, 0, "{s}");

    drop(forger);
    drop((r4, r6, s4, s6, shared, dyn_relay));
    relay.stop();
    drop(relay);
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
