//! The `std::net::UdpSocket` calls beyond `send_to`/`recv_from` (connect, send, recv,
//! peer_addr, peek_from, the timeout kinds), moving a conn's address, and the default receiver
//! of a shared L2 endpoint, through the loopback relay.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use etherconn_core::L4RecvKey;
use etherconn_relay::PacketRelay;
use etherconn_udp::{
    NeighbourConfig, Neighbours, RUdpConfig, RUdpConn, RecvMeta, SharedConfig, SharedEtherConn,
    SharingConfig, UdpError,
};

const A: &str = "192.0.2.1:1000";
const B: &str = "192.0.2.2:2000";
const C: &str = "192.0.2.3:3000";

/// Conns at mac 1, 2, 3 on `A`, `B`, `C`, resolving each other.
fn three(relay: &Arc<dyn PacketRelay>) -> [RUdpConn; 3] {
    let t = Arc::new(table(&[
        ("192.0.2.1", mac(1)),
        ("192.0.2.2", mac(2)),
        ("192.0.2.3", mac(3)),
        ("192.0.2.9", mac(2)),
    ]));
    [(1, A), (2, B), (3, C)].map(|(m, addr)| {
        let t = t.clone();
        let cfg = RUdpConfig::default().resolver(move |ip| t(ip));
        let c = RUdpConn::new(relay.clone(), mac(m), &[], sa(addr), cfg).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c
    })
}

fn kind_and_message(e: io::Error) -> (io::ErrorKind, String) {
    (e.kind(), e.to_string())
}

#[test]
fn send_and_peer_addr_refused_before_connect() {
    let relay = relay();
    let [a, _, _] = three(&relay);
    let not_connected = (
        io::ErrorKind::NotConnected,
        "the UDP conn is not connected: call connect first, or use send_to".to_string(),
    );
    assert_eq!(kind_and_message(a.send(b"x").unwrap_err()), not_connected);
    let e = a.peer_addr().unwrap_err();
    assert!(matches!(udp_error(&e), UdpError::NotConnected));
    assert_eq!(kind_and_message(e), not_connected);
}

#[test]
fn connect_refusals() {
    let relay = relay();
    let [a, _, _] = three(&relay);
    assert_eq!(
        kind_and_message(a.connect("[2001:db8::1]:53").unwrap_err()),
        (
            io::ErrorKind::InvalidInput,
            "192.0.2.1:1000 cannot send to [2001:db8::1]:53: different IP families".into()
        )
    );
    let e = a.connect("192.0.2.2:0").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(matches!(udp_error(&e), UdpError::BadDestination { .. }));
    assert!(
        e.to_string().starts_with("cannot send to 192.0.2.2:0: "),
        "{e}"
    );
    let e = a.connect("0.0.0.0:53").unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot send to 0.0.0.0:53: the unspecified address names no host to send to"
    );
    // A refused connect leaves the conn unconnected.
    assert_eq!(
        a.peer_addr().unwrap_err().kind(),
        io::ErrorKind::NotConnected
    );
}

#[test]
fn connected_conn_sends_to_and_hears_only_its_peer() {
    let relay = relay();
    let [a, b, c] = three(&relay);
    a.connect(B).unwrap();
    assert_eq!(a.peer_addr().unwrap(), sa(B));
    assert_eq!(a.send(b"to b").unwrap(), 4);
    let mut buf = [0u8; 64];
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"to b"[..], sa(A)));
    // C's datagram is dropped by the connected conn, B's arrives.
    c.send_to(b"from c", sa(A)).unwrap();
    b.send_to(b"from b", sa(A)).unwrap();
    let n = a.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"from b");
    assert_eq!(a.rx_filtered(), 1, "C's datagram");
    // Connecting again changes the peer.
    a.connect(C).unwrap();
    c.send_to(b"c again", sa(A)).unwrap();
    let (n, from) = a.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"c again"[..], sa(C)));
    // recv on an unconnected conn takes any sender (as on Linux).
    a.send_to(b"any", sa(B)).unwrap();
    assert_eq!(b.recv(&mut buf).unwrap(), 3);
}

#[test]
fn peek_from_leaves_the_datagram_for_the_next_receive() {
    let relay = relay();
    let [a, b, c] = three(&relay);
    a.send_to(b"first", sa(B)).unwrap();
    c.send_to(b"second", sa(B)).unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        let (n, from) = b.peek_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"first"[..], sa(A)));
    }
    // A short buffer gets the start, and the datagram stays whole.
    let mut short = [0u8; 2];
    assert_eq!(b.peek(&mut short).unwrap(), 2);
    assert_eq!(&short, b"fi");
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"first"[..], sa(A)));
    // Peeked, then taken by recv_batch.
    assert_eq!(b.peek(&mut buf).unwrap(), 6);
    let mut bufs = [[0u8; 64]; 2];
    let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    let mut meta = [RecvMeta::default(); 2];
    assert_eq!(b.recv_batch(&mut refs, &mut meta).unwrap(), 1);
    assert_eq!((meta[0].len, meta[0].remote), (6, sa(C)));
    assert_eq!(&bufs[0][..6], b"second");
    // Nothing left: the peek waits out the read timeout like a receive.
    b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    assert_eq!(
        b.peek_from(&mut buf).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
}

/// The timeout kinds: `TimedOut` when a read timeout runs out, `WouldBlock` in non-blocking
/// mode (see the crate docs for why not std-on-Linux's `WouldBlock` for both).
#[test]
fn read_timeout_is_timed_out_and_nonblocking_is_would_block() {
    let relay = relay();
    let [a, _, _] = three(&relay);
    let mut buf = [0u8; 8];
    a.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let t = Instant::now();
    assert_eq!(
        a.recv_from(&mut buf).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    assert!(t.elapsed() >= Duration::from_millis(50));
    a.set_nonblocking(true).unwrap();
    assert_eq!(
        a.recv(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    let zero = a.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(zero.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn rudp_conn_moves_its_address() {
    let relay = relay();
    let [a, mut b, _] = three(&relay);
    let mut buf = [0u8; 64];
    b.set_local_addr(sa("192.0.2.9:2900")).unwrap();
    assert_eq!(b.local_addr().unwrap(), sa("192.0.2.9:2900"));
    a.send_to(b"old", sa(B)).unwrap();
    a.send_to(b"new", sa("192.0.2.9:2900")).unwrap();
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"new"[..], sa(A)));
    assert_eq!(b.rx_filtered(), 1, "the datagram to the old address");
    // It sends from the new address.
    b.send_to(b"back", sa(A)).unwrap();
    assert_eq!(a.recv_from(&mut buf).unwrap().1, sa("192.0.2.9:2900"));
    // Port 0 picks an ephemeral port.
    b.set_local_addr(sa("192.0.2.9:0")).unwrap();
    assert!(b.local_addr().unwrap().port() >= 49152);
    let e = b.set_local_addr(sa("[2001:db8::9]:1")).unwrap_err();
    assert!(matches!(e, UdpError::BadLocalAddr { .. }));
    let io = io::Error::from(e);
    assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
    assert!(
        io.to_string().starts_with(
            "cannot move the conn from 192.0.2.9:"
        ) && io.to_string().ends_with(
            " to [2001:db8::9]:1: the conn receives only its own IP version; make a new conn for the other"
        ),
        "{io}"
    );
}

#[test]
fn moving_an_address_moves_its_neighbour_registration() {
    let relay = relay();
    let nd = Neighbours::new(relay.clone(), NeighbourConfig::default()).unwrap();
    let cfg = RUdpConfig::default().neighbours(&nd);
    let mut a = RUdpConn::new(relay.clone(), mac(1), &[], sa(A), cfg.clone()).unwrap();
    let b = RUdpConn::new(relay.clone(), mac(2), &[], sa(B), cfg.clone()).unwrap();
    a.set_read_timeout(Some(WAIT)).unwrap();
    b.set_read_timeout(Some(WAIT)).unwrap();
    // Taken by b: refused, and a keeps its address and its registration.
    let e = a.set_local_addr(sa("192.0.2.2:1000")).unwrap_err();
    assert!(matches!(e, UdpError::NeighbourInUse { .. }), "{e}");
    assert_eq!(a.local_addr().unwrap(), sa(A));
    assert_eq!(nd.stats().addresses, 2);
    a.set_local_addr(sa("192.0.2.7:1000")).unwrap();
    assert_eq!(
        nd.stats().addresses,
        2,
        "the old address went when the new came"
    );
    // The old address is free for another MAC; the new one is not.
    let old = nd.add(mac(5), &[], ip("192.0.2.1")).unwrap();
    let e = nd.add(mac(5), &[], ip("192.0.2.7")).unwrap_err();
    assert!(matches!(e, UdpError::NeighbourInUse { .. }), "{e}");
    drop(old);
    // b reaches a's new address by IP alone: the responder answers ARP for it, and a's
    // resolver asks from it.
    b.send_to(b"hi", sa("192.0.2.7:1000")).unwrap();
    let mut buf = [0u8; 8];
    let (n, from) = a.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"hi"[..], sa(B)));
    a.send_to(b"yo", from).unwrap();
    assert_eq!(b.recv_from(&mut buf).unwrap().1, sa("192.0.2.7:1000"));
}

fn shared_pair(relay: &Arc<dyn PacketRelay>) -> (Arc<SharedEtherConn>, RUdpConn) {
    let t = Arc::new(table(&[
        ("192.0.2.2", mac(2)),
        ("192.0.2.10", mac(10)),
        ("192.0.2.11", mac(10)),
    ]));
    let t2 = t.clone();
    let cfg = SharedConfig::default().resolver(move |ip| t(ip));
    let shared = SharedEtherConn::new(relay.clone(), mac(10), &[], cfg).unwrap();
    let cfg = RUdpConfig::default().resolver(move |ip| t2(ip));
    let peer = RUdpConn::new(relay.clone(), mac(2), &[], sa(B), cfg).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    (shared, peer)
}

#[test]
fn default_receiver_gets_what_no_bound_conn_claims() {
    let relay = relay();
    let (shared, peer) = shared_pair(&relay);
    let bound = shared
        .bind(sa("192.0.2.10:53"), SharingConfig::default())
        .unwrap();
    bound.set_read_timeout(Some(WAIT)).unwrap();
    // No default receiver yet: a miss.
    peer.send_to(b"lost", sa("192.0.2.10:54")).unwrap();
    let deadline = Instant::now() + WAIT;
    while relay.stats().rx_l4_miss == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(relay.stats().rx_l4_miss, 1);

    let dflt = shared.bind_default(SharingConfig::default()).unwrap();
    dflt.set_read_timeout(Some(WAIT)).unwrap();
    assert!(dflt.is_default());
    assert_eq!(
        shared.bound(),
        1,
        "the default receiver is not a bound address"
    );
    peer.send_to(b"to 54", sa("192.0.2.10:54")).unwrap();
    peer.send_to(b"to 53", sa("192.0.2.10:53")).unwrap();
    peer.send_to(b"to .11", sa("192.0.2.11:53")).unwrap();
    let mut bufs = [[0u8; 64]; 1];
    let mut meta = [RecvMeta::default(); 1];
    for (payload, local) in [
        (&b"to 54"[..], "192.0.2.10:54"),
        (b"to .11", "192.0.2.11:53"),
    ] {
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
        assert_eq!(dflt.recv_batch(&mut refs, &mut meta).unwrap(), 1);
        assert_eq!(&bufs[0][..meta[0].len], payload);
        assert_eq!((meta[0].local, meta[0].remote), (sa(local), sa(B)));
    }
    let mut buf = [0u8; 64];
    let n = bound.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"to 53", "a bound conn keeps its datagrams");

    // One default receiver per endpoint.
    let e = shared.bind_default(SharingConfig::default()).unwrap_err();
    assert!(matches!(e, UdpError::DefaultInUse));
    assert_eq!(
        kind_and_message(e.into()),
        (
            io::ErrorKind::AddrInUse,
            "this shared L2 endpoint already has a default receiver".into()
        )
    );
    // It has no address: send_to is refused, send_to_from names one.
    let e = dflt.send_to(b"x", sa(B)).unwrap_err();
    assert_eq!(
        kind_and_message(e),
        (
            io::ErrorKind::InvalidInput,
            "invalid configuration: the default receiver has no address of its own: send with \
             send_to_from"
                .into()
        )
    );
    dflt.send_to_from(b"reply", sa("192.0.2.10:54"), sa(B))
        .unwrap();
    assert_eq!(peer.recv_from(&mut buf).unwrap().1, sa("192.0.2.10:54"));
    let mut moved = shared.bind_default(SharingConfig::default().replace(true));
    let e = moved
        .as_mut()
        .unwrap()
        .set_local_addr(sa("192.0.2.10:1"))
        .unwrap_err();
    assert!(matches!(e, UdpError::BadLocalAddr { .. }), "{e}");

    // Dropped (the replacement too): misses are counted again.
    drop(dflt);
    drop(moved);
    peer.send_to(b"lost again", sa("192.0.2.10:55")).unwrap();
    let deadline = Instant::now() + WAIT;
    while relay.stats().rx_l4_miss == 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(relay.stats().rx_l4_miss, 2);
}

#[test]
fn sharing_conn_moves_connects_and_peeks() {
    let relay = relay();
    let (shared, peer) = shared_pair(&relay);
    let mut a = shared
        .bind(sa("192.0.2.10:53"), SharingConfig::default())
        .unwrap();
    let other = shared
        .bind(sa("192.0.2.10:67"), SharingConfig::default())
        .unwrap();
    a.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];

    // Moving onto a bound address is refused and changes nothing.
    let e = a.set_local_addr(sa("192.0.2.10:67")).unwrap_err();
    let e = io::Error::from(e);
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    assert_eq!(
        e.to_string(),
        format!(
            "UDP address {} is already bound on this shared L2 endpoint",
            other.key()
        )
    );
    assert_eq!(a.local_addr().unwrap(), sa("192.0.2.10:53"));

    // A datagram queued for the old address is still received after the move.
    peer.send_to(b"before", sa("192.0.2.10:53")).unwrap();
    let t = Instant::now();
    while a.queued() == 0 && t.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(1));
    }
    a.set_local_addr(sa("192.0.2.10:5353")).unwrap();
    assert_eq!(a.key(), L4RecvKey::udp(ip("192.0.2.10"), 5353));
    peer.send_to(b"after", sa("192.0.2.10:5353")).unwrap();
    let mut bufs = [[0u8; 64]; 1];
    let mut meta = [RecvMeta::default(); 1];
    for (payload, local) in [
        (&b"before"[..], "192.0.2.10:53"),
        (b"after", "192.0.2.10:5353"),
    ] {
        let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
        assert_eq!(a.recv_batch(&mut refs, &mut meta).unwrap(), 1);
        assert_eq!(
            (&bufs[0][..meta[0].len], meta[0].local),
            (payload, sa(local))
        );
    }
    // The old address is free: binding it works, and a datagram to it goes there.
    let old = shared
        .bind(sa("192.0.2.10:53"), SharingConfig::default())
        .unwrap();
    drop(old);
    assert_eq!(shared.bound(), 2);

    // connect, send, recv and peek on a shared conn.
    a.connect(B).unwrap();
    a.send(b"q").unwrap();
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"q"[..], sa("192.0.2.10:5353")));
    // A datagram from another sender is dropped by the connected conn.
    other
        .send_to_from(b"stranger", sa("192.0.2.10:67"), sa("192.0.2.10:5353"))
        .unwrap();
    peer.send_to(b"answer", from).unwrap();
    let (n, src) = a.peek_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], src), (&b"answer"[..], sa(B)));
    assert_eq!(a.recv(&mut buf).unwrap(), 6);
    a.set_nonblocking(true).unwrap();
    assert_eq!(
        a.recv(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
}

#[test]
fn address_of_a_conn_is_a_socket_addr() {
    // local_addr stays std-shaped on every conn kind.
    let relay = relay();
    let (shared, _) = shared_pair(&relay);
    let d = shared.bind_default(SharingConfig::default()).unwrap();
    let any: SocketAddr = sa("0.0.0.0:0");
    assert_eq!(d.local_addr().unwrap(), any);
}
