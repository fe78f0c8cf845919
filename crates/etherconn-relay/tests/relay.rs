//! The dispatch rules (docs/architecture.md, "The dispatch contract") checked through the loopback relay, which runs the same
//! dispatcher as the real backends without needing an interface.

use std::io::ErrorKind;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use etherconn_core::build::{build_ethernet_frame, L2Header};
use etherconn_core::wire::{EtherType, MacAddr, Tpid, VlanId, VlanTag};
use etherconn_relay::{DispatcherConfig, LoopbackRelay, PacketRelay, RelayError};
use etherconn_relay::{EtherConn, EtherConnConfig};

const ET: EtherType = EtherType(0x88b5);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn cfg() -> EtherConnConfig {
    EtherConnConfig::default().ethertypes(&[ET])
}

fn relay() -> Arc<dyn PacketRelay> {
    LoopbackRelay::new(DispatcherConfig::default())
}

fn conn(r: &Arc<dyn PacketRelay>, m: MacAddr, vlans: &[VlanTag], c: EtherConnConfig) -> EtherConn {
    let c = EtherConn::new(r.clone(), m, vlans, c).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    c
}

fn recv(c: &EtherConn) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    match c.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(e) if e.kind() == ErrorKind::TimedOut => None,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn payload(tag: u8) -> Vec<u8> {
    vec![tag; 50]
}

#[test]
fn exact_key_needs_mac_vlans_and_ethertype() {
    let r = relay();
    let v100 = [VlanTag::dot1q(100).unwrap()];
    let v200 = [VlanTag::dot1q(200).unwrap()];
    let a = conn(&r, mac(1), &v100, cfg());
    let b = conn(&r, mac(2), &v100, cfg());
    let c = conn(&r, mac(2), &v200, cfg());
    let d = conn(&r, mac(2), &[], cfg());
    a.send_to(&payload(1), ET, mac(2)).unwrap();
    assert_eq!(recv(&b).unwrap(), payload(1));
    assert!(recv(&c).is_none(), "other VLAN");
    assert!(
        recv(&d).is_none(),
        "untagged conn does not get tagged frames"
    );
    // Wrong EtherType: nobody.
    a.send_to(&payload(2), EtherType(0x88b6), mac(2)).unwrap();
    assert!(recv(&b).is_none());
    assert_eq!(r.stats().rx_miss, 1);
    assert_eq!(r.stats().rx_delivered, 1);
}

#[test]
fn vlan_zero_is_not_untagged_and_tpid_does_not_matter_for_the_key() {
    let r = relay();
    let prio = [VlanTag::dot1q(0).unwrap()];
    let untagged = conn(&r, mac(2), &[], cfg());
    let tagged0 = conn(&r, mac(3), &prio, cfg());
    let sender = conn(&r, mac(1), &[], cfg());
    sender
        .send_to_from(&payload(3), ET, mac(2), mac(1), &prio)
        .unwrap();
    assert!(recv(&untagged).is_none());
    sender
        .send_to_from(
            &payload(4),
            ET,
            mac(3),
            mac(1),
            &[VlanTag::new(Tpid::QINQ, VlanId::new(0).unwrap())],
        )
        .unwrap();
    assert_eq!(recv(&tagged0).unwrap(), payload(4));
}

#[test]
fn unknown_unicast_goes_to_default_or_is_a_miss() {
    let r = relay();
    let s = conn(&r, mac(1), &[], cfg());
    s.send_to(&payload(5), ET, mac(9)).unwrap();
    assert_eq!(r.stats().rx_miss, 1);
    let def = conn(&r, mac(8), &[], cfg().default_conn(true));
    s.send_to(&payload(6), ET, mac(9)).unwrap();
    assert_eq!(recv(&def).unwrap(), payload(6));
    assert_eq!(r.stats().rx_to_default, 1);
    // A second default is refused, unless replacing.
    let err = EtherConn::new(r.clone(), mac(7), &[], cfg().default_conn(true)).unwrap_err();
    assert!(matches!(err, RelayError::DefaultInUse));
    let def2 = conn(&r, mac(7), &[], cfg().default_conn(true).replace(true));
    s.send_to(&payload(7), ET, mac(9)).unwrap();
    assert_eq!(recv(&def2).unwrap(), payload(7));
    assert!(recv(&def).is_none());
}

#[test]
fn broadcast_reaches_multicast_conns_on_its_vlans_and_the_default() {
    let r = relay();
    let v = [VlanTag::dot1q(10).unwrap()];
    let m1 = conn(&r, mac(1), &v, cfg().recv_multicast(true));
    let m2 = conn(&r, mac(2), &v, cfg().recv_multicast(true));
    let other_vlan = conn(
        &r,
        mac(3),
        &[VlanTag::dot1q(11).unwrap()],
        cfg().recv_multicast(true),
    );
    let plain = conn(&r, mac(4), &v, cfg());
    let def = conn(&r, mac(5), &[], cfg().default_conn(true));
    let s = conn(&r, mac(6), &v, cfg());
    s.send_to(&payload(8), ET, MacAddr::BROADCAST).unwrap();
    assert_eq!(recv(&m1).unwrap(), payload(8));
    assert_eq!(recv(&m2).unwrap(), payload(8));
    assert_eq!(recv(&def).unwrap(), payload(8));
    assert!(recv(&other_vlan).is_none());
    assert!(recv(&plain).is_none());
    let st = r.stats();
    assert_eq!(st.rx_multicast_delivered, 2);
    assert_eq!(st.rx_to_default, 1);
    drop((m1, m2, def));
    s.send_to(&payload(9), ET, MacAddr::BROADCAST).unwrap();
    assert_eq!(r.stats().rx_multicast_ignored, 1);
}

#[test]
fn duplicate_keys_are_refused_unless_replacing_and_drop_deregisters() {
    let r = relay();
    let a = conn(&r, mac(1), &[], cfg());
    let err = EtherConn::new(r.clone(), mac(1), &[], cfg()).unwrap_err();
    assert!(matches!(err, RelayError::KeyInUse(k) if k.mac == mac(1)));
    assert_eq!(
        r.dispatcher().key_count(),
        1,
        "failed registration left nothing behind"
    );
    // Partly overlapping EtherType sets: all or nothing.
    let err = EtherConn::new(
        r.clone(),
        mac(1),
        &[],
        EtherConnConfig::default().ethertypes(&[EtherType(1), ET]),
    );
    assert!(err.is_err());
    assert_eq!(r.dispatcher().key_count(), 1);
    let s = conn(&r, mac(2), &[], cfg());
    drop(a);
    assert_eq!(r.dispatcher().key_count(), 1);
    s.send_to(&payload(1), ET, mac(1)).unwrap();
    assert_eq!(r.stats().rx_miss, 1, "a dropped conn receives nothing");
    let b = conn(&r, mac(1), &[], cfg());
    let c = conn(&r, mac(1), &[], cfg().replace(true));
    s.send_to(&payload(2), ET, mac(1)).unwrap();
    assert_eq!(recv(&c).unwrap(), payload(2));
    assert!(recv(&b).is_none());
    drop(b); // must not remove the key c took over
    s.send_to(&payload(3), ET, mac(1)).unwrap();
    assert_eq!(recv(&c).unwrap(), payload(3));
}

#[test]
fn full_queue_drops_and_counts_without_blocking() {
    let r = relay();
    let a = conn(&r, mac(1), &[], cfg());
    let b = conn(&r, mac(2), &[], cfg().queue_depth(4));
    let t = Instant::now();
    for i in 0..100u8 {
        a.send_to(&payload(i), ET, mac(2)).unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(r.stats().rx_queue_full, 96);
    for i in 0..4u8 {
        assert_eq!(recv(&b).unwrap(), payload(i), "the oldest frames are kept");
    }
    assert!(recv(&b).is_none());
}

#[test]
fn timeouts_nonblocking_and_stop_wakes_readers() {
    let r = relay();
    let a = conn(&r, mac(1), &[], cfg());
    a.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = [0u8; 64];
    let t = Instant::now();
    assert_eq!(
        a.recv_from(&mut buf).unwrap_err().kind(),
        ErrorKind::TimedOut
    );
    assert!(t.elapsed() >= Duration::from_millis(45));
    assert_eq!(
        a.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    a.set_nonblocking(true).unwrap();
    assert_eq!(
        a.recv_from(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    a.set_nonblocking(false).unwrap();
    a.set_read_timeout(None).unwrap();

    let a = Arc::new(a);
    let reader = {
        let a = a.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 64];
            let t = Instant::now();
            let e = a.recv_from(&mut buf).unwrap_err();
            (e.kind(), t.elapsed())
        })
    };
    thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    r.stop();
    let (kind, _) = reader.join().unwrap();
    assert_eq!(kind, ErrorKind::NotConnected);
    assert!(t.elapsed() < Duration::from_millis(100), "woken promptly");
    assert!(a.send_to(&payload(1), ET, mac(2)).is_err());
    assert!(matches!(
        EtherConn::new(r.clone(), mac(5), &[], cfg()),
        Err(RelayError::Stopped)
    ));
}

#[test]
fn stripped_outer_tag_is_restored_before_keying() {
    let r = relay();
    let qinq = [
        VlanTag::new(Tpid::QINQ, VlanId::new(200).unwrap()).with_pcp(3),
        VlanTag::dot1q(100).unwrap(),
    ];
    let c = conn(&r, mac(2), &qinq, cfg());
    let mut frame = [0u8; 128];
    let len = build_ethernet_frame(
        &mut frame,
        &L2Header {
            src_mac: mac(1),
            dst_mac: mac(2),
            vlans: &qinq,
            ethertype: ET,
        },
        &payload(7),
    )
    .unwrap();
    // What AF_PACKET hands over with VLAN offload: the outer tag removed, reported aside.
    let mut stripped = Vec::from(&frame[..12]);
    stripped.extend_from_slice(&frame[16..len]);
    r.dispatcher().deliver(&stripped, Some(qinq[0]), false);
    let rx = c.recv_frame().unwrap();
    assert_eq!(
        rx.frame(),
        &frame[..len],
        "the conn sees the frame as it was on the wire"
    );
    assert_eq!(rx.info.vlans().as_slice(), &qinq);
}

#[test]
fn mirror_to_default_and_invalid_frames() {
    let r: Arc<dyn PacketRelay> =
        LoopbackRelay::new(DispatcherConfig::default().mirror_to_default(true));
    let a = conn(&r, mac(1), &[], cfg());
    let b = conn(&r, mac(2), &[], cfg());
    let def = conn(&r, mac(3), &[], cfg().default_conn(true));
    a.send_to(&payload(1), ET, mac(2)).unwrap();
    assert_eq!(recv(&b).unwrap(), payload(1));
    assert_eq!(recv(&def).unwrap(), payload(1));
    // Runts and bad IPv4 headers are counted as invalid and reach nobody.
    r.dispatcher().deliver(&[0u8; 10], None, false);
    let mut bad = [0u8; 60];
    bad[..6].copy_from_slice(&mac(2).0);
    bad[12..14].copy_from_slice(&[0x08, 0x00]);
    bad[14] = 0x44; // IHL 4
    r.dispatcher().deliver(&bad, None, false);
    assert_eq!(r.stats().rx_invalid, 2);
    assert!(recv(&def).is_none());
}

#[test]
fn concurrent_readers_and_a_writer_lose_nothing_under_capacity() {
    let r = relay();
    let a = conn(&r, mac(1), &[], cfg());
    let readers: Vec<_> = (0..8u8)
        .map(|i| {
            let c = conn(&r, mac(10 + i), &[], cfg().queue_depth(1024));
            thread::spawn(move || {
                let mut got = 0;
                while recv(&c).is_some() {
                    got += 1;
                }
                got
            })
        })
        .collect();
    for n in 0..800u32 {
        a.send_to(&payload(n as u8), ET, mac(10 + (n % 8) as u8))
            .unwrap();
    }
    let total: usize = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 800);
    assert_eq!(r.stats().rx_delivered, 800);
}

#[test]
fn shared_l2_endpoint_demultiplexes_udp_by_l4_key() {
    use etherconn_core::build::{build_udp_frame, UdpFrame};
    use etherconn_core::L4RecvKey;
    use etherconn_relay::RxQueue;

    let r = relay();
    let shared = conn(
        &r,
        mac(2),
        &[],
        EtherConnConfig::default()
            .l4_demux(true)
            .recv_multicast(true),
    );
    let sender = conn(&r, mac(1), &[], cfg());
    let l4 = shared.l4_demux().unwrap();
    let exact = Arc::new(RxQueue::new(8));
    let wildcard = Arc::new(RxQueue::new(8));
    l4.register(
        "192.0.2.2:5000/udp".parse::<L4RecvKey>().unwrap(),
        &exact,
        false,
    )
    .unwrap();
    l4.register(
        "0.0.0.0:68/udp".parse::<L4RecvKey>().unwrap(),
        &wildcard,
        false,
    )
    .unwrap();
    let dup = Arc::new(RxQueue::new(8));
    assert!(matches!(
        l4.register("192.0.2.2:5000/udp".parse().unwrap(), &dup, false),
        Err(RelayError::L4KeyInUse(_))
    ));
    let send = |dst_mac: MacAddr, dst: &str| {
        sender
            .send_built(|buf| {
                build_udp_frame(
                    buf,
                    &UdpFrame {
                        src_mac: mac(1),
                        dst_mac,
                        vlans: &[],
                        src: "192.0.2.1:67".parse().unwrap(),
                        dst: dst.parse().unwrap(),
                        ttl: 64,
                        dscp: 0,
                        payload: dst.as_bytes(),
                    },
                )
            })
            .unwrap();
    };
    let t = Some(Duration::from_millis(200));
    send(mac(2), "192.0.2.2:5000");
    assert_eq!(exact.pop(t).unwrap().info.udp().unwrap().local.port(), 5000);
    send(mac(2), "192.0.2.9:68");
    assert_eq!(
        wildcard.pop(t).unwrap().info.udp().unwrap().local.port(),
        68,
        "wildcard IP"
    );
    send(MacAddr::BROADCAST, "255.255.255.255:68");
    assert!(
        wildcard.pop(t).is_ok(),
        "broadcast to a shared multicast endpoint"
    );
    send(mac(2), "192.0.2.2:5001");
    assert_eq!(r.stats().rx_l4_miss, 1, "no UDP endpoint on that port");
    assert!(exact.pop(Some(Duration::from_millis(50))).is_err());
    drop(shared);
    assert!(
        exact.is_closed() && wildcard.is_closed(),
        "dropping the shared conn closes its UDP queues"
    );
}
