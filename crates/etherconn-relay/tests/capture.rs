//! A relay's capture, read back by tshark: every frame sent and received is in the file, with
//! its direction, a nanosecond timestamp, its VLAN tags (QinQ included), addresses and
//! checksums as sent; only the chosen endpoints' frames when asked; a writer that cannot keep
//! up drops and counts, and the file stays readable.
//!
//! On the loopback relay (every frame sent is also received); the peer suite's capture case
//! (`etherconn_testbed::suite`) checks the same over a veth pair with offloaded VLAN tags, for
//! every backend.
//! Without tshark each test prints a skip line and passes, unless `CI` is set.
#![cfg(target_os = "linux")]

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::key::VlanIds;
use etherconn_core::wire::{MacAddr, Tpid, VlanId, VlanTag};
use etherconn_relay::{
    CaptureConfig, CaptureEndpoint, CaptureError, DispatcherConfig, LoopbackRelay, PacketRelay,
};
use etherconn_testbed::{tshark_available, tshark_fields};

fn have_tshark(test: &str) -> bool {
    if tshark_available() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: tshark is not installed (scripts/setup-debian.sh installs it)"
    );
    eprintln!("skipping {test}: tshark is not installed");
    false
}

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!(
            "etherconn-capture-{}-{name}.pcapng",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&p);
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tag(tpid: Tpid, id: u16) -> VlanTag {
    VlanTag::new(tpid, VlanId::new(id).unwrap())
}

fn udp_frame(src_mac: MacAddr, vlans: &[VlanTag], sport: u16, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 1600];
    let src: SocketAddr = format!("10.77.0.1:{sport}").parse().unwrap();
    let dst: SocketAddr = "10.77.0.2:7000".parse().unwrap();
    let n = build_udp_frame(
        &mut buf,
        &UdpFrame {
            src_mac,
            dst_mac: MacAddr([0x02, 0xbb, 0, 0, 0, 2]),
            vlans,
            src,
            dst,
            ttl: 64,
            dscp: 0,
            payload,
        },
    )
    .unwrap();
    buf.truncate(n);
    buf
}

const A: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 1]);
const B: MacAddr = MacAddr([0x02, 0xaa, 0, 0, 0, 9]);

const FIELDS: &[&str] = &[
    "frame.packet_flags_direction",
    "frame.time_epoch",
    "frame.len",
    "eth.src",
    "eth.dst",
    "eth.type",
    "vlan.id",
    "ieee8021ad.id",
    "vlan.etype",
    "ip.src",
    "ip.dst",
    "udp.srcport",
    "ip.checksum.status",
    "udp.checksum.status",
];

fn epoch_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

#[test]
fn every_frame_sent_and_received_is_in_the_file() {
    if !have_tshark("every_frame_sent_and_received_is_in_the_file") {
        return;
    }
    let file = TempFile::new("all");
    let relay = LoopbackRelay::new(DispatcherConfig::default());
    relay
        .dispatcher()
        .start_capture(CaptureConfig::file(&file.0).interface_name("lo-test"))
        .unwrap();
    let before = epoch_now();
    // (VLAN stack, UDP source port) of each kind of frame; 10 of each.
    let kinds: [(Vec<VlanTag>, u16); 4] = [
        (vec![], 1000),
        (vec![tag(Tpid::DOT1Q, 100)], 1100),
        (vec![tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 100)], 1200),
        (
            vec![tag(Tpid::QINQ_LEGACY, 300), tag(Tpid::DOT1Q, 4094)],
            1300,
        ),
    ];
    let mut sent = Vec::new();
    for i in 0..10 {
        for (vlans, port) in &kinds {
            let f = udp_frame(A, vlans, *port, format!("frame {i}").as_bytes());
            relay.send(&f, None).unwrap();
            sent.push(f);
        }
    }
    relay.stop();
    let after = epoch_now();
    let st = relay.stats();
    assert_eq!((st.tx, st.rx_offered), (40, 40), "{st}");
    assert_eq!((st.captured, st.capture_dropped), (80, 0), "{st}");

    let rows = tshark_fields(&file.0, FIELDS).unwrap();
    assert_eq!(
        rows.len() as u64,
        st.tx + st.rx_offered,
        "one frame per count"
    );
    // The loopback relay records each frame leaving, then arriving.
    for (i, pair) in rows.chunks(2).enumerate() {
        assert_eq!(pair[0][0], "0x00000002", "frame {}: outbound", 2 * i + 1);
        assert_eq!(pair[1][0], "0x00000001", "frame {}: inbound", 2 * i + 2);
        assert_eq!(pair[0][1..], pair[1][1..], "the same frame both ways");
    }
    for (row, f) in rows.iter().step_by(2).zip(&sent) {
        let (vlans, port) = kinds.iter().find(|k| k.1.to_string() == row[11]).unwrap();
        // Nanosecond timestamps: nine decimals, within the run.
        let (secs, frac) = row[1].split_once('.').unwrap();
        assert_eq!(frac.len(), 9, "{row:?}");
        let ts = Duration::new(secs.parse().unwrap(), frac.parse().unwrap());
        assert!(before <= ts && ts <= after, "{row:?}");
        assert_eq!(row[2], f.len().to_string());
        assert_eq!(row[3], "02:aa:00:00:00:01");
        assert_eq!(row[4], "02:bb:00:00:00:02");
        let tpids: Vec<String> = vlans
            .iter()
            .map(|t| format!("0x{:04x}", t.tpid.get()))
            .collect();
        if let Some(outer) = tpids.first() {
            assert_eq!(&row[5], outer, "outer TPID: {row:?}");
        } else {
            assert_eq!(row[5], "0x0800", "{row:?}");
        }
        // tshark names 0x8100 tags "vlan" and 0x88a8 ones "ieee8021ad"; 0x9100 is "vlan" too.
        let ids: Vec<String> = vlans.iter().map(|t| t.id.get().to_string()).collect();
        let mut got_ids: Vec<String> = Vec::new();
        for col in [6, 7] {
            got_ids.extend(
                row[col]
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        got_ids.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got_ids, want, "VLAN ids: {row:?}");
        if vlans.len() == 2 {
            // The inner tag's TPID: tshark decodes a tag as "vlan" (802.1Q) only when the
            // type before it is 0x8100, and gives an outer "vlan" tag's next type.
            assert_eq!(vlans[1].tpid, Tpid::DOT1Q);
            assert_eq!(
                row[6].split(',').next_back(),
                Some(ids[1].as_str()),
                "{row:?}"
            );
            if vlans[0].tpid != Tpid::QINQ {
                assert!(row[8].starts_with("0x8100"), "{row:?}");
            }
        }
        assert_eq!(
            (row[9].as_str(), row[10].as_str()),
            ("10.77.0.1", "10.77.0.2")
        );
        assert_eq!(row[11], port.to_string());
        assert_eq!(
            (row[12].as_str(), row[13].as_str()),
            ("1", "1"),
            "checksums good: {row:?}"
        );
    }
}

#[test]
fn only_the_chosen_endpoints_are_captured() {
    if !have_tshark("only_the_chosen_endpoints_are_captured") {
        return;
    }
    let file = TempFile::new("endpoints");
    let relay = LoopbackRelay::new(DispatcherConfig::default());
    let v100 = [tag(Tpid::DOT1Q, 100)];
    let chosen = CaptureEndpoint::new(A, VlanIds::from_tags(&v100).unwrap());
    relay
        .dispatcher()
        .start_capture(CaptureConfig::file(&file.0).endpoints([chosen]))
        .unwrap();
    for i in 0..5u16 {
        relay
            .send(&udp_frame(A, &v100, 2000 + i, b"kept"), None)
            .unwrap();
        // Same MAC, other VLAN; other MAC, same VLAN; untagged: none is the chosen endpoint.
        relay
            .send(&udp_frame(A, &[tag(Tpid::DOT1Q, 101)], 3000, b"x"), None)
            .unwrap();
        relay.send(&udp_frame(B, &v100, 3001, b"x"), None).unwrap();
        relay.send(&udp_frame(A, &[], 3002, b"x"), None).unwrap();
    }
    relay.stop();
    let st = relay.stats();
    assert_eq!(
        (st.tx, st.captured, st.capture_dropped),
        (20, 10, 0),
        "{st}"
    );
    let rows = tshark_fields(&file.0, &["udp.srcport", "vlan.id", "eth.src"]).unwrap();
    assert_eq!(rows.len(), 10);
    for r in &rows {
        assert!(r[0].starts_with("200"), "{r:?}");
        assert_eq!((r[1].as_str(), r[2].as_str()), ("100", "02:aa:00:00:00:01"));
    }
}

/// A sink slower than any relay: each write waits a millisecond.
struct Slow(std::fs::File);

impl Write for Slow {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std::thread::sleep(Duration::from_millis(1));
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[test]
fn a_writer_that_cannot_keep_up_drops_counts_and_leaves_a_valid_file() {
    if !have_tshark("a_writer_that_cannot_keep_up_drops_counts_and_leaves_a_valid_file") {
        return;
    }
    let file = TempFile::new("slow");
    let relay = LoopbackRelay::new(DispatcherConfig::default());
    let sink = Slow(std::fs::File::create(&file.0).unwrap());
    relay
        .dispatcher()
        .start_capture(CaptureConfig::writer(sink).slots(16))
        .unwrap();
    let f = udp_frame(A, &[tag(Tpid::DOT1Q, 7)], 4000, b"flood");
    for _ in 0..5000 {
        relay.send(&f, None).unwrap();
    }
    let st = relay.stats();
    assert_eq!(st.tx, 5000);
    assert_eq!(
        st.captured + st.capture_dropped,
        st.tx + st.rx_offered,
        "{st}"
    );
    assert!(st.capture_dropped > 0, "the slow writer fell behind: {st}");
    let closed = relay.dispatcher().close_capture().unwrap().unwrap();
    assert_eq!(
        closed.written, st.captured,
        "everything taken is written on close"
    );
    let rows = tshark_fields(&file.0, &["frame.packet_flags_direction", "vlan.id"]).unwrap();
    assert_eq!(rows.len() as u64, st.captured, "{st}");
    assert!(rows.iter().all(|r| r[1] == "7"), "every frame whole");
    relay.stop();
}

#[test]
fn a_capture_that_cannot_be_created_is_refused_at_start() {
    let relay = LoopbackRelay::new(DispatcherConfig::default());
    let d = relay.dispatcher();
    let bad = std::env::temp_dir().join("no-such-directory-etherconn/x.pcapng");
    match d.start_capture(CaptureConfig::file(&bad)) {
        Err(CaptureError::Create { path, .. }) => assert_eq!(path, bad),
        other => panic!("{other:?}"),
    }
    assert!(d.capture().is_none());
    // One capture per relay.
    let file = TempFile::new("twice");
    d.start_capture(CaptureConfig::file(&file.0)).unwrap();
    assert!(matches!(
        d.start_capture(CaptureConfig::file(&file.0)),
        Err(CaptureError::AlreadyCapturing)
    ));
    relay.stop();
    assert!(matches!(
        LoopbackRelay::new(DispatcherConfig::default())
            .dispatcher()
            .start_capture(CaptureConfig::writer(io::sink()))
            .map(|_| ()),
        Ok(())
    ));
    let stopped = LoopbackRelay::new(DispatcherConfig::default());
    stopped.stop();
    assert!(matches!(
        stopped
            .dispatcher()
            .start_capture(CaptureConfig::writer(io::sink())),
        Err(CaptureError::Stopped)
    ));
    let _: Arc<dyn PacketRelay> = relay;
}
