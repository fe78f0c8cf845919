//! `RUdpConn` through the loopback relay: round trips, the accept rules, next-hop MACs,
//! size limits, fragments, timeouts and the batch calls.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{EtherType, MacAddr, Tpid, VlanId, VlanTag};
use etherconn_relay::{EtherConn, EtherConnConfig};
use etherconn_relay::{PacketRelay, RelayError};
use etherconn_udp::{RUdpConfig, RUdpConn, RecvMeta, UdpError, BATCH_SIZE};

fn qinq() -> [VlanTag; 2] {
    [
        VlanTag::new(Tpid::QINQ, VlanId::new(300).unwrap()),
        VlanTag::dot1q(10).unwrap().with_pcp(5),
    ]
}

/// Two conns `a` (mac 1) and `b` (mac 2) that resolve each other's IPs.
fn pair(
    relay: &Arc<dyn PacketRelay>,
    vlans: &[VlanTag],
    a_addr: &str,
    b_addr: &str,
    b_cfg: RUdpConfig,
) -> (RUdpConn, RUdpConn) {
    let (a_addr, b_addr) = (sa(a_addr), sa(b_addr));
    let a_ip = a_addr.ip().to_string();
    let b_ip = b_addr.ip().to_string();
    let resolver = table(&[(a_ip.as_str(), mac(1)), (b_ip.as_str(), mac(2))]);
    let resolver = Arc::new(resolver);
    let r2 = resolver.clone();
    let a_cfg = RUdpConfig::default().resolver(move |ip| resolver(ip));
    let b_cfg = b_cfg.resolver(move |ip| r2(ip));
    let a = RUdpConn::new(relay.clone(), mac(1), vlans, a_addr, a_cfg).unwrap();
    let b = RUdpConn::new(relay.clone(), mac(2), vlans, b_addr, b_cfg).unwrap();
    a.set_read_timeout(Some(WAIT)).unwrap();
    b.set_read_timeout(Some(WAIT)).unwrap();
    (a, b)
}

fn round_trip(a_addr: &str, b_addr: &str, vlans: &[VlanTag]) {
    let relay = relay();
    let (a, b) = pair(&relay, vlans, a_addr, b_addr, RUdpConfig::default());
    let mut buf = [0u8; 2048];
    // The largest datagram the link carries on this VLAN stack and IP version goes too.
    let max = a.max_payload();
    assert_eq!(max, b.max_payload());
    for len in [0usize, 1, 17, 100, max] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        assert_eq!(a.send_to(&payload, sa(b_addr)).unwrap(), len);
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!(from, sa(a_addr));
        assert_eq!(
            &buf[..n],
            &payload[..],
            "payload of {len} bytes, padding stripped"
        );
        b.send_to(&payload, from).unwrap();
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!((n, from), (len, sa(b_addr)));
    }
    assert_eq!(a.rx_filtered() + b.rx_filtered(), 0);
    let s = relay.stats();
    assert_eq!(s.rx_delivered, 10, "{s}");
    assert_eq!(s.rx_invalid, 0, "{s}");
}

#[test]
fn ipv4_round_trip_untagged_and_qinq() {
    round_trip("192.0.2.1:4000", "192.0.2.2:5000", &[]);
    round_trip("192.0.2.1:4000", "192.0.2.2:5000", &qinq());
}

#[test]
fn ipv6_round_trip_untagged_and_qinq() {
    round_trip("[2001:db8::1]:4000", "[2001:db8::2]:5000", &[]);
    round_trip("[2001:db8::1]:4000", "[2001:db8::2]:5000", &qinq());
}

#[test]
fn truncates_like_udp_and_reports_metadata() {
    let relay = relay();
    let (a, b) = pair(
        &relay,
        &qinq(),
        "192.0.2.1:4000",
        "192.0.2.2:5000",
        RUdpConfig::default(),
    );
    a.send_to(b"0123456789", sa("192.0.2.2:5000")).unwrap();
    let mut small = [0u8; 4];
    assert_eq!(b.recv_from(&mut small).unwrap(), (4, sa("192.0.2.1:4000")));
    assert_eq!(&small, b"0123");

    a.send_to(b"0123456789", sa("192.0.2.2:5000")).unwrap();
    let mut b0 = [0u8; 4];
    let mut bufs = [&mut b0[..]];
    let mut meta = [RecvMeta::default()];
    assert_eq!(b.recv_batch(&mut bufs, &mut meta).unwrap(), 1);
    let m = meta[0];
    assert!(m.truncated);
    assert_eq!(m.len, 4);
    assert_eq!(m.remote, sa("192.0.2.1:4000"));
    assert_eq!(m.local, sa("192.0.2.2:5000"));
    assert_eq!((m.src_mac, m.dst_mac), (mac(1), mac(2)));
    assert_eq!(m.ttl, 255, "default TTL");
}

#[test]
fn accept_any_off_drops_datagrams_not_for_us() {
    let relay = relay();
    // b's resolver entry also sends 192.0.2.99 to b's MAC: a datagram for another IP.
    let resolver = table(&[("192.0.2.2", mac(2)), ("192.0.2.99", mac(2))]);
    let a = RUdpConn::new(
        relay.clone(),
        mac(1),
        &[],
        sa("192.0.2.1:4000"),
        RUdpConfig::default().resolver(resolver),
    )
    .unwrap();
    let b = RUdpConn::new(
        relay.clone(),
        mac(2),
        &[],
        sa("192.0.2.2:5000"),
        RUdpConfig::default(),
    )
    .unwrap();
    b.set_nonblocking(true).unwrap();
    a.send_to(b"wrong port", sa("192.0.2.2:5001")).unwrap();
    a.send_to(b"wrong ip", sa("192.0.2.99:5000")).unwrap();
    let mut buf = [0u8; 64];
    let e = b.recv_from(&mut buf).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    assert_eq!(b.rx_filtered(), 2);

    a.send_to(b"wrong port", sa("192.0.2.2:5001")).unwrap();
    a.send_to(b"right", sa("192.0.2.2:5000")).unwrap();
    let (n, _) = b.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"right");
    assert_eq!(b.rx_filtered(), 3);
}

#[test]
fn accept_any_takes_every_udp_datagram_like_a_dhcp_client() {
    let relay = relay();
    // A DHCP server at 192.0.2.1:67 and a client with no address yet.
    let server = RUdpConn::new(
        relay.clone(),
        mac(1),
        &[],
        sa("192.0.2.1:67"),
        RUdpConfig::default().resolver(table(&[
            ("192.0.2.50", mac(2)),
            ("192.0.2.77", mac(2)),
            ("0.0.0.0", mac(2)),
        ])),
    )
    .unwrap();
    // accept_martians: the last offer below goes to 0.0.0.0, a martian destination that a
    // client without it drops (`accept_any_still_drops_martians`); no DHCP server sends there.
    let client = RUdpConn::new(
        relay.clone(),
        mac(2),
        &[],
        sa("0.0.0.0:68"),
        RUdpConfig::default()
            .accept_any(true)
            .recv_multicast(true)
            .accept_martians(true),
    )
    .unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    server.set_read_timeout(Some(WAIT)).unwrap();
    client
        .send_to(b"DISCOVER", sa("255.255.255.255:67"))
        .unwrap();
    // The loopback relay is a hub: the client's own broadcast comes back to it (on a real
    // interface the relay ignores its outgoing frames).
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"DISCOVER"[..], sa("0.0.0.0:68")));
    // The server has no recv_multicast: the broadcast DISCOVER never reaches it.
    server.set_nonblocking(true).unwrap();
    assert_eq!(
        server.recv_from(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    // Offers to the address being offered, unicast and broadcast, and to some other port.
    for dst in ["192.0.2.50:68", "255.255.255.255:68", "192.0.2.77:9999"] {
        let dst = sa(dst);
        server
            .send_to_from(b"OFFER", sa("192.0.2.1:67"), dst)
            .unwrap_or_else(|e| panic!("{dst}: {e}"));
        let mut meta = [RecvMeta::default()];
        let mut b0 = [0u8; 64];
        assert_eq!(client.recv_batch(&mut [&mut b0[..]], &mut meta).unwrap(), 1);
        assert_eq!(&b0[..meta[0].len], b"OFFER");
        assert_eq!(meta[0].local, dst);
        assert_eq!(meta[0].remote, sa("192.0.2.1:67"));
    }
    assert_eq!(client.rx_filtered(), 0);
}

#[test]
fn broadcast_and_multicast_to_our_port_need_recv_multicast() {
    let relay = relay();
    let a = RUdpConn::new(
        relay.clone(),
        mac(1),
        &[],
        sa("192.0.2.1:4000"),
        RUdpConfig::default(),
    )
    .unwrap();
    let b = RUdpConn::new(
        relay.clone(),
        mac(2),
        &[],
        sa("192.0.2.2:5000"),
        RUdpConfig::default().recv_multicast(true),
    )
    .unwrap();
    let c = RUdpConn::new(
        relay.clone(),
        mac(3),
        &[],
        sa("192.0.2.3:5000"),
        RUdpConfig::default(),
    )
    .unwrap();
    b.set_nonblocking(true).unwrap();
    c.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    for dst in ["255.255.255.255:5000", "239.1.2.3:5000"] {
        a.send_to(dst.as_bytes(), sa(dst)).unwrap();
        let (n, from) = b.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (dst.as_bytes(), sa("192.0.2.1:4000")));
        assert_eq!(
            c.recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
    // A broadcast to another port reaches b's EtherConn but is not b's.
    a.send_to(b"x", sa("255.255.255.255:5001")).unwrap();
    assert_eq!(
        b.recv_from(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    assert_eq!(b.rx_filtered(), 1);
}

#[test]
fn unspecified_local_ip_receives_any_ip_of_its_family() {
    let relay = relay();
    let a = RUdpConn::new(
        relay.clone(),
        mac(1),
        &[],
        sa("[2001:db8::1]:4000"),
        RUdpConfig::default().resolver(table(&[("2001:db8::2", mac(2)), ("2001:db8::3", mac(2))])),
    )
    .unwrap();
    let b = RUdpConn::new(
        relay.clone(),
        mac(2),
        &[],
        sa("[::]:5000"),
        RUdpConfig::default(),
    )
    .unwrap();
    b.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    for dst in ["[2001:db8::2]:5000", "[2001:db8::3]:5000"] {
        a.send_to(b"hi", sa(dst)).unwrap();
        assert_eq!(
            b.recv_from(&mut buf).unwrap(),
            (2, sa("[2001:db8::1]:4000"))
        );
    }
    a.send_to(b"hi", sa("[2001:db8::2]:5001")).unwrap();
    assert!(b.recv_from(&mut buf).is_err());
    assert_eq!(b.rx_filtered(), 1);
    // It sends from the unspecified address (as a client before address assignment); the
    // default resolver floods, which the default conn sees.
    let sniff = sniffer(&relay);
    b.send_to(b"from-any", sa("[2001:db8::1]:4000")).unwrap();
    let rx = sniff.recv_frame().unwrap();
    let udp = rx.info.udp().unwrap();
    assert_eq!(udp.remote, sa("[::]:5000"));
    assert_eq!(rx.info.dst_mac(), MacAddr::BROADCAST);
}

/// An EtherConn that is the relay's default conn: it sees every frame no other conn takes.
fn sniffer(relay: &Arc<dyn PacketRelay>) -> EtherConn {
    let c = EtherConn::new(
        relay.clone(),
        mac(0xee),
        &[],
        EtherConnConfig::default().default_conn(true),
    )
    .unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c
}

#[test]
fn resolver_picks_the_destination_mac() {
    let relay = relay();
    let sniff = sniffer(&relay);
    let next_hop = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
    let a = RUdpConn::new(
        relay.clone(),
        mac(1),
        &[],
        sa("192.0.2.1:4000"),
        RUdpConfig::default()
            .resolver(table(&[("198.51.100.7", next_hop)]))
            .ttl(17)
            .dscp(46),
    )
    .unwrap();
    let cases = [
        ("198.51.100.7:53", next_hop),
        ("255.255.255.255:67", MacAddr::BROADCAST),
        (
            "239.129.1.2:5000",
            MacAddr([0x01, 0x00, 0x5e, 0x01, 0x01, 0x02]),
        ),
        (
            "224.0.0.251:5353",
            MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]),
        ),
    ];
    for (dst, want) in cases {
        a.send_to(b"where", sa(dst)).unwrap();
        let rx = sniff.recv_frame().unwrap();
        assert_eq!(rx.info.dst_mac(), want, "{dst}");
        assert_eq!(rx.info.src_mac, mac(1));
        let ip = rx.info.ip().unwrap();
        assert_eq!(ip.ttl, 17);
        assert_eq!(rx.frame()[15] >> 2, 46, "DSCP of the frame to {dst}");
        assert_eq!(rx.info.udp().unwrap().local, sa(dst));
    }
    // Unknown unicast destination: refused, not flooded.
    let e = a.send_to(b"where", sa("198.51.100.8:53")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
    assert!(matches!(udp_error(&e), UdpError::NoNextHop(ip) if *ip == ip_of("198.51.100.8")));

    // IPv6 multicast never asks the resolver; the default resolver floods unicast.
    let b = RUdpConn::new(
        relay.clone(),
        mac(2),
        &[],
        sa("[2001:db8::2]:546"),
        RUdpConfig::default(),
    )
    .unwrap();
    b.send_to(b"solicit", sa("[ff02::1:2]:547")).unwrap();
    let rx = sniff.recv_frame().unwrap();
    assert_eq!(rx.info.dst_mac(), MacAddr([0x33, 0x33, 0, 1, 0, 2]));
    assert_eq!(rx.info.ip().unwrap().ttl, 255, "default hop limit");
    b.send_to(b"unicast", sa("[2001:db8::99]:547")).unwrap();
    let rx = sniff.recv_frame().unwrap();
    assert_eq!(rx.info.dst_mac(), MacAddr::BROADCAST);
}

fn ip_of(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

#[test]
fn too_large_datagrams_are_refused_with_the_limit() {
    // The loopback relay's link has a 1500-byte MTU: 1472 bytes of UDP over IPv4, 1452 over
    // IPv6; an 802.1ad outer tag and a second tag take 4 bytes each of it.
    let relay = relay();
    for (vlans, a_addr, b_addr, ip_header, max) in [
        (&[][..], "192.0.2.1:1", "192.0.2.2:2", 20, 1472),
        (&qinq()[..], "192.0.2.1:1", "192.0.2.2:2", 20, 1464),
        (&[][..], "[2001:db8::1]:1", "[2001:db8::2]:2", 40, 1452),
    ] {
        let (a, b) = pair(&relay, vlans, a_addr, b_addr, RUdpConfig::default());
        assert_eq!(a.max_payload(), max);
        let big = vec![0x42u8; max + 1];
        let e = a.send_to(&big, sa(b_addr)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        match udp_error(&e) {
            UdpError::TooLarge {
                len,
                max: m,
                limit,
                ipv6,
            } => {
                assert_eq!((*len, *m, *ipv6), (max + 1, max, ip_header == 40));
                assert_eq!((limit.mtu, limit.tags), (1500, vlans.len()));
            }
            other => panic!("{other:?}"),
        }
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "UDP payload of {} bytes does not fit one frame: at most {max} bytes here \
                 (the interface MTU of 1500 bytes",
                max + 1
            )),
            "{text}"
        );
        let family = if ip_header == 40 { "IPv6" } else { "IPv4" };
        assert!(
            text.contains(&format!(
                "less {ip_header} bytes of {family} header and 8 of UDP"
            )),
            "{text}"
        );
        // The largest one goes through whole.
        assert_eq!(a.send_to(&big[..max], sa(b_addr)).unwrap(), max);
        let mut buf = vec![0u8; 4096];
        let (n, _) = b.recv_from(&mut buf).unwrap();
        assert_eq!(n, max);
        assert!(buf[..n].iter().all(|&x| x == 0x42));
        drop((a, b));
    }
}

#[test]
fn family_mismatch_is_invalid_input() {
    let relay = relay();
    let a = RUdpConn::new(
        relay.clone(),
        mac(1),
        &[],
        sa("192.0.2.1:1"),
        RUdpConfig::default(),
    )
    .unwrap();
    let e = a.send_to(b"x", sa("[2001:db8::1]:2")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(matches!(udp_error(&e), UdpError::FamilyMismatch { .. }));
}

#[test]
fn ip_fragments_are_never_delivered() {
    let relay = relay();
    for (src, dst) in [
        ("192.0.2.1:4000", "192.0.2.2:5000"),
        ("[2001:db8::1]:4000", "[2001:db8::2]:5000"),
    ] {
        let b = RUdpConn::new(
            relay.clone(),
            mac(2),
            &[],
            sa(dst),
            RUdpConfig::default().accept_any(true),
        )
        .unwrap();
        b.set_nonblocking(true).unwrap();
        let before = relay.stats();
        let frame = if sa(dst).is_ipv4() {
            ipv4_first_fragment(mac(1), mac(2), sa(src), sa(dst), b"first fragment")
        } else {
            ipv6_first_fragment(mac(1), mac(2), sa(src), sa(dst), b"first fragment")
        };
        relay.dispatcher().deliver(&frame, None, false);
        let s = relay.stats();
        assert_eq!(s.rx_fragments - before.rx_fragments, 1, "{s}");
        assert_eq!(
            s.rx_delivered - before.rx_delivered,
            1,
            "reaches the EtherConn: {s}"
        );
        let mut buf = [0u8; 64];
        let e = b.recv_from(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{dst}");
        assert_eq!(b.rx_filtered(), 1, "{dst}");
        // The same datagram unfragmented is delivered.
        let whole = udp_frame(mac(1), mac(2), &[], sa(src), sa(dst), b"whole");
        relay.dispatcher().deliver(&whole, None, false);
        assert_eq!(b.recv_from(&mut buf).unwrap(), (5, sa(src)));
    }
}

#[test]
fn timeouts_and_nonblocking_mode() {
    let relay = relay();
    let (a, b) = pair(
        &relay,
        &[],
        "192.0.2.1:4000",
        "192.0.2.2:5000",
        RUdpConfig::default(),
    );
    assert_eq!(
        b.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        b.set_write_timeout(Some(Duration::ZERO))
            .unwrap_err()
            .kind(),
        io::ErrorKind::InvalidInput
    );
    let t = Duration::from_millis(50);
    b.set_read_timeout(Some(t)).unwrap();
    b.set_write_timeout(Some(t)).unwrap();
    assert_eq!(b.read_timeout().unwrap(), Some(t));
    assert_eq!(b.write_timeout().unwrap(), Some(t));
    let mut buf = [0u8; 16];
    let start = Instant::now();
    let e = b.recv_from(&mut buf).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() >= t);

    // Frames that are not ours do not stretch the timeout indefinitely: the flood goes on for
    // 5 s (or until the read returns), the read must end long before. (The margin is wide
    // because a loaded machine can hold the reader off its CPU for a few hundred ms.)
    let start = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (flood, took) = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed)
                && start.elapsed() < Duration::from_secs(5)
            {
                a.send_to(b"other port", sa("192.0.2.2:5999")).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let r = (b.recv_from(&mut buf), start.elapsed());
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    });
    assert_eq!(flood.unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(b.rx_filtered() > 0);

    b.set_nonblocking(true).unwrap();
    let start = Instant::now();
    assert_eq!(
        b.recv_from(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    assert!(start.elapsed() < t);
    // Drain the filtered frames left over from the flood; then a datagram arrives at once.
    a.send_to(b"now", sa("192.0.2.2:5000")).unwrap();
    assert_eq!(b.recv_from(&mut buf).unwrap().0, 3);
    b.set_nonblocking(false).unwrap();
    b.set_read_timeout(None).unwrap();
    assert_eq!(b.read_timeout().unwrap(), None);
}

#[test]
fn stopping_the_relay_wakes_a_blocked_reader() {
    let relay = relay();
    let b = RUdpConn::new(
        relay.clone(),
        mac(2),
        &[],
        sa("192.0.2.2:5000"),
        RUdpConfig::default(),
    )
    .unwrap();
    let e = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut buf = [0u8; 16];
            b.recv_from(&mut buf)
        });
        std::thread::sleep(Duration::from_millis(50));
        relay.stop();
        h.join().unwrap()
    });
    assert_eq!(e.unwrap_err().kind(), io::ErrorKind::NotConnected);
    let e = b.send_to(b"x", sa("192.0.2.1:1")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotConnected);
}

#[test]
fn batch_send_and_receive() {
    let relay = relay();
    let (a, b) = pair(
        &relay,
        &qinq(),
        "192.0.2.1:4000",
        "192.0.2.2:5000",
        RUdpConfig::default().queue_depth(128),
    );
    let dst = sa("192.0.2.2:5000");
    let payloads: Vec<Vec<u8>> = (0..(2 * BATCH_SIZE + 5))
        .map(|i| format!("datagram {i}").into_bytes())
        .collect();
    let batch: Vec<(&[u8], SocketAddr)> = payloads.iter().map(|p| (&p[..], dst)).collect();
    assert_eq!(a.send_batch(&batch).unwrap(), batch.len());

    let mut store = vec![[0u8; 64]; 16];
    let mut meta = [RecvMeta::default(); 16];
    let mut got = Vec::new();
    while got.len() < payloads.len() {
        let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| &mut b[..]).collect();
        let n = b.recv_batch(&mut bufs, &mut meta).unwrap();
        assert!(n >= 1);
        assert!(
            n == 16 || got.len() + n == payloads.len(),
            "drains what is queued"
        );
        for (buf, m) in bufs.iter().zip(&meta).take(n) {
            assert_eq!(m.remote, sa("192.0.2.1:4000"));
            got.push(buf[..m.len].to_vec());
        }
    }
    assert_eq!(got, payloads, "all of them, in order");

    // Nothing queued: the batch waits for the first datagram only.
    b.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
    let mut b0 = [0u8; 8];
    let mut b1 = [0u8; 8];
    let e = b
        .recv_batch(&mut [&mut b0[..], &mut b1[..]], &mut meta)
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert_eq!(b.recv_batch(&mut [], &mut meta).unwrap(), 0);

    // A datagram that cannot be sent stops the batch there.
    let big = vec![0u8; 4000];
    let mixed: Vec<(&[u8], SocketAddr)> = vec![(b"one", dst), (b"two", dst), (&big, dst)];
    assert_eq!(a.send_batch(&mixed).unwrap(), 2);
    let e = a.send_batch(&[(&big, dst), (b"x", dst)]).unwrap_err();
    assert!(matches!(udp_error(&e), UdpError::TooLarge { .. }));
    assert_eq!(a.send_batch(&[]).unwrap(), 0);
}

#[test]
fn construction_errors() {
    let relay = relay();
    let _a = RUdpConn::new(
        relay.clone(),
        mac(1),
        &[],
        sa("192.0.2.1:1"),
        RUdpConfig::default(),
    )
    .unwrap();
    // The same MAC and VLANs for IPv4 again: the L2 key is taken.
    let e = RUdpConn::new(
        relay.clone(),
        mac(1),
        &[],
        sa("192.0.2.9:1"),
        RUdpConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(e, UdpError::Relay(RelayError::KeyInUse(_))), "{e}");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::AddrInUse);
    // IPv6 on the same MAC is another key.
    RUdpConn::new(
        relay.clone(),
        mac(1),
        &[],
        sa("[2001:db8::1]:1"),
        RUdpConfig::default(),
    )
    .unwrap();
    let e = RUdpConn::new(
        relay.clone(),
        mac(5),
        &[],
        sa("192.0.2.5:1"),
        RUdpConfig::default().dscp(64),
    )
    .unwrap_err();
    assert!(matches!(e, UdpError::InvalidConfig(_)));

    let shared = EtherConn::new(
        relay.clone(),
        mac(6),
        &[],
        EtherConnConfig::default().l4_demux(true),
    )
    .unwrap();
    let e =
        RUdpConn::from_ether_conn(shared, sa("192.0.2.6:1"), RUdpConfig::default()).unwrap_err();
    assert!(matches!(e, UdpError::InvalidConfig(_)), "{e}");
    let v4_only = EtherConn::new(
        relay.clone(),
        mac(7),
        &[],
        EtherConnConfig::default().ethertypes(&[EtherType::IPV4, EtherType::ARP]),
    )
    .unwrap();
    let e = RUdpConn::from_ether_conn(v4_only, sa("[2001:db8::7]:1"), RUdpConfig::default())
        .unwrap_err();
    assert!(matches!(e, UdpError::InvalidConfig(_)), "{e}");
}

#[test]
fn from_ether_conn_keeps_timeouts_and_other_ethertypes() {
    let relay = relay();
    let ether = EtherConn::new(relay.clone(), mac(2), &[], EtherConnConfig::default()).unwrap();
    ether
        .set_read_timeout(Some(Duration::from_millis(40)))
        .unwrap();
    let b = RUdpConn::from_ether_conn(ether, sa("192.0.2.2:5000"), RUdpConfig::default()).unwrap();
    assert_eq!(b.read_timeout().unwrap(), Some(Duration::from_millis(40)));
    // An ARP frame reaches the EtherConn and is filtered, not returned as a datagram.
    b.ether_conn()
        .send_to(&[0u8; 28], EtherType::ARP, mac(2))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        b.recv_from(&mut buf).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    assert_eq!(b.rx_filtered(), 1);
}

#[test]
fn port_zero_picks_an_ephemeral_port_and_spoofed_sources_arrive_as_sent() {
    let relay = relay();
    let (a, b) = pair(
        &relay,
        &[],
        "192.0.2.1:0",
        "192.0.2.2:5000",
        RUdpConfig::default(),
    );
    let local = a.local_addr().unwrap();
    assert!(local.port() >= 49152, "{local}");
    a.send_to(b"x", sa("192.0.2.2:5000")).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(b.recv_from(&mut buf).unwrap().1, local);
    a.send_to_from(b"y", sa("203.0.113.9:999"), sa("192.0.2.2:5000"))
        .unwrap();
    assert_eq!(b.recv_from(&mut buf).unwrap(), (1, sa("203.0.113.9:999")));
}

/// Spoofed sources a host drops, towards `b` (192.0.2.2:5000 or [2001:db8::2]:5000).
const MARTIAN_SOURCES: [&str; 12] = [
    "255.255.255.255:9",
    "224.0.0.1:9",
    "127.0.0.1:9",
    "0.0.0.0:9",
    "0.1.2.3:9",
    "240.0.0.1:9",
    "192.0.2.1:0",
    "[ff02::1]:9",
    "[::1]:9",
    "[::]:9",
    "[::ffff:192.0.2.1]:9",
    "[2001:db8::1]:0",
];

fn b_of(src: &str) -> SocketAddr {
    if sa(src).is_ipv4() {
        sa("192.0.2.2:5000")
    } else {
        sa("[2001:db8::2]:5000")
    }
}

#[test]
fn martian_sources_and_port_zero_never_reach_the_conn_and_are_counted() {
    for accept in [false, true] {
        let relay = relay();
        let cfg = RUdpConfig::default().accept_martians(accept);
        let (a4, b4) = pair(&relay, &[], "192.0.2.1:4000", "192.0.2.2:5000", cfg.clone());
        drop(a4);
        let (a6, b6) = {
            let relay = relay.clone();
            let resolver = table(&[("2001:db8::2", mac(4))]);
            let a = RUdpConn::new(
                relay.clone(),
                mac(3),
                &[],
                sa("[2001:db8::1]:4000"),
                RUdpConfig::default().resolver(resolver),
            )
            .unwrap();
            let b = RUdpConn::new(relay, mac(4), &[], sa("[2001:db8::2]:5000"), cfg).unwrap();
            (a, b)
        };
        // A v4 sender that resolves b4 (a4 was dropped to free mac 1).
        let tx4 = RUdpConn::new(
            relay.clone(),
            mac(1),
            &[],
            sa("192.0.2.1:4000"),
            RUdpConfig::default().resolver(table(&[("192.0.2.2", mac(2))])),
        )
        .unwrap();
        for src in MARTIAN_SOURCES {
            let tx = if sa(src).is_ipv4() { &tx4 } else { &a6 };
            tx.send_to_from(src.as_bytes(), sa(src), b_of(src))
                .unwrap_or_else(|e| panic!("{src}: {e}"));
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for b in [&b4, &b6] {
            b.set_nonblocking(true).unwrap();
            while let Ok((_, from)) = b.recv_from(&mut buf) {
                got.push(from);
            }
        }
        let s = relay.stats();
        if accept {
            assert_eq!(got.len(), MARTIAN_SOURCES.len(), "{got:?}");
            assert_eq!(s.rx_martian, 0, "{s}");
        } else {
            assert_eq!(got, Vec::<SocketAddr>::new());
            assert_eq!(s.rx_martian, MARTIAN_SOURCES.len() as u64, "{s}");
        }
        assert_eq!(b4.rx_filtered() + b6.rx_filtered(), 0);
        // The same datagram from an ordinary source arrives.
        tx4.send_to(b"ok", sa("192.0.2.2:5000")).unwrap();
        a6.send_to(b"ok", sa("[2001:db8::2]:5000")).unwrap();
        b4.set_nonblocking(false).unwrap();
        b6.set_nonblocking(false).unwrap();
        b4.set_read_timeout(Some(WAIT)).unwrap();
        b6.set_read_timeout(Some(WAIT)).unwrap();
        assert_eq!(b4.recv_from(&mut buf).unwrap(), (2, sa("192.0.2.1:4000")));
        assert_eq!(
            b6.recv_from(&mut buf).unwrap(),
            (2, sa("[2001:db8::1]:4000"))
        );
    }
}

#[test]
fn group_source_macs_never_reach_the_conn() {
    let relay = relay();
    let (_a, b) = pair(
        &relay,
        &[],
        "192.0.2.1:4000",
        "192.0.2.2:5000",
        RUdpConfig::default().accept_martians(true),
    );
    for src_mac in [MacAddr::BROADCAST, MacAddr([0x01, 0x00, 0x5e, 0, 0, 1])] {
        let f = udp_frame(
            src_mac,
            mac(2),
            &[],
            sa("192.0.2.1:4000"),
            sa("192.0.2.2:5000"),
            b"group",
        );
        relay.dispatcher().deliver(&f, None, false);
    }
    b.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        b.recv_from(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    assert_eq!(relay.stats().rx_group_source, 2);
}

#[test]
fn accept_any_still_drops_martians() {
    let relay = relay();
    let server = RUdpConn::new(
        relay.clone(),
        mac(1),
        &[],
        sa("192.0.2.1:67"),
        RUdpConfig::default().resolver(|_| Some(mac(2))),
    )
    .unwrap();
    let client = RUdpConn::new(
        relay.clone(),
        mac(2),
        &[],
        sa("0.0.0.0:68"),
        RUdpConfig::default().accept_any(true),
    )
    .unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    for (src, dst) in [
        ("192.0.2.1:67", "127.0.0.1:68"),
        ("127.0.0.1:67", "192.0.2.50:68"),
        ("192.0.2.1:0", "192.0.2.50:68"),
    ] {
        server.send_to_from(b"forged", sa(src), sa(dst)).unwrap();
    }
    // The UDP layer refuses an unspecified destination; a forged one is built by hand.
    let forged = UdpFrame {
        src_mac: server.local_mac(),
        dst_mac: mac(2),
        vlans: &[],
        src: sa("192.0.2.1:67"),
        dst: sa("0.0.0.0:68"),
        ttl: 64,
        dscp: 0,
        payload: b"forged",
    };
    server
        .ether_conn()
        .send_built(|buf| build_udp_frame(buf, &forged))
        .unwrap();
    // Destination port 0 cannot even be built (a peer's such datagram is invalid on receive:
    // the scapy peer test sends one).
    let e = server
        .send_to_from(b"forged", sa("192.0.2.1:67"), sa("192.0.2.50:0"))
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    server
        .send_to_from(b"OFFER", sa("192.0.2.1:67"), sa("192.0.2.50:68"))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(client.recv_from(&mut buf).unwrap(), (5, sa("192.0.2.1:67")));
    assert_eq!(&buf[..5], b"OFFER");
    let st = relay.stats();
    assert_eq!((st.rx_martian, st.rx_invalid), (4, 0), "{st}");
}

/// Async receives on many endpoints from one runtime thread: no thread per endpoint, every
/// task woken by the relay when its datagram arrives.
#[cfg(feature = "tokio")]
#[test]
fn async_endpoints_share_one_runtime_thread() {
    use etherconn_relay::LoopbackRelay;
    use etherconn_udp::{
        AsyncRUdpConn, AsyncSharingRUdpConn, SharedConfig, SharedEtherConn, SharingConfig,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
        let server = AsyncRUdpConn::new(
            RUdpConn::new(
                relay.clone(),
                "02:00:00:00:aa:01".parse().unwrap(),
                &[],
                "192.0.2.1:7".parse().unwrap(),
                RUdpConfig::default().resolver(|_| "02:00:00:00:aa:02".parse().ok()),
            )
            .unwrap(),
        );
        let shared = SharedEtherConn::new(
            relay.clone(),
            "02:00:00:00:aa:02".parse().unwrap(),
            &[],
            SharedConfig::default(),
        )
        .unwrap();
        let clients: Vec<_> = (0..200u16)
            .map(|i| {
                let local: SocketAddr = format!("192.0.2.2:{}", 10_000 + i).parse().unwrap();
                Arc::new(AsyncSharingRUdpConn::new(
                    shared.bind(local, SharingConfig::default()).unwrap(),
                ))
            })
            .collect();
        // Every client waits before anything is sent.
        let waiting: Vec<_> = clients
            .iter()
            .map(|c| {
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    let (n, from) = c.recv_from(&mut buf).await.unwrap();
                    (buf[..n].to_vec(), from, c.get_ref().local_addr().unwrap())
                })
            })
            .collect();
        tokio::task::yield_now().await;
        for c in &clients {
            let dst = c.get_ref().local_addr().unwrap();
            server
                .send_to(dst.port().to_string().as_bytes(), dst)
                .await
                .unwrap();
        }
        for w in waiting {
            let (payload, from, local) = tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(payload, local.port().to_string().as_bytes());
            assert_eq!(from, "192.0.2.1:7".parse::<SocketAddr>().unwrap());
        }
        relay.stop();
        let mut buf = [0u8; 8];
        assert_eq!(
            server.recv_from(&mut buf).await.unwrap_err().kind(),
            std::io::ErrorKind::NotConnected
        );
    });
}
