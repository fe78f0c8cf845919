//! The XDP program's choice, checked with frames scapy builds (an encoder this project did not
//! write) and sends from the peer namespace: 802.1Q, 802.1ad and 0x9100 QinQ frames to
//! registered keys reach exactly their conn; frames to keys nobody registered, with three
//! tags, or broadcast where no conn wants it are passed to the kernel and never reach the
//! relay; broadcast on a VLAN where a receive-multicast conn is registered does; hostile
//! frames to a registered key are redirected, counted as invalid and dropped while valid
//! traffic flows.
//!
//! The scapy peer is `crates/etherconn-testbed/peers/send_frames.py`, shared with the
//! AF_PACKET relay's tests.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::wire::{MacAddr, Tpid, VlanId, VlanTag};
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay, RelayStats};
use etherconn_testbed::{Side, Testbed};
use etherconn_xdp::{ProgramStats, XdpRelay, XdpRelayConfig};

const WAIT: Duration = Duration::from_secs(5);
const X: &str = "02:ec:00:00:01:01";
const SRC: &str = "02:aa:00:00:00:01";

fn tag(tpid: Tpid, id: u16) -> VlanTag {
    VlanTag::new(tpid, VlanId::new(id).unwrap())
}

/// A JSON frame spec for `send_frames.py`: IPv4/UDP from `SRC` 10.88.0.1:`sport` to `dst`
/// 10.88.0.2:7000 behind `tags` ([tpid, id] outermost first), plus `extra` fields.
fn udp4(dst: &str, tags: &[(u16, u16)], sport: u16, payload: &str, extra: &str) -> String {
    let tags: Vec<String> = tags
        .iter()
        .map(|(tpid, id)| format!("[{tpid},{id},0]"))
        .collect();
    format!(
        r#"{{"dst":"{dst}","src":"{SRC}","tags":[{}],"ipsrc":"10.88.0.1","ipdst":"10.88.0.2","sport":{sport},"dport":7000,"payload":"{payload}"{extra}}}"#,
        tags.join(",")
    )
}

/// Sends the frames, in order, from namespace `a` with scapy.
fn scapy_send(tb: &Testbed, frames: &[String]) {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../etherconn-testbed/peers/send_frames.py");
    let json = format!("[{}]", frames.join(","));
    let out =
        tb.a.command("python3")
            .arg(script)
            .arg(&tb.a_if)
            .arg(json)
            .output()
            .expect("run send_frames.py");
    assert!(
        out.status.success(),
        "send_frames.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for(relay: &XdpRelay, what: &str, pred: impl Fn(&RelayStats, &ProgramStats) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, p) = (relay.stats(), relay.program_stats());
        if pred(&s, &p) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s} {p:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn only_registered_keys_reach_the_relay() {
    if !etherconn_testbed::require_root("only_registered_keys_reach_the_relay") {
        return;
    }
    let prefix = "ecxdp-f-";
    let tb = Testbed::new(prefix).unwrap();
    // No IPv6 link-local chatter from the kernel: every frame on the wire is one we send.
    for side in [Side::A, Side::B] {
        let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
        tb.set_sysctl(side, &key, "1").unwrap();
    }
    let relay =
        tb.b.run_in(|| XdpRelay::new(&tb.b_if, XdpRelayConfig::default()))
            .unwrap()
            .unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();
    let x: MacAddr = X.parse().unwrap();
    let conn = |tags: &[VlanTag], cfg: EtherConnConfig| {
        let c = EtherConn::new(dyn_relay.clone(), x, tags, cfg).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c
    };
    let cfg = EtherConnConfig::default;
    let c100 = conn(&[tag(Tpid::DOT1Q, 100)], cfg().recv_multicast(true));
    let c200_100 = conn(&[tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 100)], cfg());
    let c300_100 = conn(&[tag(Tpid::QINQ_LEGACY, 300), tag(Tpid::DOT1Q, 100)], cfg());
    let untagged = conn(&[], cfg());

    let before = relay.program_stats();
    scapy_send(
        &tb,
        &[
            // Passed: a VLAN nobody registered, an unregistered MAC, a three-tag stack nobody
            // registered, broadcast on a VLAN without a receive-multicast conn.
            udp4(X, &[(0x8100, 102)], 2001, "vlan-102", ""),
            udp4("02:ec:00:00:01:99", &[], 2002, "stranger", ""),
            udp4(
                X,
                &[(0x88a8, 1), (0x8100, 2), (0x8100, 100)],
                2003,
                "three-tags",
                "",
            ),
            udp4("ff:ff:ff:ff:ff:ff", &[(0x8100, 101)], 2004, "bcast-101", ""),
            // Redirected and delivered.
            udp4(X, &[(0x8100, 100)], 1100, "dot1q-100", ""),
            udp4(X, &[(0x88a8, 200), (0x8100, 100)], 1200, "qinq-200-100", ""),
            udp4(X, &[(0x9100, 300), (0x8100, 100)], 1300, "9100-300-100", ""),
            udp4("ff:ff:ff:ff:ff:ff", &[(0x8100, 100)], 1400, "bcast-100", ""),
            // Redirected, then dropped by the dispatcher as invalid.
            udp4(
                X,
                &[(0x8100, 100)],
                1500,
                "bad-ip-sum",
                r#","bad_ip_chksum":true"#,
            ),
            udp4(
                X,
                &[(0x8100, 100)],
                1501,
                "bad-udp-sum",
                r#","bad_udp_chksum":true"#,
            ),
            udp4(X, &[(0x8100, 100)], 1502, "truncated", r#","truncate":30"#),
            udp4(X, &[(0x8100, 100)], 1503, "ihl-4", r#","ip":{"ihl":4}"#),
            // Valid traffic after the hostile frames.
            udp4(X, &[], 1000, "untagged", ""),
        ],
    );

    let expect = |c: &EtherConn, port: u16, marker: &str, ids: &[u16]| {
        let rx = c.recv_frame().unwrap_or_else(|e| panic!("{marker}: {e}"));
        let udp = rx.info.udp().expect("UDP");
        assert_eq!(udp.remote.port(), port, "{marker}");
        assert_eq!(&rx.frame()[udp.payload.range()], marker.as_bytes());
        let got: Vec<u16> = rx
            .info
            .vlans()
            .as_slice()
            .iter()
            .map(|t| t.id.get())
            .collect();
        assert_eq!(got, ids, "{marker}");
    };
    expect(&c100, 1100, "dot1q-100", &[100]);
    expect(&c100, 1400, "bcast-100", &[100]);
    expect(&c200_100, 1200, "qinq-200-100", &[200, 100]);
    expect(&c300_100, 1300, "9100-300-100", &[300, 100]);
    expect(&untagged, 1000, "untagged", &[]);
    for c in [&c100, &c200_100, &c300_100, &untagged] {
        assert_eq!(c.queued(), 0, "{c:?} got more than its frames");
    }

    // 9 frames redirected (5 valid, 4 hostile), 4 passed; the relay saw only the 9.
    wait_for(&relay, "9 offered", |s, _| s.rx_offered == 9);
    let s = relay.stats();
    assert_eq!(s.rx_invalid, 4, "{s}");
    assert_eq!(s.rx_bad_checksum, 2, "{s}");
    assert_eq!((s.rx_delivered, s.rx_multicast_delivered), (4, 1), "{s}");
    assert_eq!(
        (s.rx_miss, s.rx_to_default, s.rx_multicast_ignored),
        (0, 0, 0),
        "{s}"
    );
    let p = relay.program_stats();
    assert_eq!(p.redirected - before.redirected, 9, "{p:?}");
    assert_eq!(p.passed - before.passed, 4, "{p:?}");

    drop((c100, c200_100, c300_100, untagged));
    // With the conns gone, their keys left the program's map: the same frames are passed.
    let before = relay.program_stats();
    scapy_send(&tb, &[udp4(X, &[(0x8100, 100)], 1100, "late", "")]);
    wait_for(&relay, "the late frame passed", |_, p| {
        p.passed > before.passed
    });
    assert_eq!(relay.program_stats().redirected, before.redirected);
    assert_eq!(relay.stats().rx_offered, 9);

    drop(dyn_relay);
    relay.stop();
    drop(relay);
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
