//! The AF_XDP relay's capture over a veth pair, read back by tshark: frames scapy sent
//! (untagged, 802.1Q, QinQ with 0x88a8 and 0x9100 outer tags) to registered endpoints are in
//! the file as they were on the wire (an AF_XDP frame keeps its tags in place); frames the
//! relay sent through its send ring are in it too, marked outbound; the count equals the
//! relay's counters; addresses, VLAN ids, TPIDs and checksums are what was sent.
//!
//! Only frames the XDP program redirects reach the relay, so the endpoint the scapy frames
//! are addressed to is registered on each of their VLAN stacks; a frame to an endpoint nobody
//! registered stays with the host and is not in the file (also checked).
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{Tpid, VlanId, VlanTag};
use etherconn_relay::{CaptureConfig, EtherConn, EtherConnConfig, PacketRelay};
use etherconn_testbed::suite::peers_dir;
use etherconn_testbed::{tshark_fields, Side, Testbed};
use etherconn_xdp::{XdpRelay, XdpRelayConfig};

fn tag(tpid: Tpid, id: u16) -> VlanTag {
    VlanTag::new(tpid, VlanId::new(id).unwrap())
}

fn udp_frame(vlans: &[VlanTag], sport: u16) -> Vec<u8> {
    let mut buf = vec![0u8; 1600];
    let src: SocketAddr = format!("10.88.0.2:{sport}").parse().unwrap();
    let dst: SocketAddr = "10.88.0.1:9000".parse().unwrap();
    let n = build_udp_frame(
        &mut buf,
        &UdpFrame {
            src_mac: "02:ec:00:00:01:01".parse().unwrap(),
            dst_mac: "02:aa:00:00:00:01".parse().unwrap(),
            vlans,
            src,
            dst,
            ttl: 64,
            dscp: 0,
            payload: b"from the relay",
        },
    )
    .unwrap();
    buf.truncate(n);
    buf
}

/// One scapy frame spec (see `tests/peers/send_frames.py`) as JSON.
fn spec(sport: u16, tags: &[(u16, u16)]) -> String {
    spec_to("02:ec:00:00:01:01", sport, tags)
}

fn spec_to(dst: &str, sport: u16, tags: &[(u16, u16)]) -> String {
    let tags: Vec<String> = tags.iter().map(|(t, id)| format!("[{t},{id},0]")).collect();
    format!(
        r#"{{"dst":"{dst}","src":"02:aa:00:00:00:01","ipsrc":"10.88.0.1","ipdst":"10.88.0.2","sport":{sport},"dport":7000,"payload":"from scapy","tags":[{}]}}"#,
        tags.join(",")
    )
}

#[test]
fn capture_holds_what_was_on_the_wire_both_ways() {
    if !etherconn_testbed::require_root("capture_holds_what_was_on_the_wire_both_ways") {
        return;
    }
    let prefix = "ecxcap-";
    let tb = Testbed::new(prefix).unwrap();
    for side in [Side::A, Side::B] {
        let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
        tb.set_sysctl(side, &key, "1").unwrap();
    }
    let file = std::env::temp_dir().join(format!(
        "etherconn-capture-veth-{}.pcapng",
        std::process::id()
    ));
    // Captured from the first frame on: the capture is there before the receive thread starts.
    let capture = CaptureConfig::file(&file).interface_name(&tb.b_if);
    let relay: Arc<XdpRelay> =
        tb.b.run_in(|| XdpRelay::with_capture(&tb.b_if, XdpRelayConfig::default(), capture))
            .unwrap()
            .unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();

    // (source port, tags as (TPID, id), outermost first).
    let received: [(u16, &[(u16, u16)]); 4] = [
        (1000, &[]),
        (1100, &[(0x8100, 100)]),
        (1200, &[(0x88a8, 200), (0x8100, 100)]),
        (1300, &[(0x9100, 300), (0x8100, 100)]),
    ];
    // The endpoint on each of those VLAN stacks, so that the program redirects its frames.
    let conns: Vec<EtherConn> = received
        .iter()
        .map(|(_, t)| {
            let vlans: Vec<VlanTag> = t
                .iter()
                .map(|(tpid, id)| tag(Tpid::new(*tpid).unwrap(), *id))
                .collect();
            EtherConn::new(
                dyn_relay.clone(),
                "02:ec:00:00:01:01".parse().unwrap(),
                &vlans,
                EtherConnConfig::default(),
            )
            .unwrap()
        })
        .collect();
    let mut specs: Vec<String> = received.iter().map(|(p, t)| spec(*p, t)).collect();
    // To an endpoint nobody registered: the host's, never the relay's.
    specs.push(spec_to("02:ec:00:00:09:09", 1400, &[]));
    let json = format!("[{}]", specs.join(","));
    let peers = peers_dir();
    let status =
        tb.a.command("python3")
            .arg(peers.join("send_frames.py"))
            .arg(&tb.a_if)
            .arg(&json)
            .status()
            .expect("run send_frames.py");
    assert!(status.success(), "send_frames.py failed");

    let sent: [(u16, Vec<VlanTag>); 4] = [
        (2000, vec![]),
        (2100, vec![tag(Tpid::DOT1Q, 100)]),
        (2200, vec![tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 100)]),
        (
            2300,
            vec![tag(Tpid::QINQ_LEGACY, 300), tag(Tpid::DOT1Q, 4094)],
        ),
    ];
    let frames: Vec<Vec<u8>> = sent.iter().map(|(p, v)| udp_frame(v, *p)).collect();
    relay.send(&frames[0], None).unwrap();
    let rest: Vec<&[u8]> = frames[1..].iter().map(Vec::as_slice).collect();
    assert_eq!(relay.send_batch(&rest, None).unwrap(), 3);

    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.stats().rx_offered < 4 {
        assert!(Instant::now() < deadline, "{}", relay.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    relay.stop();
    drop(conns);
    let st = relay.stats();
    assert_eq!(
        st.rx_offered, 4,
        "only the registered endpoints' frames: {st}"
    );
    assert_eq!(st.tx, 4, "{st}");
    assert_eq!(st.captured, st.tx + st.rx_offered, "{st}");
    assert_eq!(st.capture_dropped, 0, "{st}");

    let rows = tshark_fields(
        &file,
        &[
            "frame.packet_flags_direction",
            "udp.srcport",
            "eth.src",
            "eth.dst",
            "eth.type",
            "vlan.id",
            "ieee8021ad.id",
            "vlan.etype",
            "ip.checksum.status",
            "udp.checksum.status",
            "frame.len",
        ],
    )
    .unwrap();
    let _ = std::fs::remove_file(&file);
    assert_eq!(rows.len() as u64, st.tx + st.rx_offered, "{rows:?}");
    let row = |port: u16| {
        rows.iter()
            .find(|r| r[1] == port.to_string())
            .unwrap_or_else(|| panic!("no frame from port {port} in {rows:?}"))
    };
    // What the tags look like to tshark: the outer TPID is eth.type; 0x8100 and 0x9100 tags
    // are "vlan", 0x88a8 ones "ieee8021ad"; an outer "vlan" tag's next type is vlan.etype.
    let check = |r: &Vec<String>, dir: &str, tags: &[(u16, u16)], src: &str, dst: &str| {
        assert_eq!(r[0], dir, "{r:?}");
        assert_eq!((r[2].as_str(), r[3].as_str()), (src, dst), "{r:?}");
        let outer = tags.first().map_or(0x0800, |t| t.0);
        assert_eq!(
            r[4],
            format!("0x{outer:04x}"),
            "outer TPID, put back: {r:?}"
        );
        let ad: Vec<String> = tags
            .iter()
            .filter(|t| t.0 == 0x88a8)
            .map(|t| t.1.to_string())
            .collect();
        let vlan: Vec<String> = tags
            .iter()
            .filter(|t| t.0 != 0x88a8)
            .map(|t| t.1.to_string())
            .collect();
        assert_eq!(r[5], vlan.join(","), "802.1Q/0x9100 ids: {r:?}");
        assert_eq!(r[6], ad.join(","), "802.1ad ids: {r:?}");
        if tags.len() == 2 && tags[0].0 != 0x88a8 {
            assert!(r[7].starts_with(&format!("0x{:04x}", tags[1].0)), "{r:?}");
        }
        assert_eq!(
            (r[8].as_str(), r[9].as_str()),
            ("1", "1"),
            "checksums good: {r:?}"
        );
    };
    for (port, tags) in received {
        let r = row(port);
        check(
            r,
            "0x00000001",
            tags,
            "02:aa:00:00:00:01",
            "02:ec:00:00:01:01",
        );
    }
    for ((port, vlans), f) in sent.iter().zip(&frames) {
        let r = row(*port);
        let tags: Vec<(u16, u16)> = vlans.iter().map(|t| (t.tpid.get(), t.id.get())).collect();
        check(
            r,
            "0x00000002",
            &tags,
            "02:ec:00:00:01:01",
            "02:aa:00:00:00:01",
        );
        assert_eq!(r[10], f.len().to_string(), "{r:?}");
    }
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
