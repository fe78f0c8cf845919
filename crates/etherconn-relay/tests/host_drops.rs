//! What the relay drops because a host would: frames from a group (multicast or broadcast)
//! source MAC, for every conn; and, for queues that ask (`RxQueue::set_drop_martians`, which
//! `RUdpConn` and `SharingRUdpConn` turn on), UDP datagrams with a martian address or port 0.
//! Each rule on both delivery paths (one frame at a time and batched), each drop counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::key::{L2EndpointKey, L4RecvKey, VlanIds};
use etherconn_core::wire::{ipv4, EtherType, MacAddr};
use etherconn_relay::{
    ConnEntry, Dispatcher, DispatcherConfig, EtherConn, EtherConnConfig, Inbox, LoopbackRelay,
    Mail, PacketRelay, RelayStats, RxQueue, Watchable,
};

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn udp(src_mac: MacAddr, dst_mac: MacAddr, src: &str, dst: &str) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let len = build_udp_frame(
        &mut buf,
        &UdpFrame {
            src_mac,
            dst_mac,
            vlans: &[],
            src: sa(src),
            dst: sa(dst),
            ttl: 64,
            dscp: 0,
            payload: b"x",
        },
    )
    .unwrap();
    buf.truncate(len);
    buf
}

/// Group source MACs: broadcast, IPv4 and IPv6 multicast, and a bare group bit.
const GROUP_SOURCES: [MacAddr; 4] = [
    MacAddr([0xff; 6]),
    MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]),
    MacAddr([0x33, 0x33, 0x00, 0x00, 0x00, 0x01]),
    MacAddr([0x03, 0, 0, 0, 0, 9]),
];

/// Martian (source, destination) pairs towards 192.0.2.1:7 / [2001:db8::1]:7, one per class.
const MARTIANS: [(&str, &str); 16] = [
    ("255.255.255.255:9", "192.0.2.1:7"),
    ("224.0.0.1:9", "192.0.2.1:7"),
    ("239.1.2.3:9", "192.0.2.1:7"),
    ("127.0.0.1:9", "192.0.2.1:7"),
    ("0.0.0.0:9", "192.0.2.1:7"),
    ("0.1.2.3:9", "192.0.2.1:7"),
    ("240.0.0.1:9", "192.0.2.1:7"),
    ("192.0.2.9:0", "192.0.2.1:7"),
    ("192.0.2.9:9", "127.0.0.1:7"),
    ("192.0.2.9:9", "0.0.0.0:7"),
    ("[ff02::1]:9", "[2001:db8::1]:7"),
    ("[::1]:9", "[2001:db8::1]:7"),
    ("[::]:9", "[2001:db8::1]:7"),
    ("[::ffff:192.0.2.9]:9", "[2001:db8::1]:7"),
    ("[2001:db8::9]:0", "[2001:db8::1]:7"),
    ("[2001:db8::9]:9", "[ff01::1]:7"),
];

/// The same datagrams from ordinary sources, which every queue takes.
const NORMAL: [(&str, &str); 3] = [
    ("192.0.2.9:9", "192.0.2.1:7"),
    ("0.0.0.0:68", "255.255.255.255:67"),
    ("[2001:db8::9]:9", "[2001:db8::1]:7"),
];

fn keys(m: MacAddr) -> [L2EndpointKey; 2] {
    [EtherType::IPV4, EtherType::IPV6].map(|et| L2EndpointKey::new(m, VlanIds::NONE, et))
}

fn drain(q: &RxQueue) -> usize {
    let mut n = 0;
    while q.pop(Some(Duration::ZERO)).is_ok() {
        n += 1;
    }
    n
}

/// Runs `frames` through `d` one at a time or in one batch.
fn deliver_all(d: &Dispatcher, frames: &[Vec<u8>], batched: bool) {
    if batched {
        let mut b = d.delivery();
        for f in frames {
            b.push(f, None, false);
        }
        b.flush();
    } else {
        for f in frames {
            d.deliver(f, None, false);
        }
    }
}

#[test]
fn group_source_frames_reach_no_conn_and_are_counted() {
    for batched in [false, true] {
        let d = Dispatcher::new(DispatcherConfig::default());
        let conn = ConnEntry::new(64, true);
        let default = ConnEntry::new(64, false);
        d.register(&keys(mac(1)), &conn, false).unwrap();
        d.set_default(&default, false).unwrap();
        let mut frames = Vec::new();
        for src in GROUP_SOURCES {
            // To the conn, to the broadcast (its multicast membership and the default), and
            // to nobody (the default).
            for dst in [mac(1), MacAddr::BROADCAST, mac(9)] {
                frames.push(udp(src, dst, "192.0.2.9:9", "192.0.2.1:7"));
            }
        }
        frames.push(udp(mac(5), mac(1), "192.0.2.9:9", "192.0.2.1:7"));
        deliver_all(&d, &frames, batched);
        let s = d.stats();
        assert_eq!(s.rx_offered, 13, "{s}");
        assert_eq!(s.rx_group_source, 12, "{s}");
        assert_eq!(s.rx_delivered, 1, "{s}");
        assert_eq!(
            s.rx_to_default + s.rx_multicast_delivered + s.rx_invalid,
            0,
            "{s}"
        );
        assert_eq!((drain(&conn.queue), drain(&default.queue)), (1, 0));
    }
}

#[test]
fn accept_group_source_delivers_them() {
    let d = Dispatcher::new(DispatcherConfig::default().accept_group_source(true));
    let conn = ConnEntry::new(64, false);
    d.register(&keys(mac(1)), &conn, false).unwrap();
    let frames: Vec<Vec<u8>> = GROUP_SOURCES
        .iter()
        .map(|&src| udp(src, mac(1), "192.0.2.9:9", "192.0.2.1:7"))
        .collect();
    deliver_all(&d, &frames, true);
    assert_eq!(d.stats().rx_group_source, 0);
    assert_eq!(drain(&conn.queue), GROUP_SOURCES.len());
}

/// One conn that drops martians and one that does not, both receiving the same datagrams.
#[test]
fn martian_datagrams_reach_only_queues_that_take_them() {
    for batched in [false, true] {
        let d = Dispatcher::new(DispatcherConfig::default());
        let host = ConnEntry::new(64, false);
        host.queue.set_drop_martians(true);
        assert!(host.queue.drops_martians());
        let raw = ConnEntry::new(64, false);
        assert!(!raw.queue.drops_martians(), "off by default");
        d.register(&keys(mac(1)), &host, false).unwrap();
        d.register(&keys(mac(2)), &raw, false).unwrap();
        let mut frames = Vec::new();
        for (src, dst) in MARTIANS.iter().chain(&NORMAL) {
            for to in [mac(1), mac(2)] {
                frames.push(udp(mac(5), to, src, dst));
            }
        }
        deliver_all(&d, &frames, batched);
        let s = d.stats();
        assert_eq!(s.rx_martian, MARTIANS.len() as u64, "{s}");
        assert_eq!(
            s.rx_delivered,
            (MARTIANS.len() + 2 * NORMAL.len()) as u64,
            "{s}"
        );
        assert_eq!(drain(&host.queue), NORMAL.len());
        assert_eq!(drain(&raw.queue), MARTIANS.len() + NORMAL.len());
    }
}

/// Only UDP is judged: a non-UDP frame from a martian source still reaches the conn (which
/// counts it as not its own).
#[test]
fn non_udp_frames_pass_the_martian_filter() {
    let d = Dispatcher::new(DispatcherConfig::default());
    let host = ConnEntry::new(64, false);
    host.queue.set_drop_martians(true);
    d.register(&keys(mac(1)), &host, false).unwrap();
    let mut f = udp(mac(5), mac(1), "127.0.0.1:0", "192.0.2.1:7");
    // Protocol 17 -> 253 (experimental).
    let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
    ip.set_protocol(253);
    ip.fill_checksum();
    d.deliver(&f, None, false);
    let s = d.stats();
    assert_eq!(
        (s.rx_invalid, s.rx_martian, s.rx_delivered),
        (0, 0, 1),
        "{s}"
    );
    assert_eq!(drain(&host.queue), 1);
}

/// A shared L2 endpoint's UDP endpoints each decide for themselves.
#[test]
fn udp_endpoints_of_a_shared_l2_endpoint_filter_one_by_one() {
    for batched in [false, true] {
        let d = Dispatcher::new(DispatcherConfig::default());
        let shared = ConnEntry::with_l4(64, false);
        d.register(&keys(mac(1)), &shared, false).unwrap();
        let host = Arc::new(RxQueue::new(64));
        host.set_drop_martians(true);
        let raw = Arc::new(RxQueue::new(64));
        let l4 = shared.l4.as_ref().unwrap();
        l4.register(L4RecvKey::udp("0.0.0.0".parse().unwrap(), 7), &host, false)
            .unwrap();
        l4.register(L4RecvKey::udp("0.0.0.0".parse().unwrap(), 8), &raw, false)
            .unwrap();
        let mut frames = Vec::new();
        for port in [7, 8] {
            for (src, dst) in [
                ("127.0.0.1:9", "192.0.2.1"),
                ("224.0.0.1:9", "192.0.2.1"),
                ("192.0.2.9:0", "192.0.2.1"),
                ("192.0.2.9:9", "192.0.2.1"),
            ] {
                frames.push(udp(mac(5), mac(1), src, &format!("{dst}:{port}")));
            }
        }
        deliver_all(&d, &frames, batched);
        let s = d.stats();
        assert_eq!((s.rx_martian, s.rx_delivered), (3, 5), "{s}");
        assert_eq!((drain(&host), drain(&raw)), (1, 4));
    }
}

/// A conn attached to an `Inbox` is filtered before the inbox: its reader never sees them.
#[test]
fn inbox_readers_never_see_martians() {
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(DispatcherConfig::default());
    let conn = EtherConn::new(
        relay.clone(),
        mac(1),
        &[],
        EtherConnConfig::default().ethertypes(&[EtherType::IPV4]),
    )
    .unwrap();
    conn.rx_queue().set_drop_martians(true);
    let inbox = Inbox::new();
    inbox.attach(&conn, 7).unwrap();
    let d = relay.dispatcher();
    for src in ["127.0.0.1:9", "255.255.255.255:9", "192.0.2.9:9"] {
        d.deliver(&udp(mac(5), mac(1), src, "192.0.2.1:7"), None, false);
    }
    let mut mail = Vec::new();
    inbox
        .recv(&mut mail, 16, Some(Duration::from_millis(100)))
        .unwrap();
    let got: Vec<SocketAddr> = mail
        .iter()
        .map(|m| match m {
            Mail::Frame { token: 7, frame } => frame.info.udp().unwrap().remote,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(got, [sa("192.0.2.9:9")]);
    let s: RelayStats = relay.stats();
    assert_eq!(s.rx_martian, 2, "{s}");
}

#[test]
fn the_new_counters_are_displayed() {
    let shown = RelayStats::default().to_string();
    assert!(shown.contains("rx_group_source=0"), "{shown}");
    assert!(shown.contains("rx_martian=0"), "{shown}");
}
