//! `DispatcherConfig::mirror_to_default` against the kernel's UDP stack, over a veth pair
//! between two network namespaces: a kernel socket in namespace `a` sends three datagrams to an
//! `RUdpConn` and one to a MAC no conn has. With mirroring on, the owning conn still gets its
//! three and the relay's default conn gets a copy of each (addresses, MACs and payload as sent)
//! and then the unmatched one, once; with it off, the default conn gets only the unmatched one.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::wire::MacAddr;
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::{DispatcherConfig, EtherConn, EtherConnConfig, PacketRelay, RelayStats};
use etherconn_testbed::{Side, Testbed};
use etherconn_udp::{RUdpConfig, RUdpConn};

const WAIT: Duration = Duration::from_secs(5);
const OWNER: MacAddr = MacAddr([0x02, 0xec, 0x64, 0, 0, 1]);
const NOBODY: MacAddr = MacAddr([0x02, 0xec, 0x64, 0, 0, 9]);
const DEFAULT: MacAddr = MacAddr([0x02, 0xec, 0x64, 0, 0, 0x0d]);
const TO_OWNER: [&str; 3] = ["one", "two", "three"];

/// What the default conn got, as (payload, destination MAC, source, destination), up to and
/// including the unmatched datagram.
type Seen = Vec<(String, MacAddr, SocketAddr, SocketAddr)>;

/// The relay's counters once `ready` holds for them (or after `WAIT`).
fn settled(relay: &RawSocketRelay, ready: impl Fn(&RelayStats) -> bool) -> RelayStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = relay.stats();
        if ready(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One relay on `tb.b_if` with mirroring `mirror`; returns what the default conn saw.
fn run(tb: &Testbed, mirror: bool) -> Seen {
    let config = RawSocketRelayConfig::default()
        .dispatcher(DispatcherConfig::default().mirror_to_default(mirror));
    let relay =
        tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, config))
            .unwrap()
            .unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();
    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    let owner = RUdpConn::new(
        dyn_relay.clone(),
        OWNER,
        &[],
        sa("10.64.0.2:7000"),
        RUdpConfig::default(),
    )
    .unwrap();
    owner.set_read_timeout(Some(WAIT)).unwrap();
    let default = EtherConn::new(
        dyn_relay.clone(),
        DEFAULT,
        &[],
        EtherConnConfig::default().default_conn(true),
    )
    .unwrap();
    default.set_read_timeout(Some(WAIT)).unwrap();

    let kernel =
        tb.a.run_in(|| UdpSocket::bind("10.64.0.1:4000"))
            .unwrap()
            .unwrap();
    let kernel_addr = kernel.local_addr().unwrap();
    for p in TO_OWNER {
        kernel.send_to(p.as_bytes(), sa("10.64.0.2:7000")).unwrap();
    }
    kernel.send_to(b"nobody's", sa("10.64.0.9:7000")).unwrap();

    // The owner gets every datagram, mirrored or not.
    for p in TO_OWNER {
        let mut buf = [0u8; 64];
        let (n, from) = owner.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], from),
            (p.as_bytes(), kernel_addr),
            "mirror {mirror}"
        );
    }
    let mut seen = Seen::new();
    loop {
        let rx = default
            .recv_frame()
            .unwrap_or_else(|e| panic!("mirror {mirror}: after {seen:?}: {e}"));
        let udp = rx
            .info
            .udp()
            .expect("only the kernel's UDP datagrams on this link");
        let payload = String::from_utf8_lossy(&rx.frame()[udp.payload.range()]).into_owned();
        assert_eq!(rx.info.src_mac, MacAddr(tb.mac(Side::A)));
        seen.push((payload.clone(), rx.info.dst_mac(), udp.remote, udp.local));
        if payload == "nobody's" {
            break;
        }
    }
    // The unmatched datagram went last on the one receive thread: nothing more is coming.
    assert_eq!(default.queued(), 0, "mirror {mirror}");
    assert_eq!(owner.ether_conn().queued(), 0, "mirror {mirror}");
    let copies = if mirror { 3 } else { 0 };
    // A relay counts a frame just after it queued it: the reader may be first.
    let to_default = 1 + copies;
    let s = settled(&relay, |s| s.rx_to_default >= to_default);
    assert_eq!(s.rx_delivered, 3, "mirror {mirror}: {s}");
    assert_eq!(s.rx_to_default, to_default, "mirror {mirror}: {s}");
    assert_eq!((s.rx_miss, s.rx_invalid), (0, 0), "mirror {mirror}: {s}");

    drop(kernel);
    drop((owner, default, dyn_relay));
    relay.stop();
    seen
}

#[test]
fn default_conn_gets_copies_with_mirroring_and_the_owner_keeps_the_original() {
    if !etherconn_testbed::require_root(
        "default_conn_gets_copies_with_mirroring_and_the_owner_keeps_the_original",
    ) {
        return;
    }
    let prefix = "ecmirrorpeer-";
    let tb = Testbed::new(prefix).unwrap();
    for side in [Side::A, Side::B] {
        let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
        tb.set_sysctl(side, &key, "1").unwrap();
    }
    tb.add_addr(Side::A, "10.64.0.1/24").unwrap();
    for (ip, m) in [("10.64.0.2", OWNER), ("10.64.0.9", NOBODY)] {
        tb.add_neigh(Side::A, ip.parse::<IpAddr>().unwrap(), m.0)
            .unwrap();
    }
    let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
    let kernel = sa("10.64.0.1:4000");
    let nobody = ("nobody's".to_owned(), NOBODY, kernel, sa("10.64.0.9:7000"));

    let mut expected: Seen = TO_OWNER
        .iter()
        .map(|p| (p.to_string(), OWNER, kernel, sa("10.64.0.2:7000")))
        .collect();
    expected.push(nobody.clone());
    assert_eq!(run(&tb, true), expected, "mirrored");
    assert_eq!(run(&tb, false), vec![nobody], "not mirrored");

    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
