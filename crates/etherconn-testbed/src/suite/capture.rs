//! The relay's capture (`with_capture`) over a veth pair, read back by tshark.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{Tpid, VlanTag};
use etherconn_relay::{CaptureConfig, EtherConn, EtherConnConfig};

use super::common::{assert_no_leftovers, conn, mac, open_in, quiet, tag, wait_stats, Backend, X};
use super::peers::{specs, Scapy, Spec};
use crate::{tshark_fields, Side, Testbed};

/// The scapy peer's MAC.
const PEER: &str = "02:aa:00:00:00:01";

/// A UDP frame from the relay's endpoint `X` to the peer, with source port `sport`.
fn udp_frame(vlans: &[VlanTag], sport: u16) -> Vec<u8> {
    let mut buf = vec![0u8; 1600];
    let src: SocketAddr = format!("10.88.0.2:{sport}").parse().unwrap();
    let dst: SocketAddr = "10.88.0.1:9000".parse().unwrap();
    let frame = UdpFrame {
        src_mac: mac(X),
        dst_mac: mac(PEER),
        vlans,
        src,
        dst,
        ttl: 64,
        dscp: 0,
        payload: b"from the relay",
    };
    let n = build_udp_frame(&mut buf, &frame).unwrap();
    buf.truncate(n);
    buf
}

/// Seconds since the Unix epoch.
fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Frames scapy sent to registered endpoints (untagged, 802.1Q, QinQ with 0x88a8 and 0x9100
/// outer tags, three tags) are in the file as they were on the wire, whatever the kernel did
/// with the outer tag; frames the relay sent (single and batch path) are in it too, marked
/// outbound; the count equals the relay's counters; addresses, VLAN ids, TPIDs, checksums,
/// lengths and times are what was sent. A frame to an endpoint nobody registered is in the file
/// exactly when the relay is offered it ([`Backend::sees_unregistered`]).
pub fn capture_holds_what_was_on_the_wire_both_ways(backend: &Backend) {
    let prefix = &backend.prefix("cap");
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let file = std::env::temp_dir().join(format!(
        "etherconn-{}-capture-veth-{}.pcapng",
        backend.tag,
        std::process::id()
    ));
    // Captured from the first frame on: the capture is there before the receive thread starts.
    let capture = CaptureConfig::file(&file).interface_name(&tb.b_if);
    let open = backend.open_with_capture;
    let relay = open_in(&tb, Side::B, move |ifname| open(ifname, capture));
    let started = SystemTime::now();

    // (source port, tags as (TPID, id), outermost first).
    let received: [(u16, &[(u16, u16)]); 5] = [
        (1000, &[]),
        (1100, &[(0x8100, 100)]),
        (1200, &[(0x88a8, 200), (0x8100, 100)]),
        (1300, &[(0x9100, 300), (0x8100, 100)]),
        (1400, &[(0x88a8, 200), (0x8100, 100), (0x8100, 10)]),
    ];
    // The endpoint on each of those VLAN stacks: a relay that is offered only registered
    // frames (the AF_XDP relay's program leaves the rest to the host) gets them all.
    let conns: Vec<EtherConn> = received
        .iter()
        .map(|(_, t)| {
            let vlans: Vec<VlanTag> = t
                .iter()
                .map(|(tpid, id)| tag(Tpid::new(*tpid).unwrap(), *id))
                .collect();
            conn(&relay, mac(X), &vlans, EtherConnConfig::default())
        })
        .collect();
    // To an endpoint nobody registered: in the file only where the relay is offered it.
    const UNREGISTERED_PORT: u16 = 1500;
    let mut frames: Vec<Spec> = received
        .iter()
        .map(|(p, t)| Spec::udp4(X, *p, "from scapy").tags(t))
        .collect();
    frames.push(Spec::udp4(
        "02:ec:00:00:09:09",
        UNREGISTERED_PORT,
        "from scapy",
    ));
    let mut scapy = Scapy::start(&tb);
    scapy.send(&specs(&frames));
    drop(scapy);

    let sent: [(u16, Vec<VlanTag>); 5] = [
        (2000, vec![]),
        (2100, vec![tag(Tpid::DOT1Q, 100)]),
        (2200, vec![tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 100)]),
        (
            2300,
            vec![tag(Tpid::QINQ_LEGACY, 300), tag(Tpid::DOT1Q, 4094)],
        ),
        (
            2400,
            vec![
                tag(Tpid::QINQ_LEGACY, 300),
                tag(Tpid::QINQ, 200),
                tag(Tpid::DOT1Q, 4094),
            ],
        ),
    ];
    let frames: Vec<Vec<u8>> = sent.iter().map(|(p, v)| udp_frame(v, *p)).collect();
    relay.send(&frames[0], None).unwrap();
    let rest: Vec<&[u8]> = frames[1..].iter().map(Vec::as_slice).collect();
    assert_eq!(relay.send_batch(&rest, None).unwrap(), 4);

    let offered = received.len() as u64 + u64::from(backend.sees_unregistered);
    wait_stats(&relay, "the scapy frames offered", |s| {
        s.rx_offered >= offered
    });
    relay.stop();
    drop(conns);
    let st = relay.stats();
    assert_eq!(st.rx_offered, offered, "{st}");
    assert_eq!(st.tx, 5, "{st}");
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
            "frame.time_epoch",
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
            "outer TPID, as on the wire: {r:?}"
        );
        let ids = |ad: bool| -> Vec<String> {
            tags.iter()
                .filter(|t| (t.0 == 0x88a8) == ad)
                .map(|t| t.1.to_string())
                .collect()
        };
        assert_eq!(r[5], ids(false).join(","), "802.1Q/0x9100 ids: {r:?}");
        assert_eq!(r[6], ids(true).join(","), "802.1ad ids: {r:?}");
        if tags.len() >= 2 && tags[0].0 != 0x88a8 {
            assert!(r[7].starts_with(&format!("0x{:04x}", tags[1].0)), "{r:?}");
        }
        assert_eq!(
            (r[8].as_str(), r[9].as_str()),
            ("1", "1"),
            "checksums good: {r:?}"
        );
    };
    for (port, tags) in received {
        check(row(port), "0x00000001", tags, PEER, X);
    }
    let unregistered = rows.iter().any(|r| r[1] == UNREGISTERED_PORT.to_string());
    assert_eq!(
        unregistered, backend.sees_unregistered,
        "the frame to nobody's endpoint is in the file exactly when offered: {rows:?}"
    );
    if unregistered {
        check(
            row(UNREGISTERED_PORT),
            "0x00000001",
            &[],
            PEER,
            "02:ec:00:00:09:09",
        );
    }
    for ((port, vlans), f) in sent.iter().zip(&frames) {
        let r = row(*port);
        let tags: Vec<(u16, u16)> = vlans.iter().map(|t| (t.tpid.get(), t.id.get())).collect();
        check(r, "0x00000002", &tags, X, PEER);
        assert_eq!(r[10], f.len().to_string(), "{r:?}");
    }
    // Receive times are the backend's, send times the relay's: all within the run.
    let (from, to) = (epoch_secs(started) - 1.0, epoch_secs(SystemTime::now()));
    for r in &rows {
        let t: f64 = r[11].parse().unwrap_or_else(|e| panic!("{r:?}: {e}"));
        assert!(from <= t && t <= to, "time {t} outside {from}..{to}: {r:?}");
    }
    drop(tb);
    assert_no_leftovers(prefix);
}
