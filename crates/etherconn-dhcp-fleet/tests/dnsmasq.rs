//! The fleet against a real DHCP server: dnsmasq in namespace `a` of a veth testbed, the fleet
//! on an AF_PACKET relay in namespace `b`.
//!
//! Checks that every client got an address, that the addresses are distinct and inside
//! dnsmasq's range, and that dnsmasq's own lease file (read once it is idle) lists every
//! client's MAC with the address the client was ACKed. dnsmasq and both namespaces are removed
//! on every exit path (drop guards; a panic unwinds through them).
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead. Needs `dnsmasq` (Debian
//! `dnsmasq-base`, installed by `scripts/setup-debian.sh`).
#![cfg(target_os = "linux")]

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::wire::{EtherType, MacAddr};
use etherconn_dhcp_fleet::{Fleet, FleetConfig, FleetReport};
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::PacketRelay;
use etherconn_testbed::{Side, Testbed};

const PREFIX: &str = "ecdhcp-";
const SERVER: &str = "10.88.0.1";
const FIRST: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 10);
const LAST: Ipv4Addr = Ipv4Addr::new(10, 88, 15, 250);

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "etherconn-dhcp-fleet-{}-{tag}-{nanos:x}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A dnsmasq process in a namespace, killed and reaped on drop.
struct Dnsmasq {
    child: Child,
    leases: PathBuf,
    log: PathBuf,
}

impl Dnsmasq {
    fn start(tb: &Testbed, dir: &Path) -> Dnsmasq {
        let leases = dir.join("leases");
        let log = dir.join("dnsmasq.log");
        let args = [
            "--no-daemon".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            "--port=0".to_owned(),
            "--no-ping".to_owned(),
            "--no-resolv".to_owned(),
            "--dhcp-authoritative".to_owned(),
            format!("--dhcp-range={FIRST},{LAST},255.255.0.0,1h"),
            "--dhcp-lease-max=5000".to_owned(),
            format!("--dhcp-leasefile={}", leases.display()),
            format!("--pid-file={}", dir.join("pid").display()),
            format!("--interface={}", tb.a_if),
            "--bind-interfaces".to_owned(),
            format!("--log-facility={}", log.display()),
            "--log-dhcp".to_owned(),
        ];
        let child =
            tb.a.command("dnsmasq")
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot start dnsmasq (apt-get install dnsmasq-base)");
        let d = Dnsmasq { child, leases, log };
        d.wait_listening();
        d
    }

    /// Waits until dnsmasq's DHCP socket (UDP port 67 = 0x0043) is bound in its namespace.
    fn wait_listening(&self) {
        let udp = format!("/proc/{}/net/udp", self.child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let bound = fs::read_to_string(&udp)
                .is_ok_and(|t| t.lines().any(|l| l.contains(":0043 00000000:0000")));
            if bound {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "dnsmasq did not bind UDP 67 within 10 s; log:\n{}",
            self.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The lease file once dnsmasq is idle: it rewrites the file in place, so it is read
    /// until it holds at least `expected` leases and stays the same for 300 ms.
    fn idle_leases(&self, expected: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        let mut stable_since = Instant::now();
        loop {
            let text = fs::read_to_string(&self.leases).unwrap_or_default();
            if text != last {
                last = text;
                stable_since = Instant::now();
            } else if last.lines().count() >= expected
                && stable_since.elapsed() >= Duration::from_millis(300)
            {
                return last;
            }
            if Instant::now() >= deadline {
                return last;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A testbed with dnsmasq serving 10.88.0.0/16 in `a` and an IPv4-only AF_PACKET relay in `b`.
/// Field order is drop order: dnsmasq, then the relay, then the namespaces, then the files.
struct Bed {
    dnsmasq: Dnsmasq,
    relay: Arc<RawSocketRelay>,
    tb: Testbed,
    _dir: TempDir,
}

impl Bed {
    fn new(tag: &str) -> Bed {
        let dir = TempDir::new(tag);
        let tb = Testbed::new(PREFIX).unwrap();
        tb.add_addr(Side::A, &format!("{SERVER}/16")).unwrap();
        // Only DHCP crosses the link; no IPv6 router solicitations or MLD reports.
        for (side, ifname) in [(Side::A, &tb.a_if), (Side::B, &tb.b_if)] {
            let key = format!("net.ipv6.conf.{ifname}.disable_ipv6");
            let _ = tb.set_sysctl(side, &key, "1");
        }
        let dnsmasq = Dnsmasq::start(&tb, &dir.0);
        let config = RawSocketRelayConfig::default().ethertypes(&[EtherType::IPV4]);
        let relay =
            tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, config))
                .unwrap()
                .unwrap();
        Bed {
            dnsmasq,
            relay,
            tb,
            _dir: dir,
        }
    }

    fn run(&self, config: FleetConfig) -> FleetReport {
        let relay: Arc<dyn PacketRelay> = self.relay.clone();
        Fleet::new(relay, config).unwrap().run().unwrap()
    }

    /// Tears down in order and checks that neither namespace is left (the other test of this
    /// binary may have its own at the same time, so only these two names are checked).
    fn finish(self) {
        let names = [self.tb.a.name().to_owned(), self.tb.b.name().to_owned()];
        self.relay.stop();
        drop(self);
        let left: Vec<String> =
            etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(PREFIX))
                .into_iter()
                .filter(|n| names.contains(n))
                .collect();
        assert!(left.is_empty(), "namespaces left behind: {left:?}");
    }
}

/// Every client leased, addresses distinct and in range, and dnsmasq's lease file agrees.
fn check(bed: &Bed, report: &FleetReport) {
    let log = || bed.dnsmasq.log_tail();
    assert!(
        report.all_leased(),
        "{report}\nfailures: {:?}\ndnsmasq log tail:\n{}",
        report.failures,
        log()
    );
    assert_eq!(report.leases.len(), report.clients);
    let mut ips = HashSet::new();
    for l in &report.leases {
        assert!((FIRST..=LAST).contains(&l.ip), "{} out of range", l.ip);
        assert!(ips.insert(l.ip), "{} leased twice", l.ip);
        assert_eq!(l.server, SERVER.parse::<Ipv4Addr>().unwrap());
        assert_eq!(l.server_mac, MacAddr(bed.tb.a_mac));
        assert_eq!(l.lease_secs, Some(3600));
    }
    let macs: HashSet<MacAddr> = report.leases.iter().map(|l| l.mac).collect();
    assert_eq!(macs.len(), report.clients, "client MACs are not distinct");
    assert_eq!(report.counters.malformed, 0);
    assert_eq!(report.relay.rx_queue_full, 0, "{report}");

    // dnsmasq's own record: `<expiry> <mac> <ip> <hostname> <client-id>` per line.
    let text = bed.dnsmasq.idle_leases(report.clients);
    let file: HashMap<String, String> = text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() >= 3).then(|| (f[1].to_owned(), f[2].to_owned()))
        })
        .collect();
    for l in &report.leases {
        let mac = l.mac.to_string();
        assert_eq!(
            file.get(&mac).map(String::as_str),
            Some(l.ip.to_string().as_str()),
            "dnsmasq's lease file does not list {mac} with {}",
            l.ip
        );
    }
    let check = etherconn_dhcp_fleet::check_dnsmasq_lease_file(&bed.dnsmasq.leases, &report.leases)
        .unwrap();
    assert!(check.ok(), "{check:?}");
}

#[test]
fn thousand_clients_broadcast_replies() {
    if !etherconn_testbed::require_root("thousand_clients_broadcast_replies") {
        return;
    }
    let bed = Bed::new("bcast");
    let started = Instant::now();
    let report = bed.run(FleetConfig::default().clients(1000).window(64));
    eprintln!("{report}\n(in {:.1} s)", started.elapsed().as_secs_f64());
    check(&bed, &report);
    bed.finish();
}

/// Without the broadcast flag dnsmasq unicasts each reply to the offered address and the
/// client's MAC: the fleet's receiver gets them as unmatched unicast frames. Kept to a few
/// hundred clients: dnsmasq adds a kernel neighbour entry per client, and the neighbour table
/// is shared by every namespace on the machine.
#[test]
fn unicast_replies_without_broadcast_flag() {
    if !etherconn_testbed::require_root("unicast_replies_without_broadcast_flag") {
        return;
    }
    let bed = Bed::new("ucast");
    let report = bed.run(
        FleetConfig::default()
            .clients(200)
            .window(32)
            .broadcast_flag(false)
            .mac_seed(1 << 32),
    );
    eprintln!("{report}");
    check(&bed, &report);
    bed.finish();
}
