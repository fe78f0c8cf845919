//! A neighbour tap: the ARP and ICMP frames to an endpoint's MAC go to another queue
//! (`RxQueue::divert_neighbour_frames`), and a queue joins the broadcast groups of a VLAN stack
//! without an exact key (`Dispatcher::join_multicast`).

use std::sync::Arc;
use std::time::Duration;

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::key::VlanIds;
use etherconn_core::wire::{EtherType, MacAddr, VlanTag};
use etherconn_relay::{
    ConnEntry, DispatcherConfig, EtherConn, EtherConnConfig, LoopbackRelay, NeighbourTap,
    PacketRelay, RelayError, RxQueue,
};

const WAIT: Option<Duration> = Some(Duration::from_millis(200));

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

fn udp_frame(dst: MacAddr, vlans: &[VlanTag]) -> Vec<u8> {
    let mut buf = vec![0u8; 128];
    let f = UdpFrame {
        src_mac: mac(9),
        dst_mac: dst,
        vlans,
        src: "192.0.2.9:1000".parse().unwrap(),
        dst: "192.0.2.1:2000".parse().unwrap(),
        ttl: 64,
        dscp: 0,
        payload: b"x",
    };
    let n = build_udp_frame(&mut buf, &f).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn arp_and_icmp_go_to_the_tap_udp_stays() {
    let relay = LoopbackRelay::new(DispatcherConfig::default());
    let vlans = [VlanTag::dot1q(7).unwrap()];
    let cfg = EtherConnConfig::default().ethertypes(&[EtherType::IPV4, EtherType::ARP]);
    let a = EtherConn::new(relay.clone(), mac(1), &vlans, cfg).unwrap();
    let tap = ConnEntry::new(16, true);
    let as_tap: NeighbourTap = tap.clone();
    a.divert_neighbour_frames(&as_tap).unwrap();
    // Idempotent for the same tap, refused for another.
    a.divert_neighbour_frames(&as_tap).unwrap();
    let other: NeighbourTap = Arc::new(RxQueue::new(1));
    assert!(matches!(
        a.divert_neighbour_frames(&other),
        Err(RelayError::InvalidConfig(_))
    ));

    let d = relay.dispatcher();
    // Unicast ARP to the endpoint's MAC: to the tap only.
    let sender = EtherConn::new(
        relay.clone(),
        mac(9),
        &vlans,
        EtherConnConfig::default().ethertypes(&[EtherType(0x88b5)]),
    )
    .unwrap();
    sender
        .send_to(
            &[
                0, 1, 8, 0, 6, 4, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            EtherType::ARP,
            mac(1),
        )
        .unwrap();
    let got = tap.queue.pop(WAIT).unwrap();
    assert_eq!(got.info.ethertype(), EtherType::ARP);
    assert!(a.recv_frame_timeout(Some(Duration::ZERO)).is_err());

    // UDP to the endpoint: to the endpoint only.
    d.deliver(&udp_frame(mac(1), &vlans), None, false);
    assert!(a.recv_frame_timeout(WAIT).unwrap().info.udp().is_some());
    assert!(tap.queue.pop(Some(Duration::ZERO)).is_err());

    // Broadcast ARP on the VLAN: nobody, until the tap joins the group.
    sender
        .send_to(&[0u8; 28], EtherType::ARP, MacAddr::BROADCAST)
        .unwrap();
    assert!(tap.queue.pop(Some(Duration::ZERO)).is_err());
    assert_eq!(d.stats().rx_multicast_ignored, 1);
    let ids = VlanIds::one(vlans[0].id);
    d.join_multicast(ids, EtherType::ARP, &tap).unwrap();
    d.join_multicast(ids, EtherType::ARP, &tap).unwrap();
    sender
        .send_to(&[0u8; 28], EtherType::ARP, MacAddr::BROADCAST)
        .unwrap();
    tap.queue.pop(WAIT).unwrap();
    assert!(
        tap.queue.pop(Some(Duration::ZERO)).is_err(),
        "one membership"
    );
    d.leave_multicast(ids, EtherType::ARP, &tap);
    sender
        .send_to(&[0u8; 28], EtherType::ARP, MacAddr::BROADCAST)
        .unwrap();
    assert!(tap.queue.pop(Some(Duration::ZERO)).is_err());

    // Stopping the relay closes a joined entry.
    d.join_multicast(ids, EtherType::ARP, &tap).unwrap();
    relay.stop();
    assert!(tap.queue.is_closed());
    assert!(d.join_multicast(ids, EtherType::ARP, &tap).is_err());
}

#[test]
fn the_tap_costs_a_conn_no_memory() {
    // The tap sits in the conn's entry, in room its 128-byte-aligned queue leaves: neither the
    // queue (every UDP endpoint has one) nor the entry grows.
    println!(
        "RxQueue: {} bytes, ConnEntry: {} bytes",
        core::mem::size_of::<RxQueue>(),
        core::mem::size_of::<ConnEntry>()
    );
    assert_eq!(core::mem::size_of::<RxQueue>(), 256);
    assert_eq!(core::mem::size_of::<ConnEntry>(), 384);
}
