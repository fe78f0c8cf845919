//! `XdpRelay` over a veth pair between two network namespaces, against the kernel's UDP stack
//! and `ping` in the peer namespace, and against `ip link` for what is attached.
//!
//! Namespace `a` is the peer (kernel UDP sockets, static neighbour entries for our endpoints);
//! namespace `b` holds the relay's interface, which also has an address of its own so that
//! the host's traffic on it can be checked while the relay runs.
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::wire::{EtherType, MacAddr};
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
use etherconn_testbed::{Side, Testbed};
use etherconn_udp::{RUdpConfig, RUdpConn};
use etherconn_xdp::{BindMode, Error, XdpRelay, XdpRelayConfig};

const WAIT: Duration = Duration::from_secs(5);
const A4: &str = "10.91.0.1";
const B4: &str = "10.91.0.2";
const A6: &str = "2001:db8:91::1";

struct Bed {
    tb: Testbed,
    prefix: &'static str,
}

impl Bed {
    fn new(prefix: &'static str) -> Bed {
        let tb = Testbed::new(prefix).unwrap();
        tb.add_addr(Side::A, &format!("{A4}/24")).unwrap();
        tb.add_addr(Side::A, &format!("{A6}/64")).unwrap();
        tb.add_addr(Side::B, &format!("{B4}/24")).unwrap();
        Bed { tb, prefix }
    }

    fn relay(&self, cfg: XdpRelayConfig) -> Result<Arc<XdpRelay>, Error> {
        self.tb
            .b
            .run_in(|| XdpRelay::new(&self.tb.b_if, cfg))
            .unwrap()
    }

    fn a_mac(&self) -> MacAddr {
        MacAddr(self.tb.a_mac)
    }

    /// A kernel UDP socket in namespace `side`.
    fn kernel_socket(&self, side: Side, ip: &str) -> UdpSocket {
        let addr = SocketAddr::new(ip.parse().unwrap(), 0);
        let s = self
            .tb
            .netns(side)
            .run_in(move || UdpSocket::bind(addr))
            .unwrap()
            .unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }

    /// Whether `ip -d link show` lists an XDP program on the relay's interface.
    fn xdp_attached(&self) -> bool {
        let out = self
            .tb
            .b
            .ip(&["-d", "link", "show", "dev", &self.tb.b_if])
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains("prog/xdp") || text.contains(" xdp")
    }

    /// Whether the program is gone within 2 s. Closing the relay's link detaches it at once,
    /// unless another process holds a copy of the link's fd: a child that a parallel test
    /// (or any thread of this process) forked for `ip`, scapy or tshark holds every fd of
    /// this process from its fork to its exec, and the kernel detaches when the last copy
    /// closes. Seen once in 100 runs on a machine at load 8-11.
    fn detached_soon(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.xdp_attached() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// `ping` from `a` to the relay interface's own address: the host's ARP and ICMP.
    fn ping_host(&self) -> bool {
        self.tb
            .a
            .exec(&["ping", "-c", "2", "-i", "0.2", "-W", "2", B4])
            .is_ok_and(|o| o.status.success())
    }

    fn finish(self) {
        let prefix = self.prefix;
        drop(self);
        let left =
            etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
    }
}

fn rudp(relay: &Arc<XdpRelay>, mac: MacAddr, local: SocketAddr, next_hop: MacAddr) -> RUdpConn {
    let relay: Arc<dyn PacketRelay> = relay.clone();
    let cfg = RUdpConfig::default().resolver(move |_| Some(next_hop));
    let c = RUdpConn::new(relay, mac, &[], local, cfg).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c
}

/// Our conns send to a kernel socket in `a`, which replies; a kernel client sends to each
/// conn, which echoes. Every conn gets exactly its own datagrams.
fn exchange(bed: &Bed, kernel_ip: &str, conns: &[RUdpConn]) {
    let server = bed.kernel_socket(Side::A, kernel_ip);
    let server_addr = server.local_addr().unwrap();
    let mut buf = [0u8; 2048];
    for c in conns {
        let msg = format!("hello from {}", c.local_addr().unwrap());
        c.send_to(msg.as_bytes(), server_addr).unwrap();
    }
    for _ in conns {
        let (n, from) = server.recv_from(&mut buf).expect("the kernel receives");
        assert_eq!(&buf[..n], format!("hello from {from}").as_bytes());
        server
            .send_to(format!("reply to {from}").as_bytes(), from)
            .unwrap();
    }
    for c in conns {
        let (n, from) = c.recv_from(&mut buf).expect("the reply reaches its conn");
        assert_eq!(from, server_addr);
        let me = c.local_addr().unwrap();
        assert_eq!(&buf[..n], format!("reply to {me}").as_bytes());
    }
    let client = bed.kernel_socket(Side::A, kernel_ip);
    let client_addr = client.local_addr().unwrap();
    for c in conns {
        let me = c.local_addr().unwrap();
        client.send_to(format!("ping {me}").as_bytes(), me).unwrap();
    }
    for c in conns {
        let (n, from) = c
            .recv_from(&mut buf)
            .expect("the kernel's datagram arrives");
        assert_eq!(from, client_addr);
        let me = c.local_addr().unwrap();
        assert_eq!(&buf[..n], format!("ping {me}").as_bytes());
        c.send_to(format!("echo {me}").as_bytes(), from).unwrap();
    }
    for _ in conns {
        let (n, from) = client.recv_from(&mut buf).expect("the echo arrives");
        assert_eq!(&buf[..n], format!("echo {from}").as_bytes());
    }
}

#[test]
fn rudp_conns_against_kernel_udp_while_the_host_keeps_its_traffic() {
    if !etherconn_testbed::require_root("rudp_conns_against_kernel_udp") {
        return;
    }
    let bed = Bed::new("ecxdp-k-");
    // A kernel sender on a veth leaves the UDP checksum for the receiver's hardware to fill in
    // (CHECKSUM_PARTIAL); an AF_XDP socket sees the frame before anyone does. Turning transmit
    // checksum offload off on the peer makes the kernel compute it in software. See
    // docs/xdp.md.
    bed.tb.set_offloads(Side::A, &[("tx", "off")]).unwrap();
    let relay = bed.relay(XdpRelayConfig::default()).unwrap();
    assert_eq!(relay.mode(), BindMode::Copy, "veth offers copy mode only");
    eprintln!(
        "XdpRelay on {}: queues {:?}, {:?} mode",
        relay.interface_name(),
        relay.queues(),
        relay.mode()
    );
    assert!(
        bed.xdp_attached(),
        "the program is attached while the relay runs"
    );

    let a_mac = bed.a_mac();
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for n in 1..=5u8 {
        let mac = MacAddr([0x02, 0xec, 0x91, 0, 0, n]);
        let ip4: IpAddr = format!("10.91.0.{}", 100 + n).parse().unwrap();
        let ip6: IpAddr = format!("2001:db8:91::{}", 100 + n).parse().unwrap();
        bed.tb.add_neigh(Side::A, ip4, mac.0).unwrap();
        bed.tb.add_neigh(Side::A, ip6, mac.0).unwrap();
        let port = 40000 + u16::from(n);
        v4.push(rudp(&relay, mac, SocketAddr::new(ip4, port), a_mac));
        v6.push(rudp(&relay, mac, SocketAddr::new(ip6, port), a_mac));
    }
    exchange(&bed, A4, &v4);
    exchange(&bed, A6, &v6);

    // The host's own address on the same interface: ARP, ICMP and a kernel UDP socket work
    // while the relay runs, in both directions.
    assert!(
        bed.ping_host(),
        "ping of the host's own address while the relay runs"
    );
    let host = bed.kernel_socket(Side::B, B4);
    let peer = bed.kernel_socket(Side::A, A4);
    let mut buf = [0u8; 64];
    peer.send_to(b"to the host", host.local_addr().unwrap())
        .unwrap();
    let (n, from) = host
        .recv_from(&mut buf)
        .expect("the host's socket receives");
    assert_eq!(&buf[..n], b"to the host");
    host.send_to(b"from the host", from).unwrap();
    let (n, _) = peer
        .recv_from(&mut buf)
        .expect("the peer gets the host's reply");
    assert_eq!(&buf[..n], b"from the host");

    let s = relay.stats();
    assert_eq!(s.rx_invalid, 0, "{s}");
    assert_eq!(s.rx_queue_full, 0, "{s}");
    let p = relay.program_stats();
    assert!(p.redirected >= 20, "{p:?}");
    assert!(p.passed >= 4, "the host's frames were passed: {p:?}");
    let rx: u64 = relay.queue_stats().iter().map(|q| q.rx_frames).sum();
    assert_eq!(rx, s.rx_offered, "{:?} {s}", relay.queue_stats());

    drop((v4, v6));
    relay.stop();
    assert!(bed.detached_soon(), "stop() detaches the program");
    drop(relay);
    assert!(bed.ping_host());
    bed.finish();
}

#[test]
fn etherconn_receives_and_sends_and_the_default_conn_leaves_the_host_alone() {
    if !etherconn_testbed::require_root("etherconn_default_conn") {
        return;
    }
    let bed = Bed::new("ecxdp-d-");
    bed.tb.set_offloads(Side::A, &[("tx", "off")]).unwrap();
    let relay = bed.relay(XdpRelayConfig::default()).unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();
    let cfg = EtherConnConfig::default().default_conn(true);
    let mac = MacAddr([0x02, 0xec, 0x91, 0, 1, 1]);
    let dflt = EtherConn::new(dyn_relay.clone(), mac, &[], cfg).unwrap();
    dflt.set_read_timeout(Some(WAIT)).unwrap();

    // Unicast to a MAC nobody registered (the kernel in `a` is told 10.91.0.77 is there):
    // the default conn gets it.
    let stranger = MacAddr([0x02, 0xec, 0x91, 0, 1, 0x77]);
    bed.tb
        .add_neigh(Side::A, "10.91.0.77".parse::<IpAddr>().unwrap(), stranger.0)
        .unwrap();
    let peer = bed.kernel_socket(Side::A, A4);
    peer.send_to(b"to a stranger", "10.91.0.77:5000").unwrap();
    let rx = dflt
        .recv_frame()
        .expect("the default conn gets unknown unicast");
    assert_eq!(rx.info.dst_mac(), stranger);
    let udp = rx.info.udp().expect("UDP");
    assert_eq!(&rx.frame()[udp.payload.range()], b"to a stranger");

    // The host's own traffic still reaches the host with a default conn registered.
    assert!(
        bed.ping_host(),
        "ping of the host's own address with a default conn"
    );

    // An EtherConn sends a frame of a local EtherType; a raw receiver is not needed: the
    // peer's kernel counts it (rx_packets of a_if grows).
    let before = rx_packets(&bed);
    for _ in 0..10 {
        dflt.send_to(&[0x5a; 46], EtherType(0x88b5), bed.a_mac())
            .unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while rx_packets(&bed) < before + 10 {
        assert!(
            Instant::now() < deadline,
            "the peer did not see our 10 frames"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(relay.queue_stats().iter().map(|q| q.tx_frames).sum::<u64>() >= 10);
    drop(dflt);
    drop(dyn_relay);
    drop(relay); // Drop detaches too
    assert!(bed.detached_soon(), "drop detaches the program");
    bed.finish();
}

#[test]
fn host_traffic_with_a_thousand_endpoints_and_a_default_conn_and_stop_wakes_readers() {
    if !etherconn_testbed::require_root("host_traffic_with_a_thousand_endpoints") {
        return;
    }
    let bed = Bed::new("ecxdp-h-");
    let relay = bed.relay(XdpRelayConfig::default()).unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();
    let conns: Vec<EtherConn> = (0..1000u16)
        .map(|i| {
            let [hi, lo] = i.to_be_bytes();
            let mac = MacAddr([0x02, 0xec, 0x94, 0, hi, lo]);
            EtherConn::new(dyn_relay.clone(), mac, &[], EtherConnConfig::default()).unwrap()
        })
        .collect();
    let dflt = EtherConn::new(
        dyn_relay.clone(),
        MacAddr([0x02, 0xec, 0x94, 1, 0, 0]),
        &[],
        EtherConnConfig::default().default_conn(true),
    )
    .unwrap();
    assert_eq!(relay.dispatcher().key_count(), 3 * 1001);

    // ARP and ICMP to the host's own address, and a kernel UDP socket on it, both ways.
    assert!(
        bed.ping_host(),
        "ping with 1,000 endpoints and a default conn"
    );
    let host = bed.kernel_socket(Side::B, B4);
    let peer = bed.kernel_socket(Side::A, A4);
    let mut buf = [0u8; 64];
    for i in 0..20 {
        let msg = format!("to the host {i}");
        peer.send_to(msg.as_bytes(), host.local_addr().unwrap())
            .unwrap();
        let (n, from) = host
            .recv_from(&mut buf)
            .expect("the host's socket receives");
        assert_eq!(&buf[..n], msg.as_bytes());
        host.send_to(&buf[..n], from).unwrap();
        let (n, _) = peer
            .recv_from(&mut buf)
            .expect("the peer gets the host's reply");
        assert_eq!(&buf[..n], msg.as_bytes());
    }
    assert_eq!(
        dflt.queued(),
        0,
        "the host's frames did not go to the default conn"
    );
    let s = relay.stats();
    assert_eq!(
        s.rx_offered, 0,
        "nothing of the host's reached the relay: {s}"
    );

    // A reader blocked in recv_from wakes with an error when the relay stops.
    let reader = std::thread::spawn(move || {
        let conn = &conns[0];
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 64];
        let started = Instant::now();
        let r = conn.recv_from(&mut buf);
        (r.map(|(n, _)| n), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    relay.stop();
    let (r, waited) = reader.join().unwrap();
    assert!(r.is_err(), "recv_from returns an error after stop: {r:?}");
    assert!(
        waited < Duration::from_secs(5),
        "woken promptly: {waited:?}"
    );
    assert!(bed.detached_soon());
    drop(dflt);
    drop(dyn_relay);
    drop(relay);
    bed.finish();
}

#[test]
fn a_full_endpoint_map_refuses_the_whole_conn_and_keeps_no_part_of_it() {
    if !etherconn_testbed::require_root("a_full_endpoint_map_refuses") {
        return;
    }
    let bed = Bed::new("ecxdp-m-");
    let mut cfg = XdpRelayConfig::default();
    cfg.max_keys = 5;
    let relay = bed.relay(cfg).unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();
    let mac = |n: u8| MacAddr([0x02, 0xec, 0x95, 0, 0, n]);
    let three = EtherConnConfig::default(); // ARP, IPv4, IPv6: three keys
    let first = EtherConn::new(dyn_relay.clone(), mac(1), &[], three.clone()).unwrap();
    // Three more keys do not fit in five: the kernel may take two before it refuses the third;
    // the relay takes those out again and refuses the conn.
    let err = EtherConn::new(dyn_relay.clone(), mac(2), &[], three).unwrap_err();
    assert!(err.to_string().contains("at most 5 keys"), "{err}");
    assert_eq!(relay.dispatcher().key_count(), 3);
    // Two keys fit only if nothing of the refused conn stayed in the map.
    let two = EtherConnConfig::default().ethertypes(&[EtherType::IPV4, EtherType::IPV6]);
    let second = EtherConn::new(dyn_relay.clone(), mac(3), &[], two).unwrap();
    assert_eq!(relay.dispatcher().key_count(), 5);
    drop((first, second, dyn_relay));
    drop(relay);
    bed.finish();
}

fn rx_packets(bed: &Bed) -> u64 {
    let out = bed
        .tb
        .a
        .exec(&[
            "cat",
            &format!("/sys/class/net/{}/statistics/rx_packets", bed.tb.a_if),
        ])
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_second_relay_refuses_the_attached_program_and_errors_are_typed() {
    if !etherconn_testbed::require_root("second_relay_refused") {
        return;
    }
    let bed = Bed::new("ecxdp-e-");
    let first = bed.relay(XdpRelayConfig::default()).unwrap();
    match bed.relay(XdpRelayConfig::default()) {
        Err(Error::ForeignProgramAttached { prog_id, .. }) => assert!(prog_id > 0),
        other => panic!("expected ForeignProgramAttached, got {other:?}"),
    }
    // A program attached through a link cannot be replaced through netlink either.
    match bed.relay(XdpRelayConfig::default().replace_foreign_program(true)) {
        Err(Error::ForeignProgramAttached { .. }) => {}
        other => panic!("expected ForeignProgramAttached, got {other:?}"),
    }
    drop(first);
    let again = bed
        .relay(XdpRelayConfig::default())
        .expect("a new relay once the first went");
    drop(again);

    let queues = bed.tb.b.run_in(|| {
        XdpRelay::new(&bed.tb.b_if, XdpRelayConfig::default().queues(&[1000])).unwrap_err()
    });
    assert!(matches!(
        queues.unwrap(),
        Error::QueueOutOfRange { queue: 1000, .. }
    ));
    let twice = bed.tb.b.run_in(|| {
        XdpRelay::new(&bed.tb.b_if, XdpRelayConfig::default().queues(&[0, 0])).unwrap_err()
    });
    assert!(matches!(twice.unwrap(), Error::InvalidConfig(_)));
    let missing = bed
        .tb
        .b
        .run_in(|| XdpRelay::new("nosuchif0", XdpRelayConfig::default()).unwrap_err());
    assert!(matches!(missing.unwrap(), Error::NoSuchInterface { .. }));
    bed.tb
        .b
        .ip(&["link", "set", "dev", &bed.tb.b_if, "down"])
        .unwrap();
    let down = bed.relay(XdpRelayConfig::default()).unwrap_err();
    assert!(matches!(down, Error::InterfaceDown { .. }), "{down}");
    bed.finish();
}

/// Run as a child process, inside the testbed's namespace `b`, by
/// `sigkill_leaves_nothing_attached`: opens a relay on the interface named in the
/// environment, says "ready" and waits to be killed.
#[test]
fn child_holding_a_relay() {
    let Ok(ifname) = std::env::var("ETHERCONN_XDP_CHILD_IF") else {
        return; // not run as the child: nothing to do
    };
    let _relay = XdpRelay::new(&ifname, XdpRelayConfig::default()).unwrap();
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn sigkill_leaves_nothing_attached() {
    if !etherconn_testbed::require_root("sigkill_leaves_nothing_attached") {
        return;
    }
    let bed = Bed::new("ecxdp-c-");
    let mut child = bed
        .tb
        .b
        .command(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holding_a_relay",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ETHERCONN_XDP_CHILD_IF", &bed.tb.b_if)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !line.contains("ready") {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 || Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child never said ready");
        }
    }
    assert!(bed.xdp_attached(), "the child's program is attached");
    // SIGKILL: no destructor runs; the kernel closes the link's fd and detaches.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + WAIT;
    while bed.xdp_attached() {
        assert!(
            Instant::now() < deadline,
            "the program outlived its process"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let relay = bed
        .relay(XdpRelayConfig::default())
        .expect("a new relay starts on it");
    drop(relay);
    bed.finish();
}
