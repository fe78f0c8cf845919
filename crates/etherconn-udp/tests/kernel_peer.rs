//! `RUdpConn` and `SharingRUdpConn` on an AF_PACKET relay against the kernel's UDP stack, over
//! a veth pair between two network namespaces.
//!
//! Namespace `a` has 10.66.0.1/24 and 2001:db8:66::1/64 with ordinary `std::net::UdpSocket`s
//! and static neighbour entries for our endpoints (which answer no ARP or ND); namespace `b`
//! has only the relay. Both directions, IPv4 and IPv6: our endpoints send to the kernel and
//! get its replies, and the kernel sends to our endpoints and gets their echoes.
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
use etherconn_relay::{Inbox, Mail, PacketRelay, ReadySet};
use etherconn_testbed::{Side, Testbed};
use etherconn_udp::{
    RUdpConfig, RUdpConn, SharedConfig, SharedEtherConn, SharingConfig, SharingRUdpConn,
};

const WAIT: Duration = Duration::from_secs(5);
const CONNS: u8 = 20;
const A4: &str = "10.66.0.1";
const A6: &str = "2001:db8:66::1";

/// The calls both conn types share, so one exchange routine drives either.
trait Endpoint {
    fn send_to(&self, payload: &[u8], dst: SocketAddr) -> io::Result<usize>;
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    fn local(&self) -> SocketAddr;
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
}

macro_rules! endpoint {
    ($t:ty) => {
        impl Endpoint for $t {
            fn send_to(&self, payload: &[u8], dst: SocketAddr) -> io::Result<usize> {
                <$t>::send_to(self, payload, dst)
            }
            fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
                <$t>::recv_from(self, buf)
            }
            fn local(&self) -> SocketAddr {
                self.local_addr().unwrap()
            }
            fn set_nonblocking(&self, on: bool) -> io::Result<()> {
                <$t>::set_nonblocking(self, on)
            }
        }
    };
}
endpoint!(RUdpConn);
endpoint!(SharingRUdpConn);

struct Bed {
    tb: Testbed,
    relay: Arc<RawSocketRelay>,
    prefix: &'static str,
}

impl Bed {
    fn new(prefix: &'static str) -> Bed {
        let tb = Testbed::new(prefix).unwrap();
        tb.add_addr(Side::A, &format!("{A4}/24")).unwrap();
        tb.add_addr(Side::A, &format!("{A6}/64")).unwrap();
        let relay =
            tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
                .unwrap()
                .unwrap();
        Bed { tb, relay, prefix }
    }

    fn relay(&self) -> Arc<dyn PacketRelay> {
        self.relay.clone()
    }

    fn a_mac(&self) -> MacAddr {
        MacAddr(self.tb.a_mac)
    }

    /// A kernel UDP socket in namespace `a`.
    fn kernel_socket(&self, ip: &str) -> UdpSocket {
        let addr = SocketAddr::new(ip.parse().unwrap(), 0);
        let s = self
            .tb
            .a
            .run_in(move || UdpSocket::bind(addr))
            .unwrap()
            .unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }

    /// Makes namespace `a` reach `ip` at `mac` without ARP or neighbour discovery.
    fn neighbour(&self, ip: IpAddr, mac: MacAddr) {
        self.tb.add_neigh(Side::A, ip, mac.0).unwrap();
    }

    fn finish(self) {
        let s = self.relay.stats();
        assert_eq!(s.rx_invalid, 0, "{s}");
        assert_eq!(s.rx_queue_full, 0, "{s}");
        self.relay.stop();
        let prefix = self.prefix;
        drop(self);
        let left =
            etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
    }
}

/// Our endpoints send to a kernel socket, which replies to each sender; then a kernel socket
/// sends to each endpoint, which echoes. Every endpoint must get exactly its own datagrams.
fn exchange<E: Endpoint>(bed: &Bed, kernel_ip: &str, conns: &[E]) {
    let server = bed.kernel_socket(kernel_ip);
    let server_addr = server.local_addr().unwrap();
    let mut buf = [0u8; 2048];

    // Ours -> kernel -> ours.
    for c in conns {
        let msg = format!("hello from {}", c.local());
        assert_eq!(c.send_to(msg.as_bytes(), server_addr).unwrap(), msg.len());
    }
    let mut seen = Vec::new();
    for _ in conns {
        let (n, from) = server.recv_from(&mut buf).expect("the kernel receives");
        assert_eq!(&buf[..n], format!("hello from {from}").as_bytes());
        seen.push(from);
        server
            .send_to(format!("reply to {from}").as_bytes(), from)
            .unwrap();
    }
    seen.sort();
    let mut expected: Vec<SocketAddr> = conns.iter().map(Endpoint::local).collect();
    expected.sort();
    assert_eq!(seen, expected, "the kernel saw every endpoint's address");
    for c in conns {
        let (n, from) = c.recv_from(&mut buf).expect("the reply reaches its conn");
        assert_eq!(from, server_addr);
        assert_eq!(&buf[..n], format!("reply to {}", c.local()).as_bytes());
    }

    // A datagram near the veth MTU, checksummed by us and verified by the kernel.
    let big: Vec<u8> = (0..1400u32).map(|i| (i * 7) as u8).collect();
    conns[0].send_to(&big, server_addr).unwrap();
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&big[..], conns[0].local()));

    // Kernel -> ours -> kernel.
    let client = bed.kernel_socket(kernel_ip);
    let client_addr = client.local_addr().unwrap();
    for c in conns {
        client
            .send_to(format!("ping {}", c.local()).as_bytes(), c.local())
            .unwrap();
    }
    for c in conns {
        let (n, from) = c
            .recv_from(&mut buf)
            .expect("the kernel's datagram arrives");
        assert_eq!(from, client_addr);
        assert_eq!(&buf[..n], format!("ping {}", c.local()).as_bytes());
        c.send_to(format!("echo {}", c.local()).as_bytes(), from)
            .unwrap();
    }
    let mut echoed = Vec::new();
    for _ in conns {
        let (n, from) = client.recv_from(&mut buf).expect("the echo arrives");
        assert_eq!(&buf[..n], format!("echo {from}").as_bytes());
        echoed.push(from);
    }
    echoed.sort();
    assert_eq!(echoed, expected);

    // Nothing else is waiting for anyone.
    for c in conns {
        c.set_nonblocking(true).unwrap();
        let e = c.recv_from(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{}", c.local());
        c.set_nonblocking(false).unwrap();
    }
}

#[test]
fn rudp_conns_with_distinct_macs_against_kernel_udp() {
    if !etherconn_testbed::require_root("rudp_conns_with_distinct_macs_against_kernel_udp") {
        return;
    }
    let bed = Bed::new("ecudp-r-");
    let a_mac = bed.a_mac();
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for n in 1..=CONNS {
        let mac = MacAddr([0x02, 0xec, 0x66, 0, 0, n]);
        let ip4: IpAddr = format!("10.66.0.{}", 100 + u16::from(n)).parse().unwrap();
        let ip6: IpAddr = format!("2001:db8:66::{}", 100 + u16::from(n))
            .parse()
            .unwrap();
        bed.neighbour(ip4, mac);
        bed.neighbour(ip6, mac);
        // One conn per family on the same MAC: each registers only its own EtherType.
        let cfg = RUdpConfig::default().resolver(move |_| Some(a_mac));
        let port = 40000 + u16::from(n);
        for (ip, list) in [(ip4, &mut v4), (ip6, &mut v6)] {
            let c = RUdpConn::new(
                bed.relay(),
                mac,
                &[],
                SocketAddr::new(ip, port),
                cfg.clone(),
            )
            .unwrap();
            c.set_read_timeout(Some(WAIT)).unwrap();
            list.push(c);
        }
    }
    exchange(&bed, A4, &v4);
    exchange(&bed, A6, &v6);
    for c in v4.iter().chain(&v6) {
        assert_eq!(c.rx_filtered(), 0, "{c:?}");
    }
    drop((v4, v6));
    bed.finish();
}

#[test]
fn sharing_conns_on_one_mac_against_kernel_udp() {
    if !etherconn_testbed::require_root("sharing_conns_on_one_mac_against_kernel_udp") {
        return;
    }
    let bed = Bed::new("ecudp-s-");
    let a_mac = bed.a_mac();
    let mac = MacAddr([0x02, 0xec, 0x66, 0, 1, 0]);
    let ip4: IpAddr = "10.66.0.200".parse().unwrap();
    let ip6: IpAddr = "2001:db8:66::200".parse().unwrap();
    bed.neighbour(ip4, mac);
    bed.neighbour(ip6, mac);
    let shared = SharedEtherConn::new(
        bed.relay(),
        mac,
        &[],
        SharedConfig::default().resolver(move |_| Some(a_mac)),
    )
    .unwrap();
    let bind = |ip: IpAddr, port: u16| {
        let c = shared
            .bind(SocketAddr::new(ip, port), SharingConfig::default())
            .unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c
    };
    let v4: Vec<SharingRUdpConn> = (1..=u16::from(CONNS))
        .map(|i| bind(ip4, 41000 + i))
        .collect();
    let v6: Vec<SharingRUdpConn> = (1..=u16::from(CONNS))
        .map(|i| bind(ip6, 41000 + i))
        .collect();
    assert_eq!(shared.bound(), 2 * usize::from(CONNS));
    exchange(&bed, A4, &v4);
    exchange(&bed, A6, &v6);

    // A wildcard conn takes the kernel's datagrams to a port no exact conn has.
    let any = bind("0.0.0.0".parse().unwrap(), 42000);
    let client = bed.kernel_socket(A4);
    client
        .send_to(b"to the wildcard", SocketAddr::new(ip4, 42000))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = any.recv_from(&mut buf).unwrap();
    assert_eq!(
        (&buf[..n], from),
        (&b"to the wildcard"[..], client.local_addr().unwrap())
    );
    drop((v4, v6, any, shared));
    bed.finish();
}

/// Checks that conn `i` got "0 for ADDR" and "1 for ADDR" (its own address) if it is one of
/// `targets`, and nothing otherwise.
fn assert_each_got_its_two(got: &[Vec<String>], conns: &[SharingRUdpConn], targets: &[usize]) {
    for (i, msgs) in got.iter().enumerate() {
        let local = conns[i].local_addr().unwrap();
        let want: Vec<String> = if targets.contains(&i) {
            (0..2).map(|r| format!("{r} for {local}")).collect()
        } else {
            Vec::new()
        };
        assert_eq!(msgs, &want, "conn {i}");
    }
}

/// A `ReadySet` over 200 `SharingRUdpConn`s finds the ones the kernel sends to: every datagram
/// is read from the conn it was addressed to, once, and no other conn is reported with data.
#[test]
fn ready_set_finds_the_conns_the_kernel_sent_to() {
    if !etherconn_testbed::require_root("ready_set_finds_the_conns_the_kernel_sent_to") {
        return;
    }
    let bed = Bed::new("ecudp-w-");
    let mac = MacAddr([0x02, 0xec, 0x66, 0, 2, 0]);
    let ip4: IpAddr = "10.66.0.201".parse().unwrap();
    bed.neighbour(ip4, mac);
    let shared = SharedEtherConn::new(bed.relay(), mac, &[], SharedConfig::default()).unwrap();
    let conns: Vec<SharingRUdpConn> = (0..200u16)
        .map(|i| {
            let c = shared
                .bind(SocketAddr::new(ip4, 43000 + i), SharingConfig::default())
                .unwrap();
            c.set_nonblocking(true).unwrap();
            c
        })
        .collect();
    let set = ReadySet::new();
    let index: std::collections::HashMap<usize, usize> = conns
        .iter()
        .enumerate()
        .map(|(i, c)| (set.add(c), i))
        .collect();

    // Two datagrams each to 40 conns spread over the set, from a kernel socket.
    let targets: Vec<usize> = (0..40).map(|k| (k * 37) % conns.len()).collect();
    let client = bed.kernel_socket(A4);
    for round in 0..2 {
        for &i in &targets {
            let msg = format!("{round} for {}", conns[i].local_addr().unwrap());
            client
                .send_to(msg.as_bytes(), conns[i].local_addr().unwrap())
                .unwrap();
        }
    }
    let mut got: Vec<Vec<String>> = vec![Vec::new(); conns.len()];
    let mut ready = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = std::time::Instant::now() + WAIT;
    while got.iter().map(Vec::len).sum::<usize>() < 80 {
        assert!(
            std::time::Instant::now() < deadline,
            "datagrams missing: {got:?}"
        );
        set.wait(&mut ready, Some(WAIT)).unwrap();
        for t in &ready {
            let i = index[t];
            loop {
                match conns[i].recv_from(&mut buf) {
                    Ok((n, from)) => {
                        assert_eq!(from, client.local_addr().unwrap());
                        got[i].push(String::from_utf8(buf[..n].to_vec()).unwrap());
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("conn {i}: {e}"),
                }
            }
        }
    }
    assert_each_got_its_two(&got, &conns, &targets);
    assert_eq!(set.wait(&mut ready, Some(Duration::ZERO)).unwrap(), 0);
    drop((conns, shared));
    bed.finish();
}

/// An `Inbox` over 2,000 `SharingRUdpConn`s on 20 MACs: every datagram the kernel sends comes
/// out once, under the token of the conn it was addressed to, with the kernel socket as its
/// source; dropping the conns reports each closed.
#[test]
fn inbox_hands_over_the_kernels_datagrams_under_their_conns_tokens() {
    if !etherconn_testbed::require_root(
        "inbox_hands_over_the_kernels_datagrams_under_their_conns_tokens",
    ) {
        return;
    }
    let bed = Bed::new("ecudp-i-");
    let inbox = Inbox::new();
    let mut shared = Vec::new();
    let mut conns: Vec<SharingRUdpConn> = Vec::new();
    for m in 0..20u8 {
        let mac = MacAddr([0x02, 0xec, 0x66, 0, 3, m]);
        let ip: IpAddr = format!("10.66.0.{}", 100 + m).parse().unwrap();
        bed.neighbour(ip, mac);
        let s = SharedEtherConn::new(bed.relay(), mac, &[], SharedConfig::default()).unwrap();
        for p in 0..100u16 {
            let c = s
                .bind(SocketAddr::new(ip, 44000 + p), SharingConfig::default())
                .unwrap();
            inbox.attach(&c, conns.len()).unwrap();
            conns.push(c);
        }
        shared.push(s);
    }

    // One datagram to each of 500 conns spread over all of them, then a second round.
    let targets: Vec<usize> = (0..500).map(|k| (k * 37) % conns.len()).collect();
    let client = bed.kernel_socket(A4);
    let from = client.local_addr().unwrap();
    let mut got: Vec<Vec<String>> = vec![Vec::new(); conns.len()];
    let mut mail = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    for round in 0..2 {
        for &i in &targets {
            let to = conns[i].local_addr().unwrap();
            client
                .send_to(format!("{round} for {to}").as_bytes(), to)
                .unwrap();
        }
        let deadline = std::time::Instant::now() + WAIT;
        while got.iter().map(Vec::len).sum::<usize>() < (round + 1) * targets.len() {
            assert!(std::time::Instant::now() < deadline, "datagrams missing");
            inbox.recv(&mut mail, 64, Some(WAIT)).unwrap();
            for m in &mail {
                let Mail::Frame { token, frame } = m else {
                    panic!("unexpected {m:?}");
                };
                let meta = etherconn_udp::read_datagram(frame, &mut buf).expect("UDP");
                assert_eq!(meta.remote, from);
                assert_eq!(meta.local, conns[*token].local_addr().unwrap());
                got[*token].push(String::from_utf8(buf[..meta.len].to_vec()).unwrap());
            }
        }
    }
    assert_each_got_its_two(&got, &conns, &targets);
    // Nothing else came, and a conn's own read says where its datagrams went.
    assert_eq!(inbox.recv(&mut mail, 64, Some(Duration::ZERO)).unwrap(), 0);
    let e = conns[0].recv_from(&mut buf).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);

    let n = conns.len();
    drop(conns);
    let mut closed = std::collections::HashSet::new();
    while closed.len() < n {
        assert!(
            inbox.recv(&mut mail, 64, Some(WAIT)).unwrap() > 0,
            "close reports missing"
        );
        for m in &mail {
            assert!(matches!(m, Mail::Closed { .. }), "{m:?}");
            assert!(
                closed.insert(m.token()),
                "token {} reported twice",
                m.token()
            );
        }
    }
    drop(shared);
    bed.finish();
}
