//! Multicast on an `RUdpConn` against the kernel's UDP stack, over a veth pair between two
//! network namespaces. A kernel socket in namespace `a` (multicast routed out of the veth)
//! sends a datagram to group 239.1.2.3 port 7000: the conn with `recv_multicast` on and port
//! 7000 receives it, with the group as the address it was sent to and the group's MAC; one
//! with `recv_multicast` on and another port gets the frame and filters it; one with
//! `recv_multicast` off never sees it. The other way, the joined conn sends to the group and a
//! kernel socket that joined the group receives it. The second test does the same over IPv6,
//! to the link-scope group ff12::6363.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::wire::MacAddr;
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::PacketRelay;
use etherconn_testbed::{Side, Testbed};
use etherconn_udp::{multicast_mac, RUdpConfig, RUdpConn, RecvMeta};

const WAIT: Duration = Duration::from_secs(5);
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);

#[test]
fn rudp_conn_with_recv_multicast_gets_a_kernel_peers_group_datagram() {
    if !etherconn_testbed::require_root(
        "rudp_conn_with_recv_multicast_gets_a_kernel_peers_group_datagram",
    ) {
        return;
    }
    let prefix = "ecmcpeer-";
    let tb = Testbed::new(prefix).unwrap();
    for side in [Side::A, Side::B] {
        let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
        tb.set_sysctl(side, &key, "1").unwrap();
    }
    let joined_mac = MacAddr([0x02, 0xec, 0x63, 0, 0, 1]);
    let other_port_mac = MacAddr([0x02, 0xec, 0x63, 0, 0, 2]);
    let plain_mac = MacAddr([0x02, 0xec, 0x63, 0, 0, 3]);
    tb.add_addr(Side::A, "10.63.0.1/24").unwrap();
    tb.a.ip(&["route", "add", "224.0.0.0/4", "dev", &tb.a_if])
        .unwrap();
    tb.add_neigh(Side::A, "10.63.0.3".parse::<IpAddr>().unwrap(), plain_mac.0)
        .unwrap();
    let relay =
        tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
            .unwrap()
            .unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();

    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    let kernel_mac = MacAddr(tb.mac(Side::A));
    let resolver = move |_| Some(kernel_mac);
    let rudp = |m: MacAddr, local: &str, multicast: bool| {
        let cfg = RUdpConfig::default()
            .recv_multicast(multicast)
            .resolver(resolver);
        let c = RUdpConn::new(dyn_relay.clone(), m, &[], sa(local), cfg).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c
    };
    let joined = rudp(joined_mac, "10.63.0.2:7000", true);
    let other_port = rudp(other_port_mac, "10.63.0.4:7001", true);
    let plain = rudp(plain_mac, "10.63.0.3:7000", false);

    let kernel =
        tb.a.run_in(|| UdpSocket::bind("10.63.0.1:4000"))
            .unwrap()
            .unwrap();
    kernel.set_read_timeout(Some(WAIT)).unwrap();
    let kernel_addr = kernel.local_addr().unwrap();
    let before = relay.stats();
    let group = SocketAddr::from((GROUP, 7000));
    kernel.send_to(b"to the group", group).unwrap();
    // Then a unicast datagram to the plain conn, on the same (one) receive thread: once it is
    // in, the group datagram has been dispatched.
    kernel.send_to(b"to plain", sa("10.63.0.3:7000")).unwrap();

    let mut buf = [0u8; 64];
    let mut meta = [RecvMeta::default()];
    assert_eq!(
        joined.recv_batch(&mut [&mut buf[..]], &mut meta).unwrap(),
        1
    );
    let m = meta[0];
    assert_eq!(&buf[..m.len], b"to the group");
    assert_eq!(m.local, group);
    assert_eq!(m.remote, kernel_addr);
    assert_eq!(Some(m.dst_mac), multicast_mac(GROUP.into()));
    assert_eq!(m.dst_mac, MacAddr([0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]));
    assert_eq!(m.src_mac, kernel_mac);
    assert_eq!(m.ttl, 1, "the kernel's default multicast TTL");

    let (n, from) = plain.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"to plain"[..], kernel_addr));
    assert_eq!(plain.rx_filtered(), 0, "the plain conn never saw the group");
    for c in [&joined, &plain] {
        assert_eq!(c.ether_conn().queued(), 0, "{c:?}");
    }
    other_port
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let e = other_port.recv_from(&mut buf).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert_eq!(
        other_port.rx_filtered(),
        1,
        "it got the frame, for another port"
    );
    let s = relay.stats();
    assert_eq!(
        s.rx_multicast_delivered - before.rx_multicast_delivered,
        2,
        "{s}"
    );
    assert_eq!(s.rx_delivered - before.rx_delivered, 1, "{s}");

    // The other way: the kernel joins the group and takes the conn's datagram to it.
    let listener =
        tb.a.run_in(|| {
            let l = UdpSocket::bind("0.0.0.0:7000")?;
            l.join_multicast_v4(&GROUP, &Ipv4Addr::new(10, 63, 0, 1))?;
            Ok::<_, io::Error>(l)
        })
        .unwrap()
        .unwrap();
    listener.set_read_timeout(Some(WAIT)).unwrap();
    joined.send_to(b"from joined", group).unwrap();
    let (n, from) = listener.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], from),
        (&b"from joined"[..], sa("10.63.0.2:7000"))
    );

    drop((kernel, listener));
    drop((joined, other_port, plain, dyn_relay));
    relay.stop();
    drop(relay);
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

/// The same over IPv6, to a link-scope group: the kernel in namespace `a` runs IPv6 (and so
/// sends its own MLD and neighbour discovery, ICMPv6 that the receive-multicast conns get and
/// filter), so here only the UDP datagrams are counted.
#[test]
fn rudp_conn_with_recv_multicast_gets_a_kernel_peers_ipv6_group_datagram() {
    if !etherconn_testbed::require_root(
        "rudp_conn_with_recv_multicast_gets_a_kernel_peers_ipv6_group_datagram",
    ) {
        return;
    }
    let prefix = "ecmc6peer-";
    let tb = Testbed::new(prefix).unwrap();
    let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.b_if);
    tb.set_sysctl(Side::B, &key, "1").unwrap();
    let group6: Ipv6Addr = "ff12::6363".parse().unwrap();
    let joined_mac = MacAddr([0x02, 0xec, 0x63, 0, 1, 1]);
    let other_port_mac = MacAddr([0x02, 0xec, 0x63, 0, 1, 2]);
    let plain_mac = MacAddr([0x02, 0xec, 0x63, 0, 1, 3]);
    tb.a.ip(&["addr", "add", "2001:db8:63::1/64", "dev", &tb.a_if, "nodad"])
        .unwrap();
    tb.add_neigh(
        Side::A,
        "2001:db8:63::3".parse::<IpAddr>().unwrap(),
        plain_mac.0,
    )
    .unwrap();
    let relay =
        tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
            .unwrap()
            .unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();

    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    let kernel_mac = MacAddr(tb.mac(Side::A));
    let resolver = move |_| Some(kernel_mac);
    let rudp = |m: MacAddr, local: &str, multicast: bool| {
        let cfg = RUdpConfig::default()
            .recv_multicast(multicast)
            .resolver(resolver);
        let c = RUdpConn::new(dyn_relay.clone(), m, &[], sa(local), cfg).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c
    };
    let joined = rudp(joined_mac, "[2001:db8:63::2]:7000", true);
    let other_port = rudp(other_port_mac, "[2001:db8:63::4]:7001", true);
    let plain = rudp(plain_mac, "[2001:db8:63::3]:7000", false);

    let kernel =
        tb.a.run_in(|| UdpSocket::bind("[2001:db8:63::1]:4000"))
            .unwrap()
            .unwrap();
    kernel.set_read_timeout(Some(WAIT)).unwrap();
    let kernel_addr = kernel.local_addr().unwrap();
    let group = SocketAddr::from((group6, 7000));
    kernel.send_to(b"to the group", group).unwrap();
    kernel
        .send_to(b"to plain", sa("[2001:db8:63::3]:7000"))
        .unwrap();

    let mut buf = [0u8; 64];
    let mut meta = [RecvMeta::default()];
    assert_eq!(
        joined.recv_batch(&mut [&mut buf[..]], &mut meta).unwrap(),
        1
    );
    let m = meta[0];
    assert_eq!(&buf[..m.len], b"to the group");
    assert_eq!(m.local, group);
    assert_eq!(m.remote, kernel_addr);
    assert_eq!(m.dst_mac, MacAddr([0x33, 0x33, 0, 0, 0x63, 0x63]));
    assert_eq!(Some(m.dst_mac), multicast_mac(group6.into()));
    assert_eq!(m.src_mac, kernel_mac);
    assert_eq!(m.ttl, 1, "the kernel's default multicast hop limit");

    let (n, from) = plain.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"to plain"[..], kernel_addr));
    assert_eq!(plain.rx_filtered(), 0, "the plain conn never saw the group");
    assert_eq!(plain.ether_conn().queued(), 0);
    other_port
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let e = other_port.recv_from(&mut buf).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    assert!(
        other_port.rx_filtered() >= 1,
        "it got the frame, for another port"
    );

    let listener =
        tb.a.run_in(|| {
            let l = UdpSocket::bind("[::]:7000")?;
            l.join_multicast_v6(&group6, 0)?;
            Ok::<_, io::Error>(l)
        })
        .unwrap()
        .unwrap();
    listener.set_read_timeout(Some(WAIT)).unwrap();
    joined.send_to(b"from joined", group).unwrap();
    let (n, from) = listener.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], from),
        (&b"from joined"[..], sa("[2001:db8:63::2]:7000"))
    );

    drop((kernel, listener));
    drop((joined, other_port, plain, dyn_relay));
    relay.stop();
    drop(relay);
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
