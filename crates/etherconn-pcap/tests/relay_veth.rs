//! `PcapRelay` over a veth pair between two network namespaces: the relay peer suite every
//! backend runs (`etherconn_testbed::suite`: kernel UDP v4/v6, scapy VLAN/QinQ ingress, tshark
//! egress, hostile frames, stop wakes readers), then what is the pcap relay's own: typed open
//! errors, tags the kernel moved out put back by libpcap, and the send path under a batch.
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::sync::Arc;

use etherconn_core::bpf::{Instruction, Program, BPF_ABS, BPF_H, BPF_LD};
use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{EtherType, Tpid, VlanTag};
use etherconn_pcap::{Error, PcapRelay, PcapRelayConfig};
use etherconn_relay::{EtherConnConfig, PacketRelay};
use etherconn_testbed::suite::{
    assert_no_leftovers, conn, mac, quiet, specs, tag, udp_payload, wait_stats, Backend,
    EtherTypeFilter, Events, Oversize, Scapy, Spec, ET, WAIT, X,
};
use etherconn_testbed::Testbed;

fn open(ifname: &str) -> Arc<dyn PacketRelay> {
    PcapRelay::new(ifname, PcapRelayConfig::default()).unwrap()
}

fn open_with_ethertypes(ifname: &str, ethertypes: &[EtherType]) -> Arc<dyn PacketRelay> {
    PcapRelay::new(ifname, PcapRelayConfig::default().ethertypes(ethertypes)).unwrap()
}

etherconn_testbed::relay_peer_suite!(Backend {
    tag: "pc",
    open,
    // libpcap does not pass on the kernel's checksum status.
    sees_partial_checksums: false,
    // It sees every frame its filter passes.
    sees_unregistered: true,
    open_with_capture: |ifname, capture| {
        PcapRelay::with_capture(ifname, PcapRelayConfig::default(), capture).unwrap()
    },
    ethertype_filter: Some(EtherTypeFilter {
        open_with_ethertypes,
        open_with_program: |ifname, program| {
            PcapRelay::new(ifname, PcapRelayConfig::default().filter(program)).unwrap()
        },
    }),
    // libpcap words the kernel's EMSGSIZE itself.
    oversize: Oversize::KernelWords("Message too long"),
    events: Events {
        name: "libpcap relay",
        open: |ifname| open_with_ethertypes(ifname, &[ET]),
        opened: &[
            ("buffer_size", "4194304"),
            ("snaplen", "2048"),
            ("filter", "ethertypes"),
        ],
        attached: ("libpcap relay: capture filter attached", "instructions"),
    },
});

#[test]
fn open_errors_are_typed() {
    if !etherconn_testbed::require_root("open_errors_are_typed") {
        return;
    }
    let prefix = "ecpc-oer-";
    let tb = Testbed::new(prefix).unwrap();
    let r =
        tb.b.run_in(|| PcapRelay::new("doesnotexist0", PcapRelayConfig::default()))
            .unwrap();
    assert!(
        matches!(&r, Err(Error::NoSuchDevice { name }) if name == "doesnotexist0"),
        "{r:?}"
    );
    tb.b.ip(&["link", "set", &tb.b_if, "down"]).unwrap();
    let r =
        tb.b.run_in(|| PcapRelay::new(&tb.b_if, PcapRelayConfig::default()))
            .unwrap();
    assert!(
        matches!(&r, Err(Error::DeviceDown { name }) if *name == tb.b_if),
        "{r:?}"
    );
    tb.b.ip(&["link", "set", &tb.b_if, "up"]).unwrap();

    // Without CAP_NET_RAW: this test binary again, as nobody with no capabilities.
    let r = unprivileged_open(&tb);
    assert!(
        r.contains("PermissionDenied") && r.contains(&tb.b_if),
        "unprivileged open: {r}"
    );

    // libpcap's "any" device carries Linux cooked headers, not Ethernet frames.
    let r =
        tb.b.run_in(|| PcapRelay::new("any", PcapRelayConfig::default()))
            .unwrap();
    assert!(
        matches!(&r, Err(Error::NotEthernet { name, .. }) if name == "any"),
        "{r:?}"
    );

    // A program that does not end with a return: libpcap refuses it before the kernel could.
    let bad = Program::from_instructions(vec![Instruction::stmt(BPF_LD | BPF_H | BPF_ABS, 12)]);
    let r =
        tb.b.run_in(|| PcapRelay::new(&tb.b_if, PcapRelayConfig::default().filter(bad)))
            .unwrap();
    assert!(
        matches!(
            &r,
            Err(Error::FilterRejected {
                instructions: 1,
                ..
            })
        ),
        "{r:?}"
    );
    drop(tb);
    assert_no_leftovers(prefix);
}

const PROBE_ENV: &str = "ETHERCONN_PCAP_PROBE_IF";

/// Runs [`unprivileged_open_probe`] in a child process of this test binary, in namespace `b`,
/// as user nobody with every capability dropped (`setpriv`), and returns what it printed.
/// The binary is copied to a world-readable temporary file first: the build directory may not
/// be reachable for nobody.
fn unprivileged_open(tb: &Testbed) -> String {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().unwrap();
    let dir = std::env::temp_dir().join(format!("etherconn-pcap-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.join("probe");
    std::fs::copy(&exe, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out =
        tb.b.command("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ])
            .arg(&copy)
            .args([
                "--exact",
                "unprivileged_open_probe",
                "--ignored",
                "--nocapture",
            ])
            .env(PROBE_ENV, &tb.b_if)
            .output()
            .expect("run setpriv");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("PROBE: "))
        .unwrap_or_else(|| {
            panic!(
                "no probe line: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_owned()
}

/// The child side of [`unprivileged_open`]; does nothing without its environment variable.
#[test]
#[ignore = "run by open_errors_are_typed, as an unprivileged child process"]
fn unprivileged_open_probe() {
    let Some(ifname) = std::env::var_os(PROBE_ENV) else {
        return;
    };
    let r = PcapRelay::new(ifname.to_str().unwrap(), PcapRelayConfig::default());
    println!("PROBE: {:?}", r.map(|_| "opened"));
}

/// libpcap on Linux puts back the tag the kernel moved out of the frame (veth, like most
/// drivers, has the kernel untag 802.1Q and 802.1ad frames before a packet socket sees them):
/// frames from scapy with an 802.1ad + 802.1Q stack, PCP and DEI set, reach the conn byte for
/// byte as sent, and a single 802.1Q tag likewise.
#[test]
fn moved_out_tags_are_put_back_byte_for_byte() {
    if !etherconn_testbed::require_root("moved_out_tags_are_put_back_byte_for_byte") {
        return;
    }
    let prefix = "ecpc-tag-";
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let et = EtherType(0x88b5);
    let relay: Arc<dyn PacketRelay> =
        tb.b.run_in(|| PcapRelay::new(&tb.b_if, PcapRelayConfig::default().ethertypes(&[et])))
            .unwrap()
            .unwrap();
    let cfg = || EtherConnConfig::default().ethertypes(&[et]);
    let x = mac(X);
    let qinq = conn(
        &relay,
        x,
        &[tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 100)],
        cfg(),
    );
    let dot1q = conn(&relay, x, &[tag(Tpid::DOT1Q, 300)], cfg());
    let x_hex = X.replace(':', "");
    let payload = "00".repeat(46);
    // Outer 802.1ad: PCP 5, DEI 1, VID 200 (0xb0c8); inner 802.1Q: PCP 3, VID 100 (0x6064).
    let qinq_hex = format!("{x_hex}02aa0000000188a8b0c881006064{:04x}{payload}", et.0);
    // 802.1Q: PCP 7, VID 300 (0xe12c).
    let dot1q_hex = format!("{x_hex}02aa000000018100e12c{:04x}{payload}", et.0);
    let mut scapy = Scapy::start(&tb);
    scapy.send(&specs(&[
        Spec(vec![]).s("raw", &qinq_hex),
        Spec(vec![]).s("raw", &dot1q_hex),
    ]));
    for (c, hex) in [(&qinq, &qinq_hex), (&dot1q, &dot1q_hex)] {
        let rx = c.recv_frame().unwrap();
        let got: String = rx.frame().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&got, hex);
        assert_eq!(c.queued(), 0);
    }
    drop(scapy);
    relay.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}

/// One pcap relay sends 1,280 UDP frames for 64 endpoints (half behind VLAN 100) with
/// `send_batch`; another receives them: each reaches exactly its conn, once, and the counters
/// of both agree.
#[test]
fn batch_send_to_another_pcap_relay_delivers_each_frame_once() {
    if !etherconn_testbed::require_root("batch_send_to_another_pcap_relay_delivers_each_frame_once")
    {
        return;
    }
    const ENDPOINTS: u16 = 64;
    const PER_ENDPOINT: u16 = 20;
    let prefix = "ecpc-bat-";
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let rx_relay: Arc<dyn PacketRelay> =
        tb.b.run_in(|| PcapRelay::new(&tb.b_if, PcapRelayConfig::default()))
            .unwrap()
            .unwrap();
    let tx_relay: Arc<dyn PacketRelay> =
        tb.a.run_in(|| PcapRelay::new(&tb.a_if, PcapRelayConfig::default()))
            .unwrap()
            .unwrap();
    let base = mac("02:ec:f0:00:00:00");
    let v100 = [VlanTag::dot1q(100).unwrap()];
    let vlans_of = |i: u16| -> &[VlanTag] {
        if i % 2 == 0 {
            &[]
        } else {
            &v100
        }
    };
    let conns: Vec<_> = (0..ENDPOINTS)
        .map(|i| {
            conn(
                &rx_relay,
                base.offset(u64::from(i)),
                vlans_of(i),
                EtherConnConfig::default().queue_depth(usize::from(PER_ENDPOINT) * 2),
            )
        })
        .collect();
    let mut frames = Vec::new();
    for round in 0..PER_ENDPOINT {
        for i in 0..ENDPOINTS {
            let payload = [i.to_be_bytes(), round.to_be_bytes()].concat();
            let f = UdpFrame {
                src_mac: mac("02:ec:f1:00:00:01"),
                dst_mac: base.offset(u64::from(i)),
                vlans: vlans_of(i),
                src: "10.79.0.1:7000".parse().unwrap(),
                dst: SocketAddr::new(format!("10.79.1.{}", i + 1).parse().unwrap(), 9000 + i),
                ttl: 64,
                dscp: 0,
                payload: &payload,
            };
            let mut buf = vec![0u8; 128];
            let len = build_udp_frame(&mut buf, &f).unwrap();
            buf.truncate(len);
            frames.push(buf);
        }
    }
    for chunk in frames.chunks(32) {
        let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
        let mut sent = 0;
        while sent < refs.len() {
            sent += tx_relay.send_batch(&refs[sent..], Some(WAIT)).unwrap();
        }
    }
    let total = u64::from(ENDPOINTS) * u64::from(PER_ENDPOINT);
    assert_eq!(tx_relay.stats().tx, total);
    for (i, c) in conns.iter().enumerate() {
        let mut rounds = Vec::new();
        for _ in 0..PER_ENDPOINT {
            let rx = c.recv_frame().unwrap();
            let p = udp_payload(&rx);
            assert_eq!(
                u16::from_be_bytes([p[0], p[1]]),
                i as u16,
                "frame for another conn"
            );
            rounds.push(u16::from_be_bytes([p[2], p[3]]));
            assert_eq!(rx.info.vlans().as_slice().len(), i % 2);
        }
        rounds.sort_unstable();
        assert_eq!(
            rounds,
            (0..PER_ENDPOINT).collect::<Vec<_>>(),
            "endpoint {i}"
        );
        assert_eq!(c.queued(), 0, "endpoint {i}: no duplicate");
    }
    let st = wait_stats(&rx_relay, "all delivered", |s| s.rx_delivered == total);
    assert_eq!(st.rx_offered, total, "{st}");
    assert_eq!(
        st.rx_invalid + st.rx_miss + st.rx_queue_full + st.rx_backend_dropped,
        0,
        "{st}"
    );
    // The sender's own frames are not captured back by its receive handle.
    let ts = tx_relay.stats();
    assert_eq!(ts.rx_offered, 0, "{ts}");
    rx_relay.stop();
    tx_relay.stop();
    drop(conns);
    drop(tb);
    assert_no_leftovers(prefix);
}

/// libpcap filters the frames that reach its buffer before the filter is in the kernel with
/// its own interpreter (on Linux it drains them right after `pcap_setfilter`): the first
/// frames a new relay sees, the rejected kinds included, get the same verdicts as later ones.
/// (This is the case that needs the byte-sized "tag present" load; a word load lost every
/// such frame.)
#[test]
fn first_frames_after_open_get_the_same_filter_verdicts() {
    if !etherconn_testbed::require_root("first_frames_after_open_get_the_same_filter_verdicts") {
        return;
    }
    let prefix = "ecpc-fst-";
    for round in 0..3 {
        let tb = Testbed::new(prefix).unwrap();
        quiet(&tb);
        // The peer first, so that the frames follow the relay's open closely.
        let mut scapy = Scapy::start(&tb);
        let relay: Arc<dyn PacketRelay> =
            tb.b.run_in(|| PcapRelay::new(&tb.b_if, PcapRelayConfig::default()))
                .unwrap()
                .unwrap();
        let x = mac(X);
        let plain = conn(&relay, x, &[], EtherConnConfig::default());
        let qinq = conn(
            &relay,
            x,
            &[tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 100)],
            EtherConnConfig::default(),
        );
        let lldp_like = Spec(vec![])
            .s("dst", X)
            .s("src", "02:aa:00:00:00:01")
            .s("l3", "ether")
            .n("ethertype", 0x88b5)
            .s(
                "payload",
                "not an EtherType the filter passes, padding padding",
            );
        scapy.send(&specs(&[
            Spec::udp4(X, 1, "four tags").tags(&[
                (0x88a8, 10),
                (0x8100, 20),
                (0x8100, 100),
                (0x8100, 1),
            ]),
            lldp_like,
            Spec::udp4(X, 2, "qinq").tags(&[(0x88a8, 200), (0x8100, 100)]),
            Spec::udp4(X, 3, "plain"),
        ]));
        assert_eq!(
            udp_payload(&qinq.recv_frame().unwrap()),
            b"qinq",
            "round {round}"
        );
        assert_eq!(
            udp_payload(&plain.recv_frame().unwrap()),
            b"plain",
            "round {round}"
        );
        let s = wait_stats(&relay, "2 delivered", |s| s.rx_delivered == 2);
        assert_eq!(
            (s.rx_offered, s.rx_invalid, s.rx_miss),
            (2, 0, 0),
            "round {round}: {s}"
        );
        drop(scapy);
        relay.stop();
        drop(tb);
        assert_no_leftovers(prefix);
    }
}

/// Packets the interface `ifname` in `ns` has received (`ip -s -j link`: `stats64.rx.packets`).
fn rx_packets(ns: &etherconn_testbed::Netns, ifname: &str) -> u64 {
    let out = ns.ip(&["-s", "-j", "link", "show", "dev", ifname]).unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let rx = &text[text.find("\"rx\":{").expect("stats64.rx")..];
    let n = &rx[rx.find("\"packets\":").unwrap() + "\"packets\":".len()..];
    n[..n.find(|c: char| !c.is_ascii_digit()).unwrap()]
        .parse()
        .unwrap()
}

/// What the kernel drops because the capture buffer is full is counted (`pcap_stats`, folded
/// into `rx_backend_dropped`): a burst of 2,000 frames into a relay with a 64 KiB buffer loses
/// some, and every frame the interface received is either offered to the dispatcher or counted
/// as dropped.
#[test]
fn capture_buffer_drops_are_counted() {
    if !etherconn_testbed::require_root("capture_buffer_drops_are_counted") {
        return;
    }
    let prefix = "ecpc-drp-";
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let cfg = PcapRelayConfig::default().buffer_size(64 << 10);
    let rx_relay: Arc<dyn PacketRelay> =
        tb.b.run_in(|| PcapRelay::new(&tb.b_if, cfg))
            .unwrap()
            .unwrap();
    let tx_relay: Arc<dyn PacketRelay> =
        tb.a.run_in(|| PcapRelay::new(&tb.a_if, PcapRelayConfig::default()))
            .unwrap()
            .unwrap();
    let before = rx_packets(&tb.b, &tb.b_if);
    let f = UdpFrame {
        src_mac: mac("02:ec:f1:00:00:01"),
        dst_mac: mac(X),
        vlans: &[],
        src: "10.79.0.1:7000".parse().unwrap(),
        dst: "10.79.1.1:9000".parse().unwrap(),
        ttl: 64,
        dscp: 0,
        payload: &[0u8; 18],
    };
    let mut buf = [0u8; 128];
    let len = build_udp_frame(&mut buf, &f).unwrap();
    let frames: Vec<&[u8]> = vec![&buf[..len]; 2000];
    for chunk in frames.chunks(32) {
        let mut sent = 0;
        while sent < chunk.len() {
            sent += tx_relay.send_batch(&chunk[sent..], Some(WAIT)).unwrap();
        }
    }
    let arrived = rx_packets(&tb.b, &tb.b_if) - before;
    let st = wait_stats(&rx_relay, "every frame offered or dropped", |s| {
        s.rx_offered + s.rx_backend_dropped == arrived
    });
    println!("{arrived} frames arrived: {st}");
    assert!(st.rx_backend_dropped > 0, "no drop to count: {st}");
    rx_relay.stop();
    tx_relay.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}
