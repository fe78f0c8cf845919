//! `SharedEtherConn` and `SharingRUdpConn` through the loopback relay: demultiplexing by
//! address, wildcard binding, duplicate refusal, unbinding on drop, fragments, timeouts and
//! batches.

mod common;

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etherconn_core::wire::{EtherType, MacAddr, VlanTag};
use etherconn_core::L4RecvKey;
use etherconn_relay::{EtherConn, EtherConnConfig};
use etherconn_relay::{PacketRelay, RelayError};
use etherconn_udp::{
    broadcast_resolver, RUdpConfig, RUdpConn, RecvMeta, SharedConfig, SharedEtherConn,
    SharingConfig, SharingRUdpConn, UdpError, BATCH_SIZE,
};

/// A shared endpoint with `mac(last)` whose resolver sends everything to `peer`.
fn shared(
    relay: &Arc<dyn PacketRelay>,
    last: u8,
    vlans: &[VlanTag],
    peer: MacAddr,
) -> Arc<SharedEtherConn> {
    SharedEtherConn::new(
        relay.clone(),
        mac(last),
        vlans,
        SharedConfig::default().resolver(move |_| Some(peer)),
    )
    .unwrap()
}

fn bind(s: &Arc<SharedEtherConn>, addr: &str) -> SharingRUdpConn {
    let c = s.bind(sa(addr), SharingConfig::default()).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c
}

#[test]
fn round_trips_between_and_within_shared_endpoints() {
    let relay = relay();
    let vlans = [VlanTag::dot1q(42).unwrap()];
    let s1 = shared(&relay, 1, &vlans, mac(2));
    let s2 = shared(&relay, 2, &vlans, mac(1));
    let mut buf = [0u8; 1500];
    for (a_addr, b_addr) in [
        ("192.0.2.1:1000", "192.0.2.2:2000"),
        ("[2001:db8::1]:1000", "[2001:db8::2]:2000"),
    ] {
        let a = bind(&s1, a_addr);
        let b = bind(&s2, b_addr);
        a.send_to(b"over", sa(b_addr)).unwrap();
        assert_eq!(b.recv_from(&mut buf).unwrap(), (4, sa(a_addr)));
        b.send_to(b"back", sa(a_addr)).unwrap();
        assert_eq!(a.recv_from(&mut buf).unwrap(), (4, sa(b_addr)));
    }
    // Two conns on one endpoint: the resolver of s1 points at s2, so use one that points home.
    let home = shared(&relay, 3, &[], mac(3));
    let x = bind(&home, "198.51.100.3:10");
    let y = bind(&home, "198.51.100.3:11");
    x.send_to(b"sibling", sa("198.51.100.3:11")).unwrap();
    assert_eq!(y.recv_from(&mut buf).unwrap(), (7, sa("198.51.100.3:10")));
    assert_eq!(x.queued(), 0);
    assert_eq!(home.bound(), 2);
    assert_eq!(relay.stats().rx_l4_miss, 0);
}

#[test]
fn many_conns_each_get_exactly_their_own() {
    let relay = relay();
    let s = shared(&relay, 1, &[], mac(1));
    let conns: Vec<SharingRUdpConn> = (0..200u16)
        .map(|i| bind(&s, &format!("10.0.{}.{}:{}", i % 3, i % 7 + 1, 20000 + i)))
        .collect();
    let sender = bind(&s, "10.9.9.9:9");
    for c in &conns {
        let dst = c.local_addr().unwrap();
        sender.send_to(dst.to_string().as_bytes(), dst).unwrap();
    }
    let mut buf = [0u8; 64];
    for c in &conns {
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!(from, sa("10.9.9.9:9"));
        assert_eq!(&buf[..n], c.local_addr().unwrap().to_string().as_bytes());
        assert_eq!(c.queued(), 0);
    }
}

#[test]
fn wildcard_ip_takes_what_no_exact_binding_takes() {
    let relay = relay();
    let s = shared(&relay, 1, &[], mac(1));
    let exact = bind(&s, "192.0.2.10:7000");
    let any4 = bind(&s, "0.0.0.0:7000");
    let any6 = bind(&s, "[::]:7000");
    // accept_martians: the wildcard conn's datagram below comes from 0.0.0.0 to a unicast
    // address, a martian source that a conn without it drops.
    let tx = s
        .bind(
            sa("192.0.2.1:1"),
            SharingConfig::default().accept_martians(true),
        )
        .unwrap();
    tx.set_read_timeout(Some(WAIT)).unwrap();
    let tx6 = bind(&s, "[2001:db8::1]:1");
    let mut buf = [0u8; 32];
    tx.send_to(b"exact", sa("192.0.2.10:7000")).unwrap();
    tx.send_to(b"other-ip", sa("192.0.2.11:7000")).unwrap();
    tx6.send_to(b"v6", sa("[2001:db8::5]:7000")).unwrap();
    let (n, _) = exact.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"exact");
    let (n, _) = any4.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"other-ip");
    let (n, from) = any6.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"v6"[..], sa("[2001:db8::1]:1")));
    assert_eq!(exact.queued() + any4.queued() + any6.queued(), 0);
    // Another port: nobody, counted.
    let before = relay.stats().rx_l4_miss;
    tx.send_to(b"nobody", sa("192.0.2.10:7001")).unwrap();
    assert_eq!(relay.stats().rx_l4_miss, before + 1);
    // A wildcard conn sends from the unspecified address unless told otherwise.
    any4.send_to(b"from-any", sa("192.0.2.1:1")).unwrap();
    let mut meta = [RecvMeta::default()];
    let mut b0 = [0u8; 16];
    tx.recv_batch(&mut [&mut b0[..]], &mut meta).unwrap();
    assert_eq!(meta[0].remote, sa("0.0.0.0:7000"));
    any4.send_to_from(b"chosen", sa("192.0.2.77:7000"), sa("192.0.2.1:1"))
        .unwrap();
    assert_eq!(tx.recv_from(&mut buf).unwrap(), (6, sa("192.0.2.77:7000")));
}

#[test]
fn duplicate_address_is_refused_unless_replacing() {
    let relay = relay();
    let s = shared(&relay, 1, &[], mac(1));
    let first = bind(&s, "192.0.2.1:53");
    let e = s
        .bind(sa("192.0.2.1:53"), SharingConfig::default())
        .unwrap_err();
    let key = L4RecvKey::udp(ip("192.0.2.1"), 53);
    assert!(matches!(e, UdpError::AddrInUse(k) if k == key), "{e}");
    assert!(e.to_string().contains("192.0.2.1:53/udp"), "{e}");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::AddrInUse);
    // The same port on another IP, and the wildcard, are other keys.
    let _other = bind(&s, "192.0.2.2:53");
    let _any = bind(&s, "0.0.0.0:53");
    assert_eq!(s.bound(), 3);

    let second = s
        .bind(sa("192.0.2.1:53"), SharingConfig::default().replace(true))
        .unwrap();
    second.set_read_timeout(Some(WAIT)).unwrap();
    let tx = bind(&s, "192.0.2.9:9");
    tx.send_to(b"q", sa("192.0.2.1:53")).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(second.recv_from(&mut buf).unwrap().0, 1);
    assert_eq!(first.queued(), 0);
    // Dropping the replaced conn leaves the replacement bound.
    drop(first);
    tx.send_to(b"q", sa("192.0.2.1:53")).unwrap();
    assert_eq!(second.recv_from(&mut buf).unwrap().0, 1);
}

#[test]
fn drop_unbinds() {
    let relay = relay();
    let s = shared(&relay, 1, &[], mac(1));
    let tx = bind(&s, "192.0.2.9:9");
    let c = bind(&s, "192.0.2.1:4000");
    assert_eq!(s.bound(), 2);
    drop(c);
    assert_eq!(s.bound(), 1);
    let before = relay.stats().rx_l4_miss;
    tx.send_to(b"gone", sa("192.0.2.1:4000")).unwrap();
    assert_eq!(relay.stats().rx_l4_miss, before + 1);
    let again = bind(&s, "192.0.2.1:4000");
    tx.send_to(b"back", sa("192.0.2.1:4000")).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(again.recv_from(&mut buf).unwrap().0, 4);
    // The shared endpoint lives as long as a conn holds it, and unregisters after the last.
    let weak = Arc::downgrade(&s);
    drop(s);
    assert!(weak.upgrade().is_some());
    drop((tx, again));
    assert!(weak.upgrade().is_none());
    assert_eq!(relay.dispatcher().key_count(), 0);
}

#[test]
fn port_zero_picks_distinct_free_ephemeral_ports() {
    let relay = relay();
    let s = shared(&relay, 1, &[], mac(1));
    let taken = bind(&s, "192.0.2.1:0");
    let mut ports = HashSet::new();
    ports.insert(taken.local_addr().unwrap().port());
    let conns: Vec<SharingRUdpConn> = (0..500).map(|_| bind(&s, "192.0.2.1:0")).collect();
    for c in &conns {
        let port = c.local_addr().unwrap().port();
        assert!(port >= 49152, "{port}");
        assert!(ports.insert(port), "port {port} given twice");
    }
    assert_eq!(s.bound(), 501);
}

#[test]
fn fragments_and_non_udp_frames_go_to_the_shared_endpoint_not_a_conn() {
    let relay = relay();
    let s = shared(&relay, 2, &[], mac(1));
    let c4 = bind(&s, "0.0.0.0:5000");
    let c6 = bind(&s, "[::]:5000");
    for c in [&c4, &c6] {
        c.set_nonblocking(true).unwrap();
    }
    let ether = s.ether_conn();
    ether.set_nonblocking(true).unwrap();
    let frames = [
        ipv4_first_fragment(
            mac(1),
            mac(2),
            sa("192.0.2.1:4000"),
            sa("192.0.2.2:5000"),
            b"fragment",
        ),
        ipv6_first_fragment(
            mac(1),
            mac(2),
            sa("[2001:db8::1]:4000"),
            sa("[2001:db8::2]:5000"),
            b"fragment",
        ),
    ];
    let before = relay.stats();
    for f in &frames {
        relay.dispatcher().deliver(f, None, false);
    }
    let after = relay.stats();
    assert_eq!(after.rx_fragments - before.rx_fragments, 2, "{after}");
    let mut buf = [0u8; 64];
    for c in [&c4, &c6] {
        assert_eq!(
            c.recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
    for _ in 0..2 {
        let rx = ether.recv_frame().unwrap();
        assert!(rx.info.ip().unwrap().fragment);
        assert!(rx.info.udp().is_none());
    }
    // An ARP frame goes there too.
    ether.send_to(&[0u8; 28], EtherType::ARP, mac(2)).unwrap();
    assert_eq!(ether.recv_frame().unwrap().info.ethertype(), EtherType::ARP);
}

#[test]
fn timeouts_and_nonblocking_mode() {
    let relay = relay();
    let s = shared(&relay, 1, &[], mac(1));
    let c = bind(&s, "192.0.2.1:1");
    assert_eq!(
        c.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    let t = Duration::from_millis(40);
    c.set_read_timeout(Some(t)).unwrap();
    c.set_write_timeout(Some(t)).unwrap();
    assert_eq!(
        (c.read_timeout().unwrap(), c.write_timeout().unwrap()),
        (Some(t), Some(t))
    );
    let mut buf = [0u8; 8];
    let start = Instant::now();
    assert_eq!(
        c.recv_from(&mut buf).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    assert!(start.elapsed() >= t);
    c.set_nonblocking(true).unwrap();
    let start = Instant::now();
    assert_eq!(
        c.recv_from(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    assert!(start.elapsed() < t);
    c.send_to(b"self", sa("192.0.2.1:1")).unwrap();
    assert_eq!(c.recv_from(&mut buf).unwrap().0, 4);
}

#[test]
fn stopping_the_relay_wakes_readers_and_refuses_binds() {
    let relay = relay();
    let s = shared(&relay, 1, &[], mac(1));
    let c = s.bind(sa("192.0.2.1:1"), SharingConfig::default()).unwrap();
    let r = std::thread::scope(|scope| {
        let h = scope.spawn(|| c.recv_from(&mut [0u8; 8]));
        std::thread::sleep(Duration::from_millis(50));
        relay.stop();
        h.join().unwrap()
    });
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::NotConnected);
    let e = s
        .bind(sa("192.0.2.1:2"), SharingConfig::default())
        .unwrap_err();
    assert!(matches!(e, UdpError::Relay(RelayError::Stopped)), "{e}");
}

#[test]
fn batch_send_and_receive() {
    let relay = relay();
    let s = shared(&relay, 1, &[], mac(1));
    let rx = s
        .bind(
            sa("[2001:db8::1]:9000"),
            SharingConfig::default().queue_depth(128),
        )
        .unwrap();
    let tx = bind(&s, "[2001:db8::2]:9001");
    let dst = rx.local_addr().unwrap();
    let payloads: Vec<Vec<u8>> = (0..(3 * BATCH_SIZE + 1))
        .map(|i| vec![i as u8; i + 1])
        .collect();
    let batch: Vec<(&[u8], SocketAddr)> = payloads.iter().map(|p| (&p[..], dst)).collect();
    assert_eq!(tx.send_batch(&batch).unwrap(), batch.len());
    assert_eq!(rx.queued(), batch.len());
    let mut store = vec![[0u8; 256]; 40];
    let mut meta = vec![RecvMeta::default(); 40];
    let mut got = Vec::new();
    while got.len() < payloads.len() {
        let mut bufs: Vec<&mut [u8]> = store.iter_mut().map(|b| &mut b[..]).collect();
        let n = rx.recv_batch(&mut bufs, &mut meta).unwrap();
        for (b, m) in bufs.iter().zip(&meta).take(n) {
            assert_eq!(m.remote, sa("[2001:db8::2]:9001"));
            assert_eq!(m.local, dst);
            got.push(b[..m.len].to_vec());
        }
    }
    assert_eq!(got, payloads);
    // The batch stops at a datagram of the wrong family.
    let mixed: Vec<(&[u8], SocketAddr)> = vec![(b"a", dst), (b"b", sa("192.0.2.1:1"))];
    assert_eq!(tx.send_batch(&mixed).unwrap(), 1);
}

#[test]
fn too_large_is_refused() {
    let relay = relay();
    let s = shared(&relay, 1, &[VlanTag::dot1q(7).unwrap()], mac(1));
    let c = bind(&s, "192.0.2.1:1");
    // A 1500-byte MTU (the loopback relay's) carries one 802.1Q tag on top.
    let max = 1500 - 20 - 8;
    assert_eq!(c.max_payload(), max);
    let e = c
        .send_to(&vec![0u8; max + 1], sa("192.0.2.1:1"))
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(matches!(udp_error(&e), UdpError::TooLarge { len, .. } if *len == max + 1));
    assert_eq!(c.send_to(&vec![0u8; max], sa("192.0.2.1:1")).unwrap(), max);
}

#[test]
fn shared_endpoint_construction() {
    let relay = relay();
    let plain = EtherConn::new(relay.clone(), mac(1), &[], EtherConnConfig::default()).unwrap();
    let e = SharedEtherConn::from_ether_conn(plain, broadcast_resolver()).unwrap_err();
    assert!(matches!(e, UdpError::InvalidConfig(_)), "{e}");
    let demux = EtherConn::new(
        relay.clone(),
        mac(2),
        &[],
        EtherConnConfig::default().l4_demux(true),
    )
    .unwrap();
    let s = SharedEtherConn::from_ether_conn(demux, broadcast_resolver()).unwrap();
    assert_eq!(s.local_mac(), mac(2));
    // The MAC is taken: another shared endpoint or an RUdpConn on it is refused.
    let e = SharedEtherConn::new(relay.clone(), mac(2), &[], SharedConfig::default()).unwrap_err();
    assert!(matches!(e, UdpError::Relay(RelayError::KeyInUse(_))), "{e}");
    let e = RUdpConn::new(
        relay.clone(),
        mac(2),
        &[],
        sa("192.0.2.2:1"),
        RUdpConfig::default(),
    )
    .unwrap_err();
    assert!(matches!(e, UdpError::Relay(RelayError::KeyInUse(_))), "{e}");
    let e = s
        .bind(sa("192.0.2.2:1"), SharingConfig::default().dscp(99))
        .unwrap_err();
    assert!(matches!(e, UdpError::InvalidConfig(_)));
}

#[test]
fn each_conn_on_a_shared_endpoint_drops_martians_unless_it_accepts_them() {
    let relay = relay();
    let s = shared(&relay, 1, &[], mac(1));
    let host = bind(&s, "0.0.0.0:7000");
    let tool = s
        .bind(
            sa("0.0.0.0:7001"),
            SharingConfig::default()
                .accept_martians(true)
                .queue_depth(16),
        )
        .unwrap();
    let tx = bind(&s, "192.0.2.1:1");
    for c in [&host, &tool] {
        c.set_nonblocking(true).unwrap();
    }
    let forged = [
        "255.255.255.255:9",
        "224.0.0.1:9",
        "127.0.0.1:9",
        "0.0.0.0:9",
        "240.0.0.1:9",
        "192.0.2.9:0",
    ];
    for port in [7000, 7001] {
        for src in forged {
            tx.send_to_from(b"forged", sa(src), sa(&format!("192.0.2.10:{port}")))
                .unwrap();
        }
    }
    let mut buf = [0u8; 16];
    assert_eq!(
        host.recv_from(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    let mut seen = 0;
    while tool.recv_from(&mut buf).is_ok() {
        seen += 1;
    }
    assert_eq!(seen, forged.len());
    assert_eq!(relay.stats().rx_martian, forged.len() as u64);
    // The same datagram from an ordinary source reaches both.
    for port in [7000, 7001] {
        tx.send_to(b"ok", sa(&format!("192.0.2.10:{port}")))
            .unwrap();
    }
    assert_eq!(host.recv_from(&mut buf).unwrap(), (2, sa("192.0.2.1:1")));
    assert_eq!(tool.recv_from(&mut buf).unwrap(), (2, sa("192.0.2.1:1")));
}
