//! The neighbour responder and resolver on a loopback relay: conns reach each other by IP
//! alone (ARP for IPv4, neighbour discovery for IPv6), many resolvers share one request, a
//! silent address fails after the configured requests, and VLAN stacks are kept apart.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use etherconn_core::wire::{arp, icmpv6, EtherType, MacAddr, VlanTag};
use etherconn_relay::{EtherConn, EtherConnConfig, LoopbackRelay, PacketRelay};
use etherconn_udp::{
    NeighbourConfig, Neighbours, RUdpConfig, RUdpConn, SharedConfig, SharedEtherConn,
    SharingConfig, UdpError,
};

const WAIT: Duration = Duration::from_secs(2);

fn mac(n: u16) -> MacAddr {
    let [a, b] = n.to_be_bytes();
    MacAddr([0x02, 0xee, 0, 0, a, b])
}

fn conn(
    relay: &Arc<dyn PacketRelay>,
    nd: &Neighbours,
    n: u16,
    addr: &str,
    vlans: &[VlanTag],
) -> RUdpConn {
    let cfg = RUdpConfig::default().neighbours(nd);
    let c = RUdpConn::new(relay.clone(), mac(n), vlans, addr.parse().unwrap(), cfg).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    assert!(c.answered_by_neighbours());
    c
}

fn exchange(a: &RUdpConn, b: &RUdpConn) {
    let mut buf = [0u8; 64];
    a.send_to(b"hello", b.local_addr().unwrap()).unwrap();
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"hello"[..], a.local_addr().unwrap()));
    b.send_to(b"back", from).unwrap();
    let (n, from) = a.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"back"[..], b.local_addr().unwrap()));
}

#[test]
fn conns_reach_each_other_by_ip_alone() {
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
    let nd = Neighbours::new(relay.clone(), NeighbourConfig::default()).unwrap();
    for vlans in [vec![], vec![VlanTag::dot1q(100).unwrap()]] {
        let a4 = conn(&relay, &nd, 1, "192.0.2.1:1000", &vlans);
        let b4 = conn(&relay, &nd, 2, "192.0.2.2:2000", &vlans);
        let a6 = conn(&relay, &nd, 3, "[2001:db8::1]:1000", &vlans);
        let b6 = conn(&relay, &nd, 4, "[2001:db8::2]:2000", &vlans);
        exchange(&a4, &b4);
        exchange(&a6, &b6);
        assert_eq!(
            nd.lookup(&vlans, "192.0.2.2".parse().unwrap()),
            Some(mac(2))
        );
        assert_eq!(
            nd.lookup(&vlans, "192.0.2.1".parse().unwrap()),
            Some(mac(1))
        );
        assert_eq!(
            nd.lookup(&vlans, "2001:db8::2".parse().unwrap()),
            Some(mac(4))
        );
    }
    let s = nd.stats();
    println!("{s}");
    assert_eq!(s.addresses, 0, "the conns are gone");
    assert!(s.arp_replies >= 2 && s.na_replies >= 2, "{s}");
    assert_eq!(s.failed, 0, "{s}");
    assert_eq!(relay.stats().rx_queue_full, 0);
}

#[test]
fn shared_endpoints_answer_for_every_bound_address() {
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
    let nd = Neighbours::new(relay.clone(), NeighbourConfig::default()).unwrap();
    let cfg = SharedConfig::default().neighbours(&nd);
    let x = SharedEtherConn::new(relay.clone(), mac(10), &[], cfg.clone()).unwrap();
    let y = SharedEtherConn::new(relay.clone(), mac(11), &[], cfg).unwrap();
    let xs: Vec<_> = (0..3)
        .map(|i| {
            x.bind(
                format!("198.51.100.{}:53", 1 + i).parse().unwrap(),
                SharingConfig::default(),
            )
            .unwrap()
        })
        .collect();
    let y1 = y
        .bind("198.51.100.9:7".parse().unwrap(), SharingConfig::default())
        .unwrap();
    let y2 = y
        .bind("0.0.0.0:8".parse().unwrap(), SharingConfig::default())
        .unwrap();
    assert!(xs.iter().all(|c| c.answered_by_neighbours()));
    assert!(!y2.answered_by_neighbours(), "a wildcard is not an address");
    let mut buf = [0u8; 64];
    for c in &xs {
        c.set_read_timeout(Some(WAIT)).unwrap();
        y1.send_to(b"q", c.local_addr().unwrap()).unwrap();
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"q"[..], y1.local_addr().unwrap()));
    }
    assert_eq!(nd.stats().addresses, 4);
    // The same address at another MAC on the same VLANs is refused.
    let z = SharedEtherConn::new(
        relay.clone(),
        mac(12),
        &[],
        SharedConfig::default().neighbours(&nd),
    )
    .unwrap();
    let e = z
        .bind("198.51.100.1:54".parse().unwrap(), SharingConfig::default())
        .unwrap_err();
    assert!(
        matches!(e, UdpError::NeighbourInUse { mac: m, .. } if m == mac(10)),
        "{e}"
    );
}

#[test]
fn many_resolvers_share_one_request() {
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
    let nd = Neighbours::new(relay.clone(), NeighbourConfig::default()).unwrap();
    let cfg = RUdpConfig::default().neighbours(&nd).queue_depth(256);
    let target = RUdpConn::new(
        relay.clone(),
        mac(1000),
        &[],
        "10.9.0.1:9".parse().unwrap(),
        cfg,
    )
    .unwrap();
    target.set_read_timeout(Some(WAIT)).unwrap();
    const N: u16 = 64;
    let conns: Vec<RUdpConn> = (0..N)
        .map(|i| {
            conn(
                &relay,
                &nd,
                i + 1,
                &format!("10.9.1.{}:{}", i + 1, 5000 + i),
                &[],
            )
        })
        .collect();
    let barrier = Barrier::new(usize::from(N));
    let dst = target.local_addr().unwrap();
    std::thread::scope(|s| {
        for c in &conns {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                c.send_to(b"x", dst).unwrap();
            });
        }
    });
    let mut buf = [0u8; 16];
    for _ in 0..N {
        target.recv_from(&mut buf).unwrap();
    }
    let s = nd.stats();
    // One ARP request for the target, whichever sender's it was, and one reply.
    assert_eq!(s.requests, 1, "{s}");
    assert_eq!(s.arp_replies, 1, "{s}");
}

#[test]
fn a_silent_address_fails_after_the_configured_requests() {
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
    let cfg = NeighbourConfig::default()
        .retry_interval(Duration::from_millis(50))
        .max_requests(3)
        .resolve_wait(Duration::from_secs(2));
    let nd = Neighbours::new(relay.clone(), cfg).unwrap();
    let a = conn(&relay, &nd, 1, "192.0.2.1:1000", &[]);
    let t0 = std::time::Instant::now();
    let e = a
        .send_to(b"x", "192.0.2.77:9".parse().unwrap())
        .unwrap_err();
    let took = t0.elapsed();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrNotAvailable);
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let s = nd.stats();
    assert_eq!((s.requests, s.failed, s.cached), (3, 1, 0), "{s}");
    assert!(!nd.is_resolving(&[], "192.0.2.77".parse().unwrap()));
    // Without waiting: fails at once and resolves in the background.
    let quick = Neighbours::new(
        relay.clone(),
        NeighbourConfig::default().resolve_wait(Duration::ZERO),
    )
    .unwrap();
    let r = quick
        .resolver(mac(1), &[], "192.0.2.1".parse().unwrap())
        .unwrap();
    assert_eq!(r("192.0.2.78".parse().unwrap()), None);
    assert!(quick.is_resolving(&[], "192.0.2.78".parse().unwrap()));
}

#[test]
fn vlan_stacks_are_apart() {
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
    let cfg = NeighbourConfig::default()
        .retry_interval(Duration::from_millis(50))
        .resolve_wait(Duration::from_millis(500));
    let nd = Neighbours::new(relay.clone(), cfg).unwrap();
    let v100 = [VlanTag::dot1q(100).unwrap()];
    let v200 = [VlanTag::dot1q(200).unwrap()];
    let qinq = [VlanTag::dot1q(100).unwrap(), VlanTag::dot1q(200).unwrap()];
    let _a = conn(&relay, &nd, 1, "192.0.2.1:1000", &v100);
    let _a200 = conn(&relay, &nd, 11, "192.0.2.1:1000", &v200);
    let _a6 = conn(&relay, &nd, 3, "[2001:db8::1]:1000", &qinq);
    let _a6v100 = conn(&relay, &nd, 13, "[2001:db8::1]:1000", &v100);
    let _b = conn(&relay, &nd, 2, "192.0.2.2:2000", &v100);
    let _b6 = conn(&relay, &nd, 4, "[2001:db8::2]:2000", &qinq);
    let ip2: IpAddr = "192.0.2.2".parse().unwrap();
    let ip6: IpAddr = "2001:db8::2".parse().unwrap();
    assert_eq!(
        nd.resolve(mac(11), &v200, "192.0.2.1".parse().unwrap(), ip2),
        None
    );
    assert_eq!(
        nd.resolve(mac(1), &v100, "192.0.2.1".parse().unwrap(), ip2),
        Some(mac(2))
    );
    assert_eq!(
        nd.resolve(mac(13), &v100, "2001:db8::1".parse().unwrap(), ip6),
        None
    );
    assert_eq!(
        nd.resolve(mac(3), &qinq, "2001:db8::1".parse().unwrap(), ip6),
        Some(mac(4))
    );
    // The same address lives at another MAC on another VLAN: that one is found there.
    let _other = conn(&relay, &nd, 5, "192.0.2.2:2000", &v200);
    assert_eq!(
        nd.resolve(mac(11), &v200, "192.0.2.1".parse().unwrap(), ip2),
        Some(mac(5))
    );
    assert_eq!(nd.lookup(&v100, ip2), Some(mac(2)));
}

/// A peer that sees the broadcast ARP and the IPv6 multicast of the untagged stack.
fn watcher(relay: &Arc<dyn PacketRelay>) -> EtherConn {
    let cfg = EtherConnConfig::default()
        .ethertypes(&[EtherType::ARP, EtherType::IPV6])
        .recv_multicast(true);
    let w = EtherConn::new(relay.clone(), mac(999), &[], cfg).unwrap();
    w.set_read_timeout(Some(WAIT)).unwrap();
    w
}

#[test]
fn announcements_when_an_address_is_added() {
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
    let w = watcher(&relay);
    let nd = Neighbours::new(relay.clone(), NeighbourConfig::default().announce(true)).unwrap();
    let _a4 = conn(&relay, &nd, 1, "192.0.2.1:1000", &[]);
    let rx = w.recv_frame().unwrap();
    assert_eq!(rx.info.dst_mac(), MacAddr::BROADCAST);
    let garp = arp::Repr::parse(&arp::Packet::new_checked(rx.payload()).unwrap()).unwrap();
    assert_eq!(garp.operation, arp::Operation::Request);
    assert_eq!(garp.source_hardware_addr, mac(1));
    let ip: std::net::Ipv4Addr = "192.0.2.1".parse().unwrap();
    assert_eq!(
        (garp.source_protocol_addr, garp.target_protocol_addr),
        (ip, ip)
    );

    let _a6 = conn(&relay, &nd, 2, "[2001:db8::1]:1000", &[]);
    let rx = w.recv_frame().unwrap();
    assert_eq!(rx.info.dst_mac().to_string(), "33:33:00:00:00:01");
    let ip6 = rx.info.ip().unwrap();
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip6.src, ip6.dst) else {
        panic!("not IPv6")
    };
    assert_eq!((ip6.ttl, dst.to_string()), (255, "ff02::1".to_owned()));
    let bytes = &rx.frame()[ip6.payload.range()];
    let p = icmpv6::Packet::new_checked(bytes).unwrap();
    let na = icmpv6::Repr::parse(&p, src, dst).unwrap();
    let icmpv6::Repr::NeighborAdvert {
        flags,
        target,
        target_lladdr,
    } = na
    else {
        panic!("not an advertisement: {na}")
    };
    assert!(flags.override_ && !flags.solicited && !flags.router);
    assert_eq!((target, target_lladdr), (src, Some(mac(2))));
    assert_eq!(nd.stats().announcements, 2);
}

#[test]
fn a_stale_entry_is_confirmed_by_unicast_and_forgotten_when_silent() {
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
    let w = watcher(&relay);
    let cfg = NeighbourConfig::default()
        .lifetime(Duration::from_millis(100))
        .retry_interval(Duration::from_millis(30))
        .max_requests(2);
    let nd = Neighbours::new(relay.clone(), cfg).unwrap();
    let a = conn(&relay, &nd, 1, "192.0.2.1:1000", &[]);
    let b = conn(&relay, &nd, 2, "192.0.2.2:2000", &[]);
    exchange(&a, &b);
    let broadcasts = || {
        let mut n = 0;
        while w
            .recv_frame_timeout(Some(Duration::from_millis(50)))
            .is_ok()
        {
            n += 1;
        }
        n
    };
    // a asked for b, b (answering) learned a from a's request: one broadcast request.
    assert_eq!(broadcasts(), 1);
    let before = nd.stats();

    std::thread::sleep(Duration::from_millis(200));
    let b_ip: IpAddr = "192.0.2.2".parse().unwrap();
    // Stale: still used (no wait), and confirmed by a unicast request that b answers.
    let t0 = std::time::Instant::now();
    a.send_to(b"again", b.local_addr().unwrap()).unwrap();
    assert!(t0.elapsed() < Duration::from_millis(50));
    let mut buf = [0u8; 16];
    b.recv_from(&mut buf).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let after = nd.stats();
    assert_eq!(after.requests, before.requests + 1, "{after}");
    assert_eq!(after.arp_replies, before.arp_replies + 1, "{after}");
    assert_eq!(broadcasts(), 0, "the confirmation was unicast");
    assert_eq!(nd.lookup(&[], b_ip), Some(mac(2)));

    // b goes: the next confirmation is unanswered, and the entry forgotten.
    drop(b);
    std::thread::sleep(Duration::from_millis(200));
    a.send_to(b"lost", SocketAddr::new(b_ip, 2000)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let s = nd.stats();
    assert_eq!(s.failed, 1, "{s}");
    assert_eq!(nd.lookup(&[], b_ip), None);
}

#[test]
fn the_sender_of_a_request_is_cached_up_to_the_limit() {
    for (max_unasked, requests) in [(usize::MAX, 1), (0, 2)] {
        let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
        let cfg = NeighbourConfig::default().max_unasked(max_unasked);
        let nd = Neighbours::new(relay.clone(), cfg).unwrap();
        let a = conn(&relay, &nd, 1, "192.0.2.1:1000", &[]);
        let b = conn(&relay, &nd, 2, "192.0.2.2:2000", &[]);
        // a asks for b; b answers, and with room caches a: its echo needs no request.
        exchange(&a, &b);
        let s = nd.stats();
        assert_eq!(s.requests, requests, "max_unasked {max_unasked}: {s}");
    }
}

#[test]
fn conns_keep_the_responder_running() {
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
    let (a, b) = {
        let nd = Neighbours::new(relay.clone(), NeighbourConfig::default()).unwrap();
        let a = conn(&relay, &nd, 1, "192.0.2.1:1000", &[]);
        let b = conn(&relay, &nd, 2, "[2001:db8::2]:2000", &[]);
        (a, b)
        // The handle and the configs go here.
    };
    let c = conn(
        &relay,
        &Neighbours::new(relay.clone(), NeighbourConfig::default()).unwrap(),
        3,
        "192.0.2.3:3000",
        &[],
    );
    let d = RUdpConn::new(
        relay.clone(),
        mac(4),
        &[],
        "[2001:db8::4]:4000".parse().unwrap(),
        RUdpConfig::default()
            .neighbours(&Neighbours::new(relay.clone(), Default::default()).unwrap()),
    )
    .unwrap();
    d.set_read_timeout(Some(WAIT)).unwrap();
    // a and c, b and d: each pair on two responders whose handles are gone; each still answers
    // for its conns, so each pair resolves the other.
    exchange(&c, &a);
    exchange(&d, &b);
}
