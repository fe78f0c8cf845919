//! `RawSocketRelay` and `EtherConn` over a veth pair between two network namespaces, checked
//! against independent peers: the kernel's UDP stack, scapy and tshark. The cases every
//! backend shares are `etherconn_testbed::suite` (run here by `relay_peer_suite!`); this file
//! adds what only AF_PACKET has: typed open errors, fanout.
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::sync::Arc;

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{EtherType, VlanTag};
use etherconn_rawsock::{Error, RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
use etherconn_testbed::suite::{
    assert_no_leftovers, conn, mac, quiet, udp_payload, wait_stats, Backend, EtherTypeFilter,
    Events, Oversize, ET, WAIT,
};
use etherconn_testbed::Testbed;

fn open(ifname: &str) -> Arc<dyn PacketRelay> {
    RawSocketRelay::new(ifname, RawSocketRelayConfig::default()).unwrap()
}

fn open_with_ethertypes(ifname: &str, ethertypes: &[EtherType]) -> Arc<dyn PacketRelay> {
    RawSocketRelay::new(
        ifname,
        RawSocketRelayConfig::default().ethertypes(ethertypes),
    )
    .unwrap()
}

etherconn_testbed::relay_peer_suite!(Backend {
    tag: "rs",
    open,
    // TPACKET_V3 reports TP_STATUS_CSUMNOTREADY per frame.
    sees_partial_checksums: true,
    // It sees every frame its filter passes.
    sees_unregistered: true,
    open_with_capture: |ifname, capture| {
        RawSocketRelay::with_capture(ifname, RawSocketRelayConfig::default(), capture).unwrap()
    },
    ethertype_filter: Some(EtherTypeFilter {
        open_with_ethertypes,
        open_with_program: |ifname, program| {
            RawSocketRelay::new(ifname, RawSocketRelayConfig::default().filter(program)).unwrap()
        },
    }),
    // A packet socket passes the kernel's EMSGSIZE on.
    oversize: Oversize::KernelErrno,
    events: Events {
        name: "AF_PACKET relay",
        open: |ifname| open_with_ethertypes(ifname, &[ET]),
        opened: &[
            ("ring_block_size", "262144"),
            // The default ring (checked against the constant below).
            ("ring_block_count", "64"),
            ("threads", "1"),
            ("filter", "ethertypes"),
        ],
        attached: ("AF_PACKET relay: receive filter attached", "instructions"),
    },
});

// The open event above spells the default block count out.
const _: () = assert!(etherconn_rawsock::RingConfig::DEFAULT_BLOCK_COUNT == 64);

#[test]
fn open_errors_are_typed() {
    if !etherconn_testbed::require_root("open_errors_are_typed") {
        return;
    }
    let prefix = "ecrv-oer-";
    let tb = Testbed::new(prefix).unwrap();
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
        let rx_relay: Arc<dyn PacketRelay> = tb
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
