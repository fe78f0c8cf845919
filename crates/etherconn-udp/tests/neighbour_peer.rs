//! The neighbour responder and resolver against the kernel, over a veth pair between two
//! network namespaces: namespace `a` has 10.67.0.1/24 and 2001:db8:67::1/64 and no static
//! neighbour entry; namespace `b` has only the relay. The kernel resolves our endpoints with
//! ARP and neighbour solicitations and our resolver resolves the kernel, both families;
//! the kernel pings our endpoints.
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::wire::MacAddr;
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::PacketRelay;
use etherconn_testbed::{Side, Testbed};
use etherconn_udp::{
    NeighbourConfig, Neighbours, RUdpConfig, RUdpConn, SharedConfig, SharedEtherConn, SharingConfig,
};

const WAIT: Duration = Duration::from_secs(5);
const A4: &str = "10.67.0.1";
const A6: &str = "2001:db8:67::1";

fn bed(prefix: &str) -> (Testbed, Arc<dyn PacketRelay>) {
    let tb = Testbed::new(prefix).unwrap();
    tb.add_addr(Side::A, &format!("{A4}/24")).unwrap();
    tb.add_addr(Side::A, &format!("{A6}/64")).unwrap();
    let relay: Arc<dyn PacketRelay> =
        tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
            .unwrap()
            .unwrap();
    (tb, relay)
}

fn kernel_socket(tb: &Testbed, ip: &str) -> UdpSocket {
    let addr = SocketAddr::new(ip.parse().unwrap(), 0);
    let s = tb.a.run_in(move || UdpSocket::bind(addr)).unwrap().unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// `ip neigh show` of namespace `a`: the MAC the kernel holds for `ip`, if any.
fn kernel_neighbour(tb: &Testbed, ip: IpAddr) -> Option<MacAddr> {
    let out =
        tb.a.ip(&["neigh", "show", &ip.to_string(), "dev", &tb.a_if])
            .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "lladdr" {
            return words.next().and_then(|m| m.parse().ok());
        }
    }
    None
}

fn ping(tb: &Testbed, ip: IpAddr) -> bool {
    let ip = ip.to_string();
    let out = tb.a.exec(&["ping", "-c", "1", "-W", "2", &ip]).unwrap();
    out.status.success()
}

fn finish(tb: Testbed, relay: Arc<dyn PacketRelay>, prefix: &str) {
    let s = relay.stats();
    assert_eq!(s.rx_invalid, 0, "{s}");
    relay.stop();
    drop(relay);
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn kernel_and_endpoints_resolve_each_other() {
    if !etherconn_testbed::require_root("kernel_and_endpoints_resolve_each_other") {
        return;
    }
    let prefix = "ecnd-k-";
    let (tb, relay) = bed(prefix);
    let a_mac = MacAddr(tb.a_mac);
    let nd = Neighbours::new(relay.clone(), NeighbourConfig::default()).unwrap();
    let cfg = RUdpConfig::default().neighbours(&nd);
    let mut conns = Vec::new();
    for n in 1..=4u8 {
        let mac = MacAddr([0x02, 0xec, 0x67, 0, 0, n]);
        for ip in [
            format!("10.67.0.{}", 100 + n),
            format!("2001:db8:67::{}", 100 + n),
        ] {
            let local = SocketAddr::new(ip.parse().unwrap(), 40000 + u16::from(n));
            let c = RUdpConn::new(relay.clone(), mac, &[], local, cfg.clone()).unwrap();
            c.set_read_timeout(Some(WAIT)).unwrap();
            conns.push(c);
        }
    }
    let mut buf = [0u8; 256];

    // The kernel first: it must resolve each endpoint (our responder answers), and our
    // endpoints answer through their resolver (which learns the kernel's MAC).
    for c in &conns {
        let k = kernel_socket(
            &tb,
            if c.local_addr().unwrap().is_ipv4() {
                A4
            } else {
                A6
            },
        );
        let me = c.local_addr().unwrap();
        k.send_to(format!("to {me}").as_bytes(), me).unwrap();
        let (n, from) = c
            .recv_from(&mut buf)
            .expect("the kernel reaches the endpoint");
        assert_eq!(&buf[..n], format!("to {me}").as_bytes());
        assert_eq!(from, k.local_addr().unwrap());
        c.send_to(format!("back from {me}").as_bytes(), from)
            .unwrap();
        let (n, by) = k.recv_from(&mut buf).expect("the endpoint answers");
        assert_eq!((&buf[..n], by), (format!("back from {me}").as_bytes(), me));
        assert_eq!(kernel_neighbour(&tb, me.ip()), Some(c.local_mac()), "{me}");
    }
    for ip in [A4, A6] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(
            nd.lookup(&[], ip),
            Some(a_mac),
            "the resolver learned the kernel's MAC"
        );
    }
    // Pings, both families.
    for c in &conns {
        assert!(
            ping(&tb, c.local_addr().unwrap().ip()),
            "{:?}",
            c.local_addr()
        );
    }
    let s = nd.stats();
    println!("{s}");
    assert!(s.arp_replies >= 4 && s.na_replies >= 4, "{s}");
    assert!(s.echo_replies >= 8, "{s}");
    assert_eq!(s.failed, 0, "{s}");
    drop(conns);
    drop(nd);
    finish(tb, relay, prefix);
}

#[test]
fn endpoints_resolve_the_kernel_first() {
    if !etherconn_testbed::require_root("endpoints_resolve_the_kernel_first") {
        return;
    }
    let prefix = "ecnd-r-";
    let (tb, relay) = bed(prefix);
    let a_mac = MacAddr(tb.a_mac);
    let nd = Neighbours::new(relay.clone(), NeighbourConfig::default()).unwrap();
    let shared = SharedEtherConn::new(
        relay.clone(),
        MacAddr([0x02, 0xec, 0x67, 0, 1, 0]),
        &[],
        SharedConfig::default().neighbours(&nd),
    )
    .unwrap();
    let mut buf = [0u8; 256];
    for (ours, kernel) in [("10.67.0.200:5000", A4), ("[2001:db8:67::200]:5000", A6)] {
        let c = shared
            .bind(ours.parse().unwrap(), SharingConfig::default())
            .unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        let k = kernel_socket(&tb, kernel);
        // Ours first: the resolver asks the kernel (which learns our MAC from the request).
        c.send_to(b"hi", k.local_addr().unwrap()).unwrap();
        let (n, from) = k.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"hi"[..], c.local_addr().unwrap()));
        k.send_to(b"ho", from).unwrap();
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"ho"[..], k.local_addr().unwrap()));
        assert_eq!(nd.lookup(&[], kernel.parse().unwrap()), Some(a_mac));
    }
    let s = nd.stats();
    println!("{s}");
    assert_eq!((s.requests, s.learned, s.failed), (2, 2, 0), "{s}");
    drop((shared, nd));
    finish(tb, relay, prefix);
}
