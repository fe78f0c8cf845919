//! The dispatch contract seen from the wire: misses, the default conn, duplicate keys,
//! broadcast to receive-multicast conns per VLAN stack, dropped conns.

use std::sync::Arc;

use etherconn_core::wire::Tpid;
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay, RelayError};

use super::common::{
    assert_no_leftovers, conn, mac, open_b, quiet, tag, udp_payload, wait_stats, Backend, X,
};
use super::peers::{specs, Scapy, Spec};
use crate::Testbed;

/// One case of the suite: see the module documentation.
pub fn dispatch_rules_over_the_wire(backend: &Backend) {
    let prefix = &backend.prefix("dsp");
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let relay = open_b(backend, &tb);
    let mut scapy = Scapy::start(&tb);
    let x = mac(X);
    let unknown = "02:ec:00:00:09:99";
    let bcast = "ff:ff:ff:ff:ff:ff";
    let plain = conn(&relay, x, &[], EtherConnConfig::default());
    // What a frame nobody wants counts: a miss, or (a relay that sees only registered frames)
    // nothing at all, as it is never offered.
    let miss = u64::from(backend.sees_unregistered);

    // Unknown unicast, no default conn: a miss. Then a frame for `plain` as a sentinel.
    scapy.send(&specs(&[
        Spec::udp4(unknown, 2001, "to nobody"),
        Spec::udp4(X, 2002, "sentinel 1"),
    ]));
    assert_eq!(udp_payload(&plain.recv_frame().unwrap()), b"sentinel 1");
    let s = wait_stats(&relay, "miss", |s| {
        (s.rx_miss, s.rx_delivered, s.rx_to_default) == (miss, 1, 0)
    });
    assert_eq!(
        (s.rx_miss, s.rx_delivered, s.rx_to_default, s.rx_offered),
        (miss, 1, 0, 1 + miss),
        "{s}"
    );

    // Duplicate keys are refused, replacing needs asking.
    let relay_dyn: Arc<dyn PacketRelay> = relay.clone();
    match EtherConn::new(relay_dyn.clone(), x, &[], EtherConnConfig::default()) {
        Err(RelayError::KeyInUse(k)) => assert_eq!(k.to_string(), "02:ec:00:00:01:01#0x0806"),
        other => panic!("duplicate registration: {other:?}"),
    }

    // With a default conn, unknown unicast goes there.
    let default = conn(
        &relay,
        mac("02:ec:00:00:0d:ef"),
        &[],
        EtherConnConfig::default().default_conn(true),
    );
    assert!(matches!(
        EtherConn::new(
            relay_dyn,
            mac("02:ec:00:00:0d:e0"),
            &[],
            EtherConnConfig::default().default_conn(true)
        ),
        Err(RelayError::DefaultInUse)
    ));
    scapy.send(&specs(&[Spec::udp4(unknown, 2003, "to default")]));
    let rx = default.recv_frame().unwrap();
    assert_eq!(udp_payload(&rx), b"to default");
    assert_eq!(rx.info.dst_mac(), mac(unknown));
    wait_stats(&relay, "s.rx_miss, s.rx_to_default == (miss, 1)", |s| {
        (s.rx_miss, s.rx_to_default) == (miss, 1)
    });

    // Broadcast reaches the receive-multicast conns of its VLAN stack and the default conn.
    let m_untagged = conn(
        &relay,
        mac("02:ec:00:00:03:01"),
        &[],
        EtherConnConfig::default().recv_multicast(true),
    );
    let m_vlan = conn(
        &relay,
        mac("02:ec:00:00:03:02"),
        &[tag(Tpid::DOT1Q, 100)],
        EtherConnConfig::default().recv_multicast(true),
    );
    scapy.send(&specs(&[Spec::udp4(bcast, 2004, "bcast untagged")]));
    assert_eq!(
        udp_payload(&m_untagged.recv_frame().unwrap()),
        b"bcast untagged"
    );
    assert_eq!(
        udp_payload(&default.recv_frame().unwrap()),
        b"bcast untagged"
    );
    scapy.send(&specs(&[
        Spec::udp4(bcast, 2005, "bcast vlan 100").tags(&[(0x8100, 100)])
    ]));
    let rx = m_vlan.recv_frame().unwrap();
    assert_eq!(udp_payload(&rx), b"bcast vlan 100");
    assert_eq!(rx.info.vlans().as_slice()[0].id.get(), 100);
    assert_eq!(
        udp_payload(&default.recv_frame().unwrap()),
        b"bcast vlan 100"
    );
    for c in [&plain, &default, &m_untagged, &m_vlan] {
        assert_eq!(c.queued(), 0, "{c:?}");
    }
    let s = wait_stats(
        &relay,
        "s.rx_multicast_delivered, s.rx_to_default == (2, 3)",
        |s| (s.rx_multicast_delivered, s.rx_to_default) == (2, 3),
    );
    assert_eq!(s.rx_multicast_ignored, 0, "{s}");

    // Dropped conns stop receiving: with no default, frames for them are misses (or, on a
    // relay that sees only registered frames, stay with the host).
    drop(default);
    drop(plain);
    let offered = relay.stats().rx_offered;
    scapy.send(&specs(&[
        Spec::udp4(X, 2006, "to a dropped conn"),
        Spec::udp4("02:ec:00:00:03:01", 2007, "sentinel 2"),
    ]));
    assert_eq!(
        udp_payload(&m_untagged.recv_frame().unwrap()),
        b"sentinel 2"
    );
    let s = wait_stats(&relay, "dropped conns", |s| {
        (s.rx_miss, s.rx_to_default, s.rx_delivered) == (2 * miss, 3, 2)
    });
    assert_eq!(
        (s.rx_miss, s.rx_to_default, s.rx_delivered, s.rx_offered),
        (2 * miss, 3, 2, offered + 1 + miss),
        "{s}"
    );
    // A broadcast nobody wants on VLAN 300 is counted as ignored (or never offered).
    scapy.send(&specs(&[
        Spec::udp4(bcast, 2008, "bcast vlan 300").tags(&[(0x8100, 300)]),
        Spec::udp4("02:ec:00:00:03:01", 2009, "sentinel 3"),
    ]));
    assert_eq!(
        udp_payload(&m_untagged.recv_frame().unwrap()),
        b"sentinel 3"
    );
    let s = wait_stats(&relay, "multicast ignored", |s| {
        s.rx_multicast_ignored == miss && s.rx_offered == offered + 2 + 2 * miss
    });
    assert_eq!(s.rx_invalid, 0, "{s}");
    drop(scapy);
    relay.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}
