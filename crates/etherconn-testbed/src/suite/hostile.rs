//! Hostile and broken input from scapy (each counted and dropped, never delivered), and a stop
//! that wakes a blocked reader.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::wire::Tpid;
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay, RelayStats};

use super::common::{
    assert_no_leftovers, conn, mac, open_b, quiet, tag, udp_payload, wait_stats, Backend, X,
};
use super::peers::{specs, Scapy, Spec};
use crate::{Side, Testbed};

pub(super) fn bad_then_sentinel(
    scapy: &mut Scapy,
    relay: &Arc<dyn PacketRelay>,
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

/// One case of the suite: see the module documentation.
pub fn bad_input_from_scapy_is_counted_and_dropped(backend: &Backend) {
    let prefix = &backend.prefix("bad");
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let relay = open_b(backend, &tb);
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
            "four VLAN tags",
            Spec::udp4(X, 6, "4 tags").tags(&[
                (0x88a8, 10),
                (0x8100, 20),
                (0x8100, 100),
                (0x8100, 7),
            ]),
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
        // The kernel filter passes ARP/IPv4/IPv6 behind at most three tags, so a frame with four
        // never reaches the dispatcher; every other bad frame is offered and counted invalid.
        let filtered = name == "four VLAN tags";
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

    // Unknown EtherType: a relay whose kernel filter drops it never offers it; one that
    // receives every EtherType (the AF_XDP relay's program redirects by key) hands this
    // unicast frame for a key nobody registered to the default conn.
    n += 1;
    let unknown_et = etherconn_core::wire::EtherType(0x88b5);
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
    if relay.receives(unknown_et) {
        let rx = def
            .recv_frame()
            .expect("the default conn gets the 0x88b5 frame");
        assert_eq!(rx.info.ethertype(), unknown_et);
        assert_eq!(a.rx_offered - b.rx_offered, 2, "0x88b5 offered: {b} -> {a}");
        assert_eq!(a.rx_to_default - b.rx_to_default, 1, "{b} -> {a}");
    } else {
        assert_eq!(
            a.rx_offered - b.rx_offered,
            1,
            "0x88b5 filtered: {b} -> {a}"
        );
    }
    assert_eq!(a.rx_invalid, b.rx_invalid);

    drop(scapy);
    relay.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}

/// A bad UDP checksum in a frame from scapy must be caught. veth marks frames that arrive
/// without a checksum status as `CHECKSUM_UNNECESSARY` when its receive checksum offload is on
/// (the default), which AF_PACKET reports as `TP_STATUS_CSUM_VALID`.
pub fn bad_udp_checksum(backend: &Backend, rx_csum_offload: bool) {
    let prefix = &backend.prefix(if rx_csum_offload { "bu1" } else { "bu0" });
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    if !rx_csum_offload {
        tb.set_offloads(Side::B, &[("rx", "off")]).unwrap();
    }
    let relay = open_b(backend, &tb);
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

/// One case of the suite: see the module documentation.
pub fn stop_wakes_blocked_reader(backend: &Backend) {
    let prefix = &backend.prefix("stp");
    let tb = Testbed::new(prefix).unwrap();
    let relay = open_b(backend, &tb);
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
    drop(tb);
    assert_no_leftovers(prefix);
}
