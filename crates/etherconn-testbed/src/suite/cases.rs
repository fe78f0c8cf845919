//! The suite's cases on the happy path: the kernel's UDP stack both ways, VLAN/QinQ and
//! three-tag ingress from scapy, VLAN egress (up to three tags) decoded by tshark.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use etherconn_core::wire::{EtherType, MacAddr, Tpid, VlanTag};
use etherconn_relay::{EtherConn, EtherConnConfig};

use super::common::{
    assert_no_leftovers, conn, mac, open_b, quiet, send_udp, tag, udp_payload, wait_stats, Backend,
    WAIT, X,
};
use super::peers::{specs, Scapy, Spec};
use super::tshark::Capture;
use crate::{Side, Testbed};

/// Kernel UDP in namespace `a` <-> three EtherConns with MACs and IPs the OS does not know.
pub fn kernel_udp_roundtrip(backend: &Backend, v6: bool) {
    let prefix = &backend.prefix(if v6 { "k6" } else { "k4" });
    let tb = Testbed::new(prefix).unwrap();
    if !backend.sees_partial_checksums {
        // The relay cannot tell a checksum the peer's offload left for later from a bad one.
        tb.set_offloads(Side::A, &[("tx", "off")]).unwrap();
    }
    let (a_cidr, a_ip): (&str, IpAddr) = if v6 {
        ("2001:db8:77::1/64", "2001:db8:77::1".parse().unwrap())
    } else {
        ("10.77.0.1/24", "10.77.0.1".parse().unwrap())
    };
    tb.add_addr(Side::A, a_cidr).unwrap();
    let server =
        tb.a.run_in(move || UdpSocket::bind(SocketAddr::new(a_ip, 0)))
            .unwrap()
            .unwrap();
    server.set_read_timeout(Some(WAIT)).unwrap();
    let server_addr = server.local_addr().unwrap();
    let relay = open_b(backend, &tb);
    let a_mac = MacAddr(tb.a_mac);

    let mut conns = Vec::new();
    for n in 1..=3u16 {
        let m = mac(&format!("02:ec:00:00:00:0{n}"));
        let ip: IpAddr = if v6 {
            format!("2001:db8:77::1{n}").parse().unwrap()
        } else {
            format!("10.77.0.1{n}").parse().unwrap()
        };
        tb.add_neigh(Side::A, ip, m.0).unwrap();
        let c = conn(&relay, m, &[], EtherConnConfig::default());
        conns.push((c, SocketAddr::new(ip, 40000 + n)));
    }

    for (c, local) in &conns {
        let msg = format!("hello from {local}");
        send_udp(c, a_mac, *local, server_addr, msg.as_bytes());
    }
    let mut buf = [0u8; 1500];
    let mut seen = Vec::new();
    for _ in 0..conns.len() {
        let (n, from) = server.recv_from(&mut buf).expect("kernel socket receives");
        assert_eq!(&buf[..n], format!("hello from {from}").as_bytes());
        seen.push(from);
        server
            .send_to(format!("reply to {from}").as_bytes(), from)
            .unwrap();
    }
    seen.sort();
    let mut expected: Vec<SocketAddr> = conns.iter().map(|(_, a)| *a).collect();
    expected.sort();
    assert_eq!(seen, expected);

    for (c, local) in &conns {
        let rx = c.recv_frame().expect("reply reaches its EtherConn");
        let udp = rx.info.udp().expect("UDP");
        assert_eq!(udp.remote, server_addr);
        assert_eq!(udp.local, *local);
        assert_eq!(rx.info.src_mac, a_mac);
        assert_eq!(rx.info.dst_mac(), c.local_mac());
        assert_eq!(udp_payload(&rx), format!("reply to {local}").as_bytes());
        assert_eq!(c.queued(), 0, "exactly one reply for {local}");
    }
    let s = relay.stats();
    assert_eq!(s.rx_invalid, 0, "{s}");
    assert!(s.tx >= 3, "{s}");
    relay.stop();
    drop(conns);
    drop(tb);
    assert_no_leftovers(prefix);
}

/// One case of the suite: see the module documentation.
pub fn scapy_vlan_ingress_reaches_exactly_its_conn(backend: &Backend) {
    let prefix = &backend.prefix("vin");
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let relay = open_b(backend, &tb);
    let x = mac(X);
    let cfg = EtherConnConfig::default;
    let c100 = conn(&relay, x, &[tag(Tpid::DOT1Q, 100)], cfg());
    let c200_100 = conn(
        &relay,
        x,
        &[tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 100)],
        cfg(),
    );
    let c300_100 = conn(
        &relay,
        x,
        &[tag(Tpid::QINQ_LEGACY, 300), tag(Tpid::DOT1Q, 100)],
        cfg(),
    );
    // Three tags: one stack that extends c200_100 by an inner tag, so a frame must match all
    // three ids (and not two of them), and one of three TPIDs.
    let c200_100_10 = conn(
        &relay,
        x,
        &[
            tag(Tpid::QINQ, 200),
            tag(Tpid::DOT1Q, 100),
            tag(Tpid::DOT1Q, 10),
        ],
        cfg(),
    );
    let c300_200_100 = conn(
        &relay,
        x,
        &[
            tag(Tpid::QINQ_LEGACY, 300),
            tag(Tpid::QINQ, 200),
            tag(Tpid::DOT1Q, 100),
        ],
        cfg(),
    );
    let untagged = conn(&relay, x, &[], cfg());
    let c101 = conn(&relay, x, &[tag(Tpid::DOT1Q, 101)], cfg());

    let mut scapy = Scapy::start(&tb);
    scapy.send(&specs(&[
        Spec::udp4(X, 1100, "dot1q-100").tags(&[(0x8100, 100)]),
        Spec::udp4(X, 1200, "qinq-200-100").tags(&[(0x88a8, 200), (0x8100, 100)]),
        Spec::udp4(X, 1300, "9100-300-100").tags(&[(0x9100, 300), (0x8100, 100)]),
        // No conn has 200/100/11 (a miss), and four tags never pass the kernel filter.
        Spec::udp4(X, 1211, "200-100-11").tags(&[(0x88a8, 200), (0x8100, 100), (0x8100, 11)]),
        Spec::udp4(X, 1212, "four tags").tags(&[
            (0x88a8, 200),
            (0x8100, 100),
            (0x8100, 10),
            (0x8100, 1),
        ]),
        Spec::udp4(X, 1210, "88a8-200-100-10").tags(&[(0x88a8, 200), (0x8100, 100), (0x8100, 10)]),
        Spec::udp4(X, 1320, "9100-300-200-100").tags(&[
            (0x9100, 300),
            (0x88a8, 200),
            (0x8100, 100),
        ]),
        Spec::udp4(X, 1000, "untagged"),
    ]));

    let expect = |c: &EtherConn, port: u16, marker: &str, ids: &[u16], tpids: &[u16]| {
        let rx = c.recv_frame().unwrap_or_else(|e| panic!("{marker}: {e}"));
        let udp = rx.info.udp().expect("UDP");
        assert_eq!(udp.remote.port(), port, "{marker}");
        assert_eq!(udp_payload(&rx), marker.as_bytes());
        let got: Vec<u16> = rx
            .info
            .vlans()
            .as_slice()
            .iter()
            .map(|t| t.id.get())
            .collect();
        assert_eq!(got, ids, "{marker}");
        let got: Vec<u16> = rx
            .info
            .vlans()
            .as_slice()
            .iter()
            .map(|t| t.tpid.get())
            .collect();
        assert_eq!(
            got, tpids,
            "{marker}: TPIDs as received (outer tag put back)"
        );
        assert_eq!(rx.info.src_mac, mac("02:aa:00:00:00:01"));
    };
    expect(&c100, 1100, "dot1q-100", &[100], &[0x8100]);
    expect(
        &c200_100,
        1200,
        "qinq-200-100",
        &[200, 100],
        &[0x88a8, 0x8100],
    );
    expect(
        &c300_100,
        1300,
        "9100-300-100",
        &[300, 100],
        &[0x9100, 0x8100],
    );
    expect(
        &c200_100_10,
        1210,
        "88a8-200-100-10",
        &[200, 100, 10],
        &[0x88a8, 0x8100, 0x8100],
    );
    expect(
        &c300_200_100,
        1320,
        "9100-300-200-100",
        &[300, 200, 100],
        &[0x9100, 0x88a8, 0x8100],
    );
    expect(&untagged, 1000, "untagged", &[], &[]);
    // The untagged frame was sent last and the relay has one receive thread, so every earlier
    // frame has been dispatched by now.
    for c in [
        &c100,
        &c200_100,
        &c300_100,
        &c200_100_10,
        &c300_200_100,
        &untagged,
        &c101,
    ] {
        assert_eq!(c.queued(), 0, "{c:?} got more than its frame");
    }
    // Six delivered, the 200/100/11 frame a miss (on a relay that sees only registered
    // frames, never offered), the four-tag one never offered.
    let miss = u64::from(backend.sees_unregistered);
    let s = wait_stats(&relay, "6 delivered", |s| s.rx_delivered == 6);
    assert_eq!(s.rx_offered, 6 + miss, "{s}");
    assert_eq!(s.rx_miss, miss, "{s}");
    assert_eq!(
        (
            s.rx_invalid,
            s.rx_to_default,
            s.rx_multicast_delivered,
            s.rx_multicast_ignored
        ),
        (0, 0, 0, 0),
        "{s}"
    );
    drop(scapy);
    relay.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}

/// One case of the suite: see the module documentation.
pub fn vlan_egress_decoded_by_tshark(backend: &Backend) {
    let prefix = &backend.prefix("veg");
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let relay = open_b(backend, &tb);
    let stacks: [(&str, Vec<VlanTag>); 5] = [
        ("02:ec:00:00:02:01", vec![]),
        (
            "02:ec:00:00:02:02",
            vec![VlanTag::dot1q(100).unwrap().with_pcp(5)],
        ),
        (
            "02:ec:00:00:02:03",
            vec![tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 100)],
        ),
        (
            "02:ec:00:00:02:04",
            vec![
                tag(Tpid::QINQ, 200).with_pcp(3),
                tag(Tpid::DOT1Q, 100).with_pcp(6),
                tag(Tpid::DOT1Q, 10).with_pcp(1),
            ],
        ),
        (
            "02:ec:00:00:02:05",
            vec![
                tag(Tpid::QINQ_LEGACY, 300).with_pcp(7),
                tag(Tpid::QINQ, 200),
                tag(Tpid::DOT1Q, 4094).with_pcp(2),
            ],
        ),
    ];
    let conns: Vec<EtherConn> = stacks
        .iter()
        .map(|(m, v)| conn(&relay, mac(m), v, EtherConnConfig::default()))
        .collect();
    let a_mac = MacAddr(tb.a_mac);
    let cap = Capture::start(&tb, || {
        conns[0]
            .send_to(b"probe", EtherType(0x88b5), a_mac)
            .unwrap();
    });
    for (i, c) in conns.iter().enumerate() {
        let port = 5000 + i as u16;
        let v4s: SocketAddr = format!("10.66.0.{}:{port}", 10 + i).parse().unwrap();
        let v4d: SocketAddr = "10.66.0.1:9".parse().unwrap();
        send_udp(c, a_mac, v4s, v4d, b"tshark checks me, ipv4");
        let v6s: SocketAddr = format!("[2001:db8:66::{}]:{port}", 10 + i).parse().unwrap();
        let v6d: SocketAddr = "[2001:db8:66::1]:9".parse().unwrap();
        send_udp(c, a_mac, v6s, v6d, b"tshark checks me, ipv6, odd");
    }
    cap.wait_udp(10);
    let rows = cap.finish(&[
        "ieee8021ad.id",
        "ieee8021ad.priority",
        "vlan.id",
        "vlan.priority",
        "vlan.etype",
        "eth.type",
        "eth.src",
        "eth.dst",
        "ip.src",
        "ipv6.src",
        "udp.srcport",
        "ip.checksum.status",
        "udp.checksum.status",
    ]);
    // Columns: 802.1ad id, PCP; 802.1Q id, PCP, next type; outer EtherType; MACs;
    // IPv4/IPv6 source; UDP source port; IPv4 header and UDP checksum status (1 = good).
    // tshark decodes 0x9100 as 802.1Q and lists each field's values outermost first.
    let m = a_mac.to_string();
    let m = m.as_str();
    #[rustfmt::skip]
    let expected: Vec<[&str; 13]> = vec![
        ["", "", "", "", "", "0x0800", "02:ec:00:00:02:01", m, "10.66.0.10", "", "5000", "1", "1"],
        ["", "", "", "", "", "0x86dd", "02:ec:00:00:02:01", m, "", "2001:db8:66::10", "5000", "", "1"],
        ["", "", "100", "5", "0x0800", "0x8100", "02:ec:00:00:02:02", m, "10.66.0.11", "", "5001", "1", "1"],
        ["", "", "100", "5", "0x86dd", "0x8100", "02:ec:00:00:02:02", m, "", "2001:db8:66::11", "5001", "", "1"],
        ["200", "0", "100", "0", "0x0800", "0x88a8", "02:ec:00:00:02:03", m, "10.66.0.12", "", "5002", "1", "1"],
        ["200", "0", "100", "0", "0x86dd", "0x88a8", "02:ec:00:00:02:03", m, "", "2001:db8:66::12", "5002", "", "1"],
        ["200", "3", "100,10", "6,1", "0x8100,0x0800", "0x88a8", "02:ec:00:00:02:04", m, "10.66.0.13", "", "5003", "1", "1"],
        ["200", "3", "100,10", "6,1", "0x8100,0x86dd", "0x88a8", "02:ec:00:00:02:04", m, "", "2001:db8:66::13", "5003", "", "1"],
        ["200", "0", "300,4094", "7,2", "0x88a8,0x0800", "0x9100", "02:ec:00:00:02:05", m, "10.66.0.14", "", "5004", "1", "1"],
        ["200", "0", "300,4094", "7,2", "0x88a8,0x86dd", "0x9100", "02:ec:00:00:02:05", m, "", "2001:db8:66::14", "5004", "", "1"],
    ];
    assert_eq!(rows.len(), expected.len(), "{rows:#?}");
    for (row, exp) in rows.iter().zip(&expected) {
        assert_eq!(row, &exp.map(str::to_owned).to_vec(), "all rows: {rows:#?}");
    }
    relay.stop();
    drop(conns);
    drop(tb);
    assert_no_leftovers(prefix);
}
