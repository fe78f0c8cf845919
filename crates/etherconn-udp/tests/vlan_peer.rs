//! `RUdpConn` behind 802.1Q, QinQ and three tags against scapy (`tests/peers/udp_peer.py`, in
//! namespace `a` of a veth testbed; this kernel has no 802.1Q module, so no kernel peer can be
//! tagged).
//! scapy sends each conn a datagram on its VLAN stack; the conn must receive it (payload,
//! sender, the address it was sent to) and answer, and scapy must decode the answer with the
//! conn's VLAN stack (TPIDs, ids, PCP), MAC, addresses, ports and a good checksum. The same
//! datagrams on another VLAN stack (a sibling VLAN id, no tag, only the inner tag, two of three
//! tags) reach no conn and are counted as misses; four tags never pass the kernel filter.
//!
//! Root only (and python3 with scapy): without root the test prints a skip line and passes,
//! unless `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::wire::{MacAddr, Tpid, VlanId, VlanTag};
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::PacketRelay;
use etherconn_testbed::{Side, Testbed};
use etherconn_udp::{RUdpConfig, RUdpConn};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(5);
const PEER_MAC: &str = "02:aa:61:00:00:01";
const PEER4: &str = "10.61.0.1";
const PEER6: &str = "2001:db8:61::1";

/// `tests/peers/udp_peer.py` in namespace `a`, on `a_if`.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start(tb: &Testbed) -> Peer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/udp_peer.py");
        let mut child =
            tb.a.command("python3")
                .arg(script)
                .arg(&tb.a_if)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start python3 udp_peer.py");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    /// Hands scapy a request; [`Peer::reply`] reads its answer.
    fn request(&mut self, request: &Value) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
    }

    fn reply(&mut self) -> Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("udp_peer.py said {line:?}: {e}"))
    }
}

impl Drop for Peer {
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

fn tag(tpid: Tpid, id: u16, pcp: u8) -> VlanTag {
    VlanTag::new(tpid, VlanId::new(id).unwrap()).with_pcp(pcp)
}

/// A datagram from the peer to `dst` (MAC and address), behind `tags` ([tpid, vid, pcp]).
fn datagram(
    dst_mac: MacAddr,
    tags: Value,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &str,
) -> Value {
    let l3 = if dst.is_ipv4() { "ipv4" } else { "ipv6" };
    json!({
        "src": PEER_MAC, "dst": dst_mac.to_string(), "tags": tags, "l3": l3,
        "ipsrc": src.ip().to_string(), "ipdst": dst.ip().to_string(),
        "sport": src.port(), "dport": dst.port(), "payload": payload,
    })
}

#[test]
fn rudp_conns_behind_vlan_stacks_talk_to_scapy() {
    if !etherconn_testbed::require_root("rudp_conns_behind_vlan_stacks_talk_to_scapy") {
        return;
    }
    let prefix = "ecvlanpeer-";
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

    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    let peer_mac: MacAddr = PEER_MAC.parse().unwrap();
    let peer4 = sa(&format!("{PEER4}:4000"));
    let peer6 = sa(&format!("[{PEER6}]:4000"));
    // Answers go to the peer's MAC, not broadcast: the resolver knows it.
    let resolver = move |_| Some(peer_mac);
    let cases = [
        (
            "dot1q",
            MacAddr([0x02, 0xec, 0x61, 0, 0, 1]),
            vec![tag(Tpid::DOT1Q, 100, 3)],
            sa("10.61.0.2:7000"),
            peer4,
        ),
        (
            "qinq",
            MacAddr([0x02, 0xec, 0x61, 0, 0, 2]),
            vec![tag(Tpid::QINQ, 200, 5), tag(Tpid::DOT1Q, 100, 1)],
            sa("[2001:db8:61::2]:7000"),
            peer6,
        ),
        (
            "9100",
            MacAddr([0x02, 0xec, 0x61, 0, 0, 3]),
            vec![tag(Tpid::QINQ_LEGACY, 300, 0), tag(Tpid::DOT1Q, 101, 7)],
            sa("10.61.0.3:7000"),
            peer4,
        ),
        (
            "triple",
            MacAddr([0x02, 0xec, 0x61, 0, 0, 4]),
            vec![
                tag(Tpid::QINQ, 200, 2),
                tag(Tpid::DOT1Q, 100, 4),
                tag(Tpid::DOT1Q, 10, 0),
            ],
            sa("10.61.0.4:7000"),
            peer4,
        ),
        (
            "triple-9100",
            MacAddr([0x02, 0xec, 0x61, 0, 0, 5]),
            vec![
                tag(Tpid::QINQ_LEGACY, 300, 1),
                tag(Tpid::QINQ, 200, 0),
                tag(Tpid::DOT1Q, 4094, 7),
            ],
            sa("[2001:db8:61::5]:7000"),
            peer6,
        ),
    ];
    let conns: Vec<RUdpConn> = cases
        .iter()
        .map(|(_, m, vlans, local, _)| {
            let cfg = RUdpConfig::default().resolver(resolver);
            let c = RUdpConn::new(dyn_relay.clone(), *m, vlans, *local, cfg).unwrap();
            c.set_read_timeout(Some(WAIT)).unwrap();
            c
        })
        .collect();
    let tags_json = |vlans: &[VlanTag], pcp: Option<u8>| -> Value {
        Value::Array(
            vlans
                .iter()
                .map(|t| json!([t.tpid.get(), t.id.get(), pcp.unwrap_or(t.pcp)]))
                .collect(),
        )
    };

    // First the datagrams no conn may take: each conn's own, on a stack next to its own. (Not
    // another TPID with the same ids: the key holds VLAN ids only, so such a frame is the
    // conn's.)
    let (m1, m2, m3, m4, m5) = (cases[0].1, cases[1].1, cases[2].1, cases[3].1, cases[4].1);
    let wrong = [
        datagram(
            m1,
            json!([[0x8100, 101, 0]]),
            peer4,
            cases[0].3,
            "wrong: vlan 101",
        ),
        datagram(m1, json!([]), peer4, cases[0].3, "wrong: untagged"),
        datagram(
            m2,
            json!([[0x88a8, 200, 0], [0x8100, 101, 0]]),
            peer6,
            cases[1].3,
            "wrong: 200/101",
        ),
        datagram(
            m2,
            json!([[0x8100, 100, 0]]),
            peer6,
            cases[1].3,
            "wrong: inner only",
        ),
        datagram(
            m3,
            json!([[0x9100, 301, 0], [0x8100, 101, 0]]),
            peer4,
            cases[2].3,
            "wrong: 9100 301/101",
        ),
        datagram(
            m4,
            json!([[0x88a8, 200, 0], [0x8100, 100, 0], [0x8100, 11, 0]]),
            peer4,
            cases[3].3,
            "wrong: 200/100/11",
        ),
        datagram(
            m4,
            json!([[0x88a8, 200, 0], [0x8100, 100, 0]]),
            peer4,
            cases[3].3,
            "wrong: 200/100 of 200/100/10",
        ),
        datagram(
            m5,
            json!([[0x9100, 300, 0], [0x88a8, 200, 0], [0x8100, 4093, 0]]),
            peer6,
            cases[4].3,
            "wrong: 9100 300/200/4093",
        ),
    ];
    // Four tags, the outer three the triple conn's: the relay's kernel filter drops it.
    let four = datagram(
        m4,
        json!([
            [0x88a8, 200, 0],
            [0x8100, 100, 0],
            [0x8100, 10, 0],
            [0x8100, 1, 0]
        ]),
        peer4,
        cases[3].3,
        "wrong: four tags",
    );
    let mut peer = Peer::start(&tb);
    let before = relay.stats();
    peer.request(&json!({"send": wrong}));
    assert_eq!(peer.reply()["sent"], json!(wrong.len()));
    peer.request(&json!({ "send": [four] }));
    assert_eq!(peer.reply()["sent"], json!(1));

    // Then each conn's own datagram, with a PCP of 6 that the conn does not use (the key has
    // no PCP), while scapy sniffs for the answer: the conn receives it, answers, and scapy
    // decodes the answer.
    for ((name, m, vlans, local, from), conn) in cases.iter().zip(&conns) {
        let request = datagram(
            *m,
            tags_json(vlans, Some(6)),
            *from,
            *local,
            &format!("to {name}"),
        );
        peer.request(&json!({
            "send": [request],
            "watch": {"from_mac": m.to_string(), "until": format!("from {name}"),
                      "timeout_ms": 3000, "grace_ms": 200},
        }));
        let mut buf = [0u8; 256];
        let (n, remote) = conn
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&buf[..n], format!("to {name}").as_bytes(), "{name}");
        assert_eq!(remote, *from, "{name}");
        conn.send_to(format!("from {name}").as_bytes(), *from)
            .unwrap();

        let got = peer.reply();
        let caught = got["caught"].as_array().unwrap();
        assert_eq!(caught.len(), 1, "{name}: {got}");
        let c = &caught[0];
        assert_eq!(c["payload"], json!(format!("from {name}")), "{name}");
        assert_eq!(c["src"], json!(m.to_string()), "{name}");
        assert_eq!(c["dst"], json!(PEER_MAC), "{name}");
        assert_eq!(
            c["tags"],
            tags_json(vlans, None),
            "{name}: the conn's stack, PCP included"
        );
        assert_eq!(c["ipsrc"], json!(local.ip().to_string()), "{name}");
        assert_eq!(c["ipdst"], json!(from.ip().to_string()), "{name}");
        assert_eq!(c["sport"], json!(local.port()), "{name}");
        assert_eq!(c["dport"], json!(from.port()), "{name}");
        assert_eq!(c["ttl"], json!(255), "{name}");
        assert_eq!(c["udp_cksum_ok"], json!(true), "{name}");
    }

    // The wrong datagrams went first on the one receive thread, so they were dispatched before
    // the first conn's own: none reached a conn, each was a miss.
    for conn in &conns {
        assert_eq!(
            conn.ether_conn().queued(),
            0,
            "{conn:?} got more than its datagram"
        );
        assert_eq!(conn.rx_filtered(), 0, "{conn:?}");
    }
    // The four-tag frame was never offered.
    let s = relay.stats();
    assert_eq!(s.rx_offered - before.rx_offered, 13, "{s}");
    assert_eq!(s.rx_delivered - before.rx_delivered, 5, "{s}");
    assert_eq!(s.rx_miss - before.rx_miss, 8, "{s}");
    assert_eq!(s.rx_invalid, 0, "{s}");

    drop(peer);
    drop((conns, dyn_relay));
    relay.stop();
    drop(relay);
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
