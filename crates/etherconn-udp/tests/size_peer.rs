//! `max_payload()` against the kernel's UDP stack over a 1500-byte MTU veth pair: the largest
//! datagram a conn reports is received whole by a kernel socket in the peer namespace, untagged
//! (IPv4 and IPv6), behind an 802.1Q tag and behind an 802.1ad + 802.1Q stack (kernel VLAN
//! interfaces in the peer namespace), and one byte more is refused up front with
//! `UdpError::TooLarge`, naming the MTU.
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::wire::{MacAddr, Tpid, VlanId, VlanTag};
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::PacketRelay;
use etherconn_testbed::{Side, Testbed};
use etherconn_udp::{RUdpConfig, RUdpConn, UdpError};

const WAIT: Duration = Duration::from_secs(5);

/// One case: the VLAN stack, the kernel's address (on the interface that stack reaches) and
/// ours, and the largest UDP payload a 1500-byte MTU gives them.
struct Case {
    vlans: Vec<VlanTag>,
    kernel: &'static str,
    ours: &'static str,
    max: usize,
}

fn tag(tpid: Tpid, id: u16) -> VlanTag {
    VlanTag::new(tpid, VlanId::new(id).unwrap())
}

/// Makes the VLAN interfaces of namespace `a` with their addresses; false when the kernel
/// has no VLAN support.
fn add_vlan_interfaces(tb: &Testbed, a_if: &str) -> bool {
    let first = tb.a.ip(&[
        "link", "add", "link", a_if, "name", "v100", "type", "vlan", "id", "100",
    ]);
    match first {
        Ok(_) => {}
        Err(e) if e.to_string().contains("Unknown device type") => return false,
        Err(e) => panic!("{e}"),
    }
    let ip = |args: &[&str]| tb.a.ip(args).unwrap();
    ip(&[
        "link", "add", "link", a_if, "name", "s200", "type", "vlan", "proto", "802.1ad", "id",
        "200",
    ]);
    ip(&[
        "link", "add", "link", "s200", "name", "c300", "type", "vlan", "id", "300",
    ]);
    for dev in ["v100", "s200", "c300"] {
        ip(&["link", "set", dev, "up"]);
    }
    ip(&["addr", "add", "10.68.100.1/24", "dev", "v100"]);
    ip(&["addr", "add", "10.68.230.1/24", "dev", "c300"]);
    true
}

#[test]
fn the_largest_payload_reaches_a_kernel_socket_and_one_more_byte_is_refused() {
    if !etherconn_testbed::require_root("the_largest_payload_reaches_a_kernel_socket") {
        return;
    }
    let prefix = "ecsz-";
    let tb = Testbed::new(prefix).unwrap();
    let a_if = tb.a_if.clone();
    // Namespace a: the veth itself, an 802.1Q interface (VLAN 100) and an 802.1ad interface
    // (S-VLAN 200) carrying an 802.1Q one (C-VLAN 300), all at the default MTU of 1500. A
    // kernel without VLAN support (no 8021q module, as in some containers) runs the untagged
    // cases only, and says so.
    tb.add_addr(Side::A, "10.68.0.1/24").unwrap();
    tb.add_addr(Side::A, "2001:db8:68::1/64").unwrap();
    let vlans_ok = add_vlan_interfaces(&tb, &a_if);
    if !vlans_ok {
        eprintln!(
            "size_peer: this kernel cannot make VLAN interfaces (8021q); the tagged cases are \
             skipped"
        );
    }
    let mtu =
        tb.a.exec(&["cat", &format!("/sys/class/net/{a_if}/mtu")])
            .unwrap();
    assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "1500");

    let relay: Arc<dyn PacketRelay> =
        tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
            .unwrap()
            .unwrap();
    assert_eq!(relay.mtu(), 1500);
    let a_mac = MacAddr(tb.a_mac);
    let cases = [
        Case {
            vlans: vec![],
            kernel: "10.68.0.1",
            ours: "10.68.0.2:4000",
            max: 1472,
        },
        Case {
            vlans: vec![],
            kernel: "2001:db8:68::1",
            ours: "[2001:db8:68::2]:4000",
            max: 1452,
        },
        Case {
            vlans: vec![tag(Tpid::DOT1Q, 100)],
            kernel: "10.68.100.1",
            ours: "10.68.100.2:4000",
            max: 1472,
        },
        Case {
            vlans: vec![tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 300)],
            kernel: "10.68.230.1",
            ours: "10.68.230.2:4000",
            max: 1464,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        if !case.vlans.is_empty() && !vlans_ok {
            continue;
        }
        let kernel_ip: IpAddr = case.kernel.parse().unwrap();
        let server =
            tb.a.run_in(move || UdpSocket::bind(SocketAddr::new(kernel_ip, 0)))
                .unwrap()
                .unwrap();
        server.set_read_timeout(Some(WAIT)).unwrap();
        let dst = server.local_addr().unwrap();
        let conn = RUdpConn::new(
            relay.clone(),
            MacAddr([0x02, 0xec, 0x68, 0, 0, i as u8 + 1]),
            &case.vlans,
            case.ours.parse().unwrap(),
            RUdpConfig::default().resolver(move |_| Some(a_mac)),
        )
        .unwrap();
        assert_eq!(
            conn.max_payload(),
            case.max,
            "{:?} {}",
            case.vlans,
            case.ours
        );

        let payload: Vec<u8> = (0..case.max).map(|n| (n % 251) as u8).collect();
        assert_eq!(conn.send_to(&payload, dst).unwrap(), case.max);
        let mut buf = vec![0u8; 65536];
        let (n, from) = server
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("{:?}: the kernel got nothing: {e}", case.vlans));
        assert_eq!(from, case.ours.parse::<SocketAddr>().unwrap());
        assert_eq!(n, case.max, "{:?}", case.vlans);
        assert_eq!(&buf[..n], &payload[..]);

        let tx = relay.stats().tx;
        let e = conn.send_to(&vec![0; case.max + 1], dst).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let inner = e.get_ref().and_then(|i| i.downcast_ref::<UdpError>());
        assert!(
            matches!(inner, Some(UdpError::TooLarge { len, max, .. }) if (*len, *max) == (case.max + 1, case.max)),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(text.contains("the interface MTU of 1500 bytes"), "{text}");
        assert_eq!(relay.stats().tx, tx, "refused before the kernel");
        server.set_nonblocking(true).unwrap();
        assert_eq!(
            server.recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "nothing more arrived"
        );
    }
    relay.stop();
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
