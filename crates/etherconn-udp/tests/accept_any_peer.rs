//! `RUdpConfig::accept_any` against the kernel's UDP stack, over a veth pair between two
//! network namespaces: a kernel socket in namespace `a` sends datagrams to the MAC of each of
//! two conns (static neighbour entries point several addresses at each), to the conn's own
//! address and port, to another port, and to another address. The accept-any conn receives
//! them all, each with the address it was sent to, and its answers from those addresses reach
//! the kernel socket; the ordinary conn receives only its own and counts the others as
//! filtered.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::wire::MacAddr;
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::PacketRelay;
use etherconn_testbed::{Side, Testbed};
use etherconn_udp::{RUdpConfig, RUdpConn, RecvMeta};

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn accept_any_takes_every_address_and_port_a_plain_conn_only_its_own() {
    if !etherconn_testbed::require_root(
        "accept_any_takes_every_address_and_port_a_plain_conn_only_its_own",
    ) {
        return;
    }
    let prefix = "ecanypeer-";
    let tb = Testbed::new(prefix).unwrap();
    for side in [Side::A, Side::B] {
        let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
        tb.set_sysctl(side, &key, "1").unwrap();
    }
    let any_mac = MacAddr([0x02, 0xec, 0x62, 0, 0, 1]);
    let plain_mac = MacAddr([0x02, 0xec, 0x62, 0, 0, 2]);
    tb.add_addr(Side::A, "10.62.0.1/24").unwrap();
    for (ip, m) in [
        ("10.62.0.2", any_mac),
        ("10.62.0.50", any_mac),
        ("10.62.0.3", plain_mac),
        ("10.62.0.51", plain_mac),
    ] {
        tb.add_neigh(Side::A, ip.parse::<IpAddr>().unwrap(), m.0)
            .unwrap();
    }
    let relay =
        tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
            .unwrap()
            .unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();

    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    let kernel_mac = MacAddr(tb.mac(Side::A));
    let resolver = move |_| Some(kernel_mac);
    let rudp = |m: MacAddr, local: &str, any: bool| {
        let cfg = RUdpConfig::default().accept_any(any).resolver(resolver);
        let c = RUdpConn::new(dyn_relay.clone(), m, &[], sa(local), cfg).unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        c
    };
    let any = rudp(any_mac, "10.62.0.2:7000", true);
    let plain = rudp(plain_mac, "10.62.0.3:7000", false);

    let kernel =
        tb.a.run_in(|| UdpSocket::bind("10.62.0.1:4000"))
            .unwrap()
            .unwrap();
    kernel.set_read_timeout(Some(WAIT)).unwrap();
    let kernel_addr = kernel.local_addr().unwrap();
    let to_any = [
        "10.62.0.2:7999",  // its address, another port
        "10.62.0.50:9000", // another address and port
        "10.62.0.50:7000", // another address, its port
        "10.62.0.2:7000",  // its own
    ];
    let to_plain = ["10.62.0.3:7999", "10.62.0.51:7000", "10.62.0.3:7000"];
    for dst in to_any.iter().chain(&to_plain) {
        kernel
            .send_to(format!("to {dst}").as_bytes(), sa(dst))
            .unwrap();
    }

    // The accept-any conn: every datagram, in order, with the address it was sent to; it
    // answers from that address and the kernel takes the answer.
    for dst in to_any {
        let mut buf = [0u8; 64];
        let mut meta = [RecvMeta::default()];
        let n = any.recv_batch(&mut [&mut buf[..]], &mut meta).unwrap();
        assert_eq!(n, 1);
        let m = meta[0];
        assert_eq!(&buf[..m.len], format!("to {dst}").as_bytes());
        assert_eq!(m.local, sa(dst));
        assert_eq!(m.remote, kernel_addr);
        assert_eq!(m.dst_mac, any_mac);
        assert_eq!(m.src_mac, kernel_mac);
        any.send_to_from(format!("from {dst}").as_bytes(), m.local, m.remote)
            .unwrap();
        let mut reply = [0u8; 64];
        let (n, from) = kernel.recv_from(&mut reply).unwrap();
        assert_eq!(&reply[..n], format!("from {dst}").as_bytes());
        assert_eq!(
            from,
            sa(dst),
            "the kernel sees the answer come from where it sent"
        );
    }
    assert_eq!(any.rx_filtered(), 0);

    // The plain conn: only its own; the two before it were received and dropped.
    let mut buf = [0u8; 64];
    let (n, from) = plain.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"to 10.62.0.3:7000");
    assert_eq!(from, kernel_addr);
    assert_eq!(plain.rx_filtered(), 2);
    for c in [&any, &plain] {
        assert_eq!(c.ether_conn().queued(), 0, "{c:?}");
    }
    // A relay counts a frame just after it queued it: the reader may be first.
    let deadline = Instant::now() + WAIT;
    while relay.stats().rx_delivered < 7 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = relay.stats();
    assert_eq!(s.rx_delivered, 7, "{s}");
    assert_eq!((s.rx_invalid, s.rx_martian, s.rx_miss), (0, 0, 0), "{s}");

    drop(kernel);
    drop((any, plain, dyn_relay));
    relay.stop();
    drop(relay);
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
