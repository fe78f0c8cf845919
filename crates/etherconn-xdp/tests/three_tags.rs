//! The XDP program's key holds three VLAN ids: scapy (an encoder this project did not write)
//! sends triple-tagged frames from the peer namespace, and each reaches exactly its three-tag
//! conn, beside a two-tag conn on the same outer ids; a sibling three-tag stack, two of a
//! conn's three tags and a fourth tag are passed to the kernel by the program and never reach
//! the relay.
//!
//! The scapy peer is `crates/etherconn-testbed/peers/send_frames.py`, as in `program_filter.rs`.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::wire::{MacAddr, Tpid, VlanId, VlanTag};
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
use etherconn_testbed::{Side, Testbed};
use etherconn_xdp::{XdpRelay, XdpRelayConfig};

const WAIT: Duration = Duration::from_secs(5);
const X: &str = "02:ec:00:00:03:01";

/// IPv4/UDP from 10.88.0.1:`sport` to `X` 10.88.0.2:7000 behind `tags` ([tpid, id, pcp]).
fn udp4(tags: &[(u16, u16)], sport: u16, payload: &str) -> String {
    let tags: Vec<String> = tags
        .iter()
        .map(|(tpid, id)| format!("[{tpid},{id},3]"))
        .collect();
    format!(
        r#"{{"dst":"{X}","src":"02:aa:00:00:00:01","tags":[{}],"ipsrc":"10.88.0.1","ipdst":"10.88.0.2","sport":{sport},"dport":7000,"payload":"{payload}"}}"#,
        tags.join(",")
    )
}

#[test]
fn three_tag_keys_reach_their_conns() {
    if !etherconn_testbed::require_root("three_tag_keys_reach_their_conns") {
        return;
    }
    let prefix = "ecxdp-3t-";
    let tb = Testbed::new(prefix).unwrap();
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
    let tag = |tpid, id| VlanTag::new(tpid, VlanId::new(id).unwrap());
    let conn = |tags: &[VlanTag]| {
        let c = EtherConn::new(dyn_relay.clone(), x, tags, EtherConnConfig::default()).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c
    };
    let two = conn(&[tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 100)]);
    let three = conn(&[
        tag(Tpid::QINQ, 200),
        tag(Tpid::DOT1Q, 100),
        tag(Tpid::DOT1Q, 10),
    ]);
    let legacy = conn(&[
        tag(Tpid::QINQ_LEGACY, 300),
        tag(Tpid::QINQ, 200),
        tag(Tpid::DOT1Q, 4094),
    ]);

    let before = relay.program_stats();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../etherconn-testbed/peers/send_frames.py");
    let frames = [
        // Passed: a sibling three-tag stack, and a fourth tag behind three registered ones.
        udp4(
            &[(0x88a8, 200), (0x8100, 100), (0x8100, 11)],
            2001,
            "200-100-11",
        ),
        udp4(
            &[(0x88a8, 200), (0x8100, 100), (0x8100, 10), (0x8100, 1)],
            2002,
            "four-tags",
        ),
        // Redirected and delivered.
        udp4(
            &[(0x88a8, 200), (0x8100, 100), (0x8100, 10)],
            1210,
            "200-100-10",
        ),
        udp4(&[(0x88a8, 200), (0x8100, 100)], 1200, "200-100"),
        udp4(
            &[(0x9100, 300), (0x88a8, 200), (0x8100, 4094)],
            1300,
            "300-200-4094",
        ),
    ];
    let out =
        tb.a.command("python3")
            .arg(script)
            .arg(&tb.a_if)
            .arg(format!("[{}]", frames.join(",")))
            .output()
            .expect("run send_frames.py");
    assert!(
        out.status.success(),
        "send_frames.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let expect = |c: &EtherConn, port: u16, marker: &str, tags: &[(u16, u16)]| {
        let rx = c.recv_frame().unwrap_or_else(|e| panic!("{marker}: {e}"));
        let udp = rx.info.udp().expect("UDP");
        assert_eq!(udp.remote.port(), port, "{marker}");
        assert_eq!(&rx.frame()[udp.payload.range()], marker.as_bytes());
        let got: Vec<(u16, u16)> = rx
            .info
            .vlans()
            .as_slice()
            .iter()
            .map(|t| (t.tpid.get(), t.id.get()))
            .collect();
        assert_eq!(got, tags, "{marker}: TPIDs and ids as sent");
        assert!(rx.info.vlans().as_slice().iter().all(|t| t.pcp == 3));
    };
    expect(
        &three,
        1210,
        "200-100-10",
        &[(0x88a8, 200), (0x8100, 100), (0x8100, 10)],
    );
    expect(&two, 1200, "200-100", &[(0x88a8, 200), (0x8100, 100)]);
    expect(
        &legacy,
        1300,
        "300-200-4094",
        &[(0x9100, 300), (0x88a8, 200), (0x8100, 4094)],
    );
    for c in [&two, &three, &legacy] {
        assert_eq!(c.queued(), 0, "{c:?} got more than its frame");
    }

    // Three redirected, two passed; the relay saw only the three.
    let deadline = Instant::now() + WAIT;
    while relay.stats().rx_delivered < 3 {
        assert!(Instant::now() < deadline, "{}", relay.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = relay.stats();
    assert_eq!((s.rx_offered, s.rx_miss, s.rx_invalid), (3, 0, 0), "{s}");
    let p = relay.program_stats();
    assert_eq!(p.redirected - before.redirected, 3, "{p:?}");
    assert_eq!(p.passed - before.passed, 2, "{p:?}");

    drop((two, three, legacy));
    drop(dyn_relay);
    relay.stop();
    drop(relay);
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
