//! The relay's memory budget seen from the UDP conns, on an AF_PACKET relay over a veth pair
//! with the kernel's UDP stack as the peer: a relay whose budget holds a few conns refuses the
//! next (`RUdpConn` through its `EtherConn`, `SharingRUdpConn` through its own queue), and the
//! conns it has keep exchanging datagrams with the kernel; closing one makes room.
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::wire::MacAddr;
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::{
    ConnCost, DispatcherConfig, MemoryBudget, MemoryLimit, PacketRelay, RelayError,
};
use etherconn_testbed::{Side, Testbed};
use etherconn_udp::{
    RUdpConfig, RUdpConn, SharedConfig, SharedEtherConn, SharingConfig, SharingRUdpConn,
    DEFAULT_RUDP_QUEUE_DEPTH, DEFAULT_SHARED_QUEUE_DEPTH, DEFAULT_SHARING_QUEUE_DEPTH,
};

const WAIT: Duration = Duration::from_secs(5);
const PEER: &str = "10.67.0.1";

/// A testbed whose namespace `b` runs an AF_PACKET relay with a budget of exactly `cost`.
fn bed(prefix: &str, cost: ConnCost) -> (Testbed, Arc<RawSocketRelay>) {
    let tb = Testbed::new(prefix).unwrap();
    tb.add_addr(Side::A, &format!("{PEER}/24")).unwrap();
    let base = DispatcherConfig::default();
    let limit = base.budget().bytes(cost);
    let cfg =
        RawSocketRelayConfig::default().dispatcher(base.memory_budget(MemoryLimit::Bytes(limit)));
    let relay =
        tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, cfg))
            .unwrap()
            .unwrap();
    (tb, relay)
}

fn kernel_socket(tb: &Testbed) -> UdpSocket {
    let addr = SocketAddr::new(PEER.parse().unwrap(), 0);
    let s = tb.a.run_in(move || UdpSocket::bind(addr)).unwrap().unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// The kernel sends to `local` (reached through `recv`), which echoes from `send`.
fn ping(
    kernel: &UdpSocket,
    local: SocketAddr,
    recv: impl FnOnce(&mut [u8]) -> io::Result<(usize, SocketAddr)>,
    send: impl FnOnce(&[u8], SocketAddr) -> io::Result<usize>,
) {
    let msg = format!("ping {local}");
    kernel.send_to(msg.as_bytes(), local).unwrap();
    let mut buf = [0u8; 256];
    let (n, from) = recv(&mut buf).expect("the kernel's datagram arrives");
    assert_eq!(
        (&buf[..n], from),
        (msg.as_bytes(), kernel.local_addr().unwrap())
    );
    send(format!("echo {local}").as_bytes(), from).unwrap();
    let (n, from) = kernel.recv_from(&mut buf).expect("the echo arrives");
    assert_eq!(
        (&buf[..n], from),
        (format!("echo {local}").as_bytes(), local)
    );
}

fn assert_over_budget(e: &RelayError) {
    assert!(matches!(e, RelayError::OverBudget { .. }), "{e:?}");
    assert!(e.to_string().contains("memory budget exceeded"), "{e}");
}

#[test]
fn rudp_conns_past_the_budget_are_refused_and_the_others_keep_working() {
    if !etherconn_testbed::require_root("rudp_conns_past_the_budget_are_refused") {
        return;
    }
    let per = MemoryBudget::conn_cost(DEFAULT_RUDP_QUEUE_DEPTH);
    let (tb, relay) = bed("ecbud-r-", per.times(2));
    let a_mac = MacAddr(tb.a_mac);
    let open = |n: u8| {
        let mac = MacAddr([0x02, 0xec, 0x67, 0, 0, n]);
        let ip: IpAddr = format!("10.67.0.{}", 100 + n).parse().unwrap();
        tb.add_neigh(Side::A, ip, mac.0).unwrap();
        let relay: Arc<dyn PacketRelay> = relay.clone();
        let c = RUdpConn::new(
            relay,
            mac,
            &[],
            SocketAddr::new(ip, 40000),
            RUdpConfig::default().resolver(move |_| Some(a_mac)),
        )?;
        c.set_read_timeout(Some(WAIT)).unwrap();
        Ok::<_, etherconn_udp::UdpError>(c)
    };
    let c1 = open(1).unwrap();
    let c2 = open(2).unwrap();
    match open(3) {
        Err(etherconn_udp::UdpError::Relay(e)) => assert_over_budget(&e),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let kernel = kernel_socket(&tb);
    for c in [&c1, &c2] {
        let local = c.local_addr().unwrap();
        ping(&kernel, local, |b| c.recv_from(b), |p, d| c.send_to(p, d));
    }
    drop(c1);
    let c3 = open(3).unwrap();
    let local = c3.local_addr().unwrap();
    ping(&kernel, local, |b| c3.recv_from(b), |p, d| c3.send_to(p, d));
    assert_eq!(relay.stats().rx_queue_full, 0);
    drop((c2, c3));
    relay.stop();
}

#[test]
fn sharing_conns_past_the_budget_are_refused_and_the_others_keep_working() {
    if !etherconn_testbed::require_root("sharing_conns_past_the_budget_are_refused") {
        return;
    }
    let shared_cost = MemoryBudget::conn_cost(DEFAULT_SHARED_QUEUE_DEPTH);
    let per = MemoryBudget::conn_cost(DEFAULT_SHARING_QUEUE_DEPTH);
    let (tb, relay) = bed("ecbud-s-", shared_cost.plus(per.times(3)));
    let a_mac = MacAddr(tb.a_mac);
    let mac = MacAddr([0x02, 0xec, 0x67, 0, 1, 0]);
    let ip: IpAddr = "10.67.0.200".parse().unwrap();
    tb.add_neigh(Side::A, ip, mac.0).unwrap();
    let shared = SharedEtherConn::new(
        relay.clone(),
        mac,
        &[],
        SharedConfig::default().resolver(move |_| Some(a_mac)),
    )
    .unwrap();
    let bind = |port: u16| {
        let c = shared.bind(SocketAddr::new(ip, port), SharingConfig::default())?;
        c.set_read_timeout(Some(WAIT)).unwrap();
        Ok::<_, etherconn_udp::UdpError>(c)
    };
    let mut conns: Vec<SharingRUdpConn> = (1..=3).map(|i| bind(41000 + i).unwrap()).collect();
    match bind(41004) {
        Err(etherconn_udp::UdpError::Relay(e)) => assert_over_budget(&e),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(shared.bound(), 3, "the refused conn left no key behind");
    let kernel = kernel_socket(&tb);
    for c in &conns {
        let local = c.local_addr().unwrap();
        ping(&kernel, local, |b| c.recv_from(b), |p, d| c.send_to(p, d));
    }
    conns.remove(0);
    let c4 = bind(41004).unwrap();
    let local = c4.local_addr().unwrap();
    ping(&kernel, local, |b| c4.recv_from(b), |p, d| c4.send_to(p, d));
    drop((conns, c4, shared));
    relay.stop();
}
