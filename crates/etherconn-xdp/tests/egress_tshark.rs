//! Frames an `EtherConn` sends through the XDP relay's send ring (untagged, 802.1Q with a
//! PCP, 802.1ad QinQ; IPv4 and IPv6 UDP), captured in the peer namespace and decoded by tshark
//! (a decoder this project did not write), checksums verified by tshark.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{EtherType, MacAddr, Tpid, VlanId, VlanTag};
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
use etherconn_testbed::{Side, Testbed};
use etherconn_xdp::{XdpRelay, XdpRelayConfig};

const WAIT: Duration = Duration::from_secs(5);

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn tag(tpid: Tpid, id: u16) -> VlanTag {
    VlanTag::new(tpid, VlanId::new(id).unwrap())
}

fn conn(relay: &Arc<XdpRelay>, m: MacAddr, vlans: &[VlanTag], cfg: EtherConnConfig) -> EtherConn {
    let relay: Arc<dyn PacketRelay> = relay.clone();
    let c = EtherConn::new(relay, m, vlans, cfg).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c
}

/// Sends one UDP datagram from `conn` (its MAC and VLAN stack).
fn send_udp(c: &EtherConn, dst_mac: MacAddr, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
    let vlans = c.vlans().to_vec();
    let frame = UdpFrame {
        src_mac: c.local_mac(),
        dst_mac,
        vlans: &vlans,
        src,
        dst,
        ttl: 64,
        dscp: 0,
        payload,
    };
    c.send_built(|buf| build_udp_frame(buf, &frame)).unwrap();
}

/// Turns IPv6 off on both veth ends, so the kernel sends no link-local noise.
fn quiet(tb: &Testbed) {
    for side in [Side::A, Side::B] {
        let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
        tb.set_sysctl(side, &key, "1").unwrap();
    }
}

fn assert_no_leftovers(prefix: &str) {
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

/// tshark in namespace `a` capturing on `a_if` into a pcap file (for at most 30 s), printing
/// the UDP source port of each frame as it captures it.
struct Capture {
    child: Child,
    file: PathBuf,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Capture {
    /// Starts tshark and returns once it captures: tshark's "Capturing on" comes before the
    /// capture socket sees frames, so `probe` is called (it should send a non-UDP frame) every
    /// 100 ms until tshark shows a captured frame.
    fn start(tb: &Testbed, probe: impl Fn()) -> Capture {
        let file = std::env::temp_dir().join(format!(
            "etherconn-xdp-egress-{}-{}.pcap",
            std::process::id(),
            tb.a_if
        ));
        let _ = std::fs::remove_file(&file);
        let mut child =
            tb.a.command("tshark")
                .args([
                    "-i",
                    &tb.a_if,
                    "-a",
                    "duration:30",
                    "-l",
                    "-P",
                    "-T",
                    "fields",
                ])
                .args(["-e", "frame.number", "-e", "udp.srcport", "-w"])
                .arg(&file)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start tshark");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let cap = Capture { child, file, lines };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert!(Instant::now() < deadline, "tshark did not start capturing");
            probe();
            if cap.lines.recv_timeout(Duration::from_millis(100)).is_ok() {
                break;
            }
        }
        cap
    }

    /// Waits until tshark has shown `n` UDP frames (or fails after 10 s).
    fn wait_udp(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = 0;
        while seen < n {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("tshark showed {seen} of {n} UDP frames"));
            if line.split('\t').nth(1).is_some_and(|p| !p.is_empty()) {
                seen += 1;
            }
        }
    }

    /// Stops tshark (SIGINT, so it completes the file).
    fn stop(&mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGINT) };
    }

    /// Waits for tshark to stop and returns the decoded fields, one line per frame.
    fn finish(mut self, fields: &[&str]) -> Vec<Vec<String>> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(25);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "tshark capture exited with {st}");
                break;
            }
            assert!(Instant::now() < deadline, "tshark capture did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut cmd = std::process::Command::new("tshark");
        cmd.arg("-r").arg(&self.file).args([
            "-Y",
            "udp",
            "-o",
            "udp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
            "-T",
            "fields",
            "-E",
            "separator=/t",
        ]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = cmd.output().expect("run tshark -r");
        assert!(
            out.status.success(),
            "tshark -r: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

#[test]
fn vlan_egress_through_the_send_ring_decoded_by_tshark() {
    if !etherconn_testbed::require_root("vlan_egress_through_the_send_ring_decoded_by_tshark") {
        return;
    }
    let prefix = "ecxdp-t-";
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let relay =
        tb.b.run_in(|| XdpRelay::new(&tb.b_if, XdpRelayConfig::default()))
            .unwrap()
            .unwrap();
    let stacks: [(&str, Vec<VlanTag>); 3] = [
        ("02:ec:00:00:02:01", vec![]),
        (
            "02:ec:00:00:02:02",
            vec![VlanTag::dot1q(100).unwrap().with_pcp(5)],
        ),
        (
            "02:ec:00:00:02:03",
            vec![tag(Tpid::QINQ, 200), tag(Tpid::DOT1Q, 100)],
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
    cap.wait_udp(6);
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
