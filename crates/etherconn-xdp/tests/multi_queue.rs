//! `XdpRelay` on a veth with four receive queues: one socket and one thread per queue, and
//! traffic that arrives on every queue delivered exactly once.
//!
//! A veth delivers a frame on the receive queue numbered like the transmit queue the sender
//! picked, and the kernel picks that by flow hash: 64 kernel UDP sockets with distinct ports
//! in the peer namespace spread their datagrams over the four queues.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::wire::MacAddr;
use etherconn_relay::PacketRelay;
use etherconn_testbed::Netns;
use etherconn_udp::{RUdpConfig, RUdpConn};
use etherconn_xdp::{XdpRelay, XdpRelayConfig};

const QUEUES: u32 = 4;
const SENDERS: usize = 64;
const PER_SENDER: usize = 8;

/// Names of the calling process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_owned())
        .collect()
}

#[test]
fn four_queues_four_threads_every_frame_once() {
    if !etherconn_testbed::require_root("four_queues_four_threads_every_frame_once") {
        return;
    }
    let prefix = "ecxdp-q-";
    let a = Netns::new(prefix).unwrap();
    let b = Netns::new(prefix).unwrap();
    let id = std::process::id() % 0x10000;
    let (a_if, b_if) = (format!("qa{id:x}"), format!("qb{id:x}"));
    let q = QUEUES.to_string();
    a.ip(&[
        "link",
        "add",
        &a_if,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        &b_if,
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "netns",
        b.name(),
    ])
    .unwrap();
    a.ip(&["addr", "add", "10.92.0.1/24", "dev", &a_if])
        .unwrap();
    for (ns, ifname) in [(&a, &a_if), (&b, &b_if)] {
        ns.ip(&["link", "set", "dev", ifname, "up"]).unwrap();
    }
    // The kernel computes UDP checksums in software (see docs/xdp.md).
    a.exec(&["ethtool", "-K", &a_if, "tx", "off"]).unwrap();

    let relay = b
        .run_in(|| XdpRelay::new(&b_if, XdpRelayConfig::default()))
        .unwrap()
        .unwrap();
    assert_eq!(relay.queues(), [0, 1, 2, 3], "every queue by default");
    // A thread names itself once it runs: wait for all four.
    let want: Vec<String> = (0..QUEUES).map(|i| format!("etherconn-xdp{i}")).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let names = thread_names();
        if want.iter().all(|w| names.contains(w)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "one thread per queue, {want:?}: {names:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    let mac = MacAddr([0x02, 0xec, 0x92, 0, 0, 1]);
    let local: SocketAddr = "10.92.0.50:4000".parse().unwrap();
    a.ip(&[
        "neigh",
        "add",
        "10.92.0.50",
        "lladdr",
        &mac.to_string(),
        "dev",
        &a_if,
    ])
    .unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();
    let cfg = RUdpConfig::default()
        .resolver(|_| None)
        .queue_depth(SENDERS * PER_SENDER * 2);
    let conn = RUdpConn::new(dyn_relay, mac, &[], local, cfg).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    let senders: Vec<UdpSocket> = (0..SENDERS)
        .map(|_| {
            a.run_in(|| UdpSocket::bind("10.92.0.1:0"))
                .unwrap()
                .unwrap()
        })
        .collect();
    let mut sent = HashSet::new();
    for round in 0..PER_SENDER {
        for (i, s) in senders.iter().enumerate() {
            let msg = format!("{i}-{round}");
            s.send_to(msg.as_bytes(), local).unwrap();
            sent.insert(msg);
        }
        // Paced by round, so that the conn's queue and the rings never overflow.
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut got = HashSet::new();
    let mut buf = [0u8; 64];
    for _ in 0..sent.len() {
        let (n, _) = conn.recv_from(&mut buf).expect("every datagram arrives");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(got.insert(msg.clone()), "{msg} delivered twice");
    }
    assert_eq!(got, sent);
    conn.set_nonblocking(true).unwrap();
    assert!(conn.recv_from(&mut buf).is_err(), "nothing more");

    let per_queue = relay.queue_stats();
    eprintln!("per-queue counters: {per_queue:?}");
    for qs in &per_queue {
        assert!(
            qs.rx_frames > 0,
            "queue {} received nothing: {per_queue:?}",
            qs.queue
        );
    }
    let total: u64 = per_queue.iter().map(|q| q.rx_frames).sum();
    assert_eq!(total, (SENDERS * PER_SENDER) as u64, "{per_queue:?}");
    drop(conn);
    relay.stop();
    drop(relay);
    drop((a, b));
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
