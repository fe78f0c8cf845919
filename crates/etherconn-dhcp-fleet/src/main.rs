//! `dhcp_fleet`: N DHCPv4 clients with their own MACs and VLAN stacks on one interface, through
//! etherconn's AF_PACKET relay; prints leases, NAKs, retransmissions, failures and DORA/s.
//!
//! ```text
//! sudo dhcp_fleet --iface eth1 --clients 1000 --window 64
//! sudo dhcp_fleet --iface eth1 --clients 5000 --window 256 --vlan 100-163 --json
//! sudo dhcp_fleet --iface eth1 --clients 100 --qinq 10 --vlan 200 --lease-file-check /var/lib/misc/dnsmasq.leases
//! sudo dhcp_fleet --iface eth1 --clients 400 --vlans 10.20-21.200-209
//! ```
//!
//! Exit status: 0 when every client got a lease (and the lease file check, if asked, passed),
//! 3 when some did not, 2 for a command line it cannot run (a bad value, an interface that
//! does not exist, a fleet larger than the memory), 1 on any other error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use etherconn_dhcp_fleet::{
    check_dnsmasq_lease_file, Fleet, FleetConfig, Lease, LeaseFileCheck, VlanPlan, VlanRange,
};
use etherconn_relay::{human_bytes, DispatcherConfig, MemInfo, MemoryBudget};

/// Exit status when some client got no lease (or the lease file check failed).
const SOME_FAILED: u8 = 3;
/// Exit status of a command line that cannot be run, as clap's own parse errors have.
const USAGE_ERROR: u8 = 2;

/// The longest any wait or deadline may be (a day): far above what a DHCP exchange needs,
/// and small enough that no `Instant` arithmetic of the run can overflow.
const MAX_SECONDS: f64 = 86_400.0;
const MAX_MS: u64 = 86_400_000;

/// Runs N DHCPv4 clients (DISCOVER/OFFER/REQUEST/ACK), each with its own MAC and optional
/// VLAN stack, on an interface through etherconn's AF_PACKET relay (needs root or
/// CAP_NET_RAW), and reports leases, NAKs, retransmissions, failures and setups per second.
#[derive(Debug, Parser)]
#[command(name = "dhcp_fleet", version)]
struct Cli {
    /// Interface to run the clients on.
    #[arg(long, value_name = "IF", value_parser = parse_iface_name)]
    iface: String,
    /// Number of clients (1 to 4294967295, and what the memory holds).
    #[arg(long, short = 'n', default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    clients: u32,
    /// Most clients in flight (first DISCOVER sent, not yet bound or failed) at once.
    #[arg(long, short = 'w', default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    window: u32,
    /// Most client starts per second, 0.001 to 1000000 (default: as fast as the window
    /// allows).
    #[arg(long, value_name = "PER_SEC", value_parser = parse_rate)]
    rate: Option<f64>,
    /// 802.1Q VLAN id (or range FIRST-LAST, assigned round-robin) of every client; the inner
    /// tag with --qinq.
    #[arg(long, value_name = "ID[-ID]")]
    vlan: Option<VlanRange>,
    /// Outer 802.1ad (TPID 0x88a8) VLAN id or range over --vlan's tag.
    #[arg(long, value_name = "ID[-ID]", requires = "vlan")]
    qinq: Option<VlanRange>,
    /// The whole stack, outermost first, one to three ids or ranges joined by dots (e.g.
    /// 10.200-209.100): one is an 802.1Q tag; with two or three the outermost is 802.1ad
    /// (0x88a8) and the others 802.1Q. Instead of --vlan/--qinq.
    #[arg(long, value_name = "STACK", conflicts_with_all = ["vlan", "qinq"])]
    vlans: Option<VlanPlan>,
    /// Clear the BOOTP broadcast flag: servers then unicast replies to the offered address
    /// (and a kernel-based server adds a neighbour entry per client).
    #[arg(long)]
    no_broadcast_flag: bool,
    /// First retransmission wait in milliseconds (1 to 86400000); doubles per retransmission.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    rto_ms: u64,
    /// Upper bound of the retransmission wait in milliseconds (1 to 86400000; below
    /// --rto-ms, it is --rto-ms).
    #[arg(long, value_name = "MS", default_value_t = 4000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    max_rto_ms: u64,
    /// Retransmissions of one message before giving up on it (0 to 100).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(..=100))]
    retries: u32,
    /// Restarts at DISCOVER (after a NAK or an unanswered REQUEST) before a client fails
    /// (0 to 1000).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(..=1000))]
    max_restarts: u32,
    /// Longest one client may take from its first DISCOVER to its ACK, in seconds (0.001 to
    /// 86400).
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = parse_timeout)]
    timeout: f64,
    /// Seed of the client MACs (client i has 02 + 40 bits of (seed + i) * odd constant).
    #[arg(long, default_value_t = 0)]
    mac_seed: u64,
    /// Print a machine-readable JSON report instead of text.
    #[arg(long)]
    json: bool,
    /// List every lease (MAC, VLANs, address) and failure in the output.
    #[arg(long)]
    list_leases: bool,
    /// After the run, check that this dnsmasq lease file lists every lease with its address.
    #[arg(long, value_name = "PATH")]
    lease_file_check: Option<PathBuf>,
    /// Write every frame the relay sends and receives to this pcapng file (closed at the
    /// end, and on SIGINT/SIGTERM).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
}

impl Cli {
    /// What the parser cannot check one value at a time: the memory the fleet takes, and the
    /// lease file (read after the run, so found missing now rather than then).
    fn check(&self) -> Result<(), String> {
        let bytes = fleet_bytes(u64::from(self.clients), self.max_restarts, self.list_leases);
        check_fits(&format!("--clients {}", self.clients), bytes)?;
        if let Some(path) = &self.lease_file_check {
            readable_file(path).map_err(|e| {
                format!("--lease-file-check {}: cannot read it: {e}", path.display())
            })?;
        }
        if let Some(path) = &self.pcap {
            etherconn_relay::CaptureConfig::check_file(path).map_err(|e| {
                format!(
                    "--pcap {}: cannot write a capture file there: {e}",
                    path.display()
                )
            })?;
        }
        Ok(())
    }

    fn config(&self) -> FleetConfig {
        let vlans = match (&self.vlans, &self.qinq, &self.vlan) {
            (Some(plan), ..) => plan.clone(),
            (None, Some(outer), Some(inner)) => VlanPlan::qinq(outer.clone(), inner.clone()),
            (None, None, Some(ids)) => VlanPlan::dot1q(ids.clone()),
            _ => VlanPlan::untagged(),
        };
        FleetConfig::default()
            .clients(self.clients as usize)
            .window(self.window as usize)
            .rate(self.rate)
            .vlans(vlans)
            .broadcast_flag(!self.no_broadcast_flag)
            .rto(
                Duration::from_millis(self.rto_ms),
                Duration::from_millis(self.max_rto_ms),
            )
            .retries(self.retries, self.max_restarts)
            .client_timeout(Duration::from_secs_f64(self.timeout))
            .mac_seed(self.mac_seed)
    }
}

/// Opens `path` for reading, which must be a file (not a directory, where opening succeeds).
fn readable_file(path: &std::path::Path) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.is_file() {
        Ok(())
    } else {
        Err(std::io::Error::other("not a file"))
    }
}

/// An interface name the kernel could have: 1 to 15 bytes, no `/`, `:` or white space, not
/// `.` or `..`. Whether it exists is found when the relay opens it.
fn parse_iface_name(s: &str) -> Result<String, String> {
    let bad_char = s
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if s.is_empty() || s.len() > 15 || s == "." || s == ".." || bad_char {
        return Err(format!(
            "{s:?} is not an interface name (1 to 15 bytes, no '/', ':' or white space)"
        ));
    }
    Ok(s.to_owned())
}

/// Seconds, finite, in `min..=MAX_SECONDS`.
fn parse_secs(s: &str, min: f64, what: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (min..=MAX_SECONDS).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not {what} from {min} to {MAX_SECONDS}")),
    }
}

fn parse_timeout(s: &str) -> Result<f64, String> {
    parse_secs(s, 0.001, "a number of seconds")
}

/// Starts per second: at least one per 1000 s (slower is a run of days), at most a million
/// (the fleet's own loop starts fewer than that).
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.001..=1e6).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of client starts per second from 0.001 to 1000000"
        )),
    }
}

/// Heap bytes of one client, rounded up: its state (80 bytes), its lease or failure record
/// (with its VLAN list), its timer entries and its share of the fleet's maps' slack.
const CLIENT_BYTES: u64 = 512;
/// One entry of the transaction id map; a client adds one per start and restart.
const XID_BYTES: u64 = 24;
/// A lease in the `--json --list-leases` report: a JSON object of eleven members, then its
/// text.
const LISTED_JSON_BYTES: u64 = 2048;
/// The relay's receive ring (16 MiB by default), which its memory budget does not count.
const RING_BYTES: u64 = etherconn_rawsock::RingConfig::DEFAULT_BLOCK_SIZE as u64
    * etherconn_rawsock::RingConfig::DEFAULT_BLOCK_COUNT as u64;

/// What the fleet's receiving conn reserves on its relay, by the relay's own rule, and the
/// budget that relay will have (the default settings the fleet runs it with).
fn relay_need() -> (u64, u64) {
    let budget = DispatcherConfig::default().budget();
    let need = budget.bytes(MemoryBudget::conn_cost(FleetConfig::default().queue_depth));
    (need, budget.limit())
}

/// What a fleet of `clients` can take at most: every client restarting `max_restarts` times,
/// and every lease listed in JSON when asked to.
fn fleet_bytes(clients: u64, max_restarts: u32, listed: bool) -> u64 {
    let per_client = CLIENT_BYTES
        + std::mem::size_of::<Lease>() as u64
        + XID_BYTES * (1 + u64::from(max_restarts))
        + if listed { LISTED_JSON_BYTES } else { 0 };
    clients
        .saturating_mul(per_client)
        .saturating_add(RING_BYTES)
        .saturating_add(relay_need().0)
}

/// Refuses the fleet when its receiving conn would take the relay past its memory budget (the
/// relay would refuse it once the interface is open), or when `bytes` (what `what` would take
/// in all) is more than `MemAvailable` in `/proc/meminfo`. Where that cannot be read, only the
/// budget (then its fallback) is checked.
fn check_fits(what: &str, bytes: u64) -> Result<(), String> {
    let (need, limit) = relay_need();
    if need > limit {
        return Err(format!(
            "the receiving conn's queue would take about {} of the relay's memory budget of {} \
             (half this machine's memory, at most what is available)",
            human_bytes(need),
            human_bytes(limit)
        ));
    }
    check_machine(what, bytes, MemInfo::read())
}

fn check_machine(what: &str, bytes: u64, mem: Option<MemInfo>) -> Result<(), String> {
    match mem {
        Some(m) if bytes > m.available => Err(format!(
            "{what} would take about {} of memory; this machine has {} ({} available)",
            human_bytes(bytes),
            human_bytes(m.total),
            human_bytes(m.available)
        )),
        _ => Ok(()),
    }
}

/// Why a run did not happen or did not finish.
enum Stop {
    /// The command line cannot be run: exit status 2.
    Usage(String),
    /// Anything else: exit status 1.
    Error(String),
}

impl From<String> for Stop {
    fn from(e: String) -> Stop {
        Stop::Error(e)
    }
}

#[cfg(target_os = "linux")]
fn run(cli: &Cli) -> Result<bool, Stop> {
    use etherconn_core::wire::EtherType;
    use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
    use etherconn_relay::PacketRelay;

    cli.check().map_err(Stop::Usage)?;
    let config = cli.config();
    // DHCP is IPv4 only: the kernel filter drops ARP and IPv6 before they cost a copy.
    let relay_cfg = RawSocketRelayConfig::default().ethertypes(&[EtherType::IPV4]);
    let relay = match &cli.pcap {
        None => RawSocketRelay::new(&cli.iface, relay_cfg),
        Some(path) => {
            let capture = etherconn_relay::CaptureConfig::file(path).interface_name(&cli.iface);
            RawSocketRelay::with_capture(&cli.iface, relay_cfg, capture)
        }
    }
    .map_err(|e| match e {
        etherconn_rawsock::Error::NoSuchInterface { name } => Stop::Usage(format!(
            "--iface {name:?}: no network interface of that name (in this network namespace)"
        )),
        e => Stop::Error(format!("cannot open {}: {e}", cli.iface)),
    })?;
    if cli.pcap.is_some() {
        close_capture_on_signals(&relay)?;
    }
    let result = Fleet::new(relay.clone(), config).and_then(Fleet::run);
    relay.stop();
    let mut report = result.map_err(|e| e.to_string())?;

    let check: Option<LeaseFileCheck> = match &cli.lease_file_check {
        Some(path) => Some(
            check_dnsmasq_lease_file(path, &report.leases)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let ok = report.all_leased() && check.as_ref().is_none_or(LeaseFileCheck::ok);
    if !cli.list_leases {
        report.leases.clear();
        report.failures.clear();
    }
    if cli.json {
        let out = serde_json::json!({ "report": report, "lease_file_check": check });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).map_err(|e| Stop::Error(e.to_string()))?
        );
    } else {
        for l in &report.leases {
            let vlans: Vec<String> = l.vlans.iter().map(u16::to_string).collect();
            println!(
                "lease {} vlan [{}] {} from {}",
                l.mac,
                vlans.join("."),
                l.ip,
                l.server
            );
        }
        for f in &report.failures {
            println!("failed {} {}", f.mac, f.reason.as_str());
        }
        println!("{report}");
        if let Some(c) = &check {
            println!(
                "lease file: {} lines, {} of our leases listed with their address, {} missing, {} with another address",
                c.file_leases,
                c.matched,
                c.missing.len(),
                c.mismatched.len()
            );
        }
    }
    Ok(ok)
}

/// SIGINT and SIGTERM close the capture (every frame taken written, the file flushed) and
/// then end the process as the signal's default action would: the shell sees the same as
/// without a capture.
#[cfg(target_os = "linux")]
fn close_capture_on_signals(
    relay: &std::sync::Arc<etherconn_rawsock::RawSocketRelay>,
) -> Result<(), Stop> {
    use etherconn_relay::PacketRelay;
    use signal_hook::consts::{SIGINT, SIGTERM};

    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Stop::Error(format!("cannot handle SIGINT/SIGTERM: {e}")))?;
    let relay = std::sync::Arc::clone(relay);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let _ = relay.dispatcher().close_capture();
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + signal);
            }
        })
        .map_err(|e| Stop::Error(format!("cannot start the signal thread: {e}")))?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn run(cli: &Cli) -> Result<bool, Stop> {
    cli.check().map_err(Stop::Usage)?;
    Err(Stop::Error(
        "dhcp_fleet runs on Linux only (AF_PACKET relay)".into(),
    ))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(SOME_FAILED),
        Err(Stop::Usage(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(USAGE_ERROR)
        }
        Err(Stop::Error(e)) => {
            eprintln!("dhcp_fleet: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn memory_figures() {
        let m = MemInfo {
            total: 2 << 20,
            available: 1 << 20,
        };
        assert!(check_machine("x", 1 << 20, Some(m)).is_ok());
        assert_eq!(
            check_machine("x", 3 << 19, Some(m)).unwrap_err(),
            "x would take about 1.5 MiB of memory; this machine has 2.0 MiB (1.0 MiB available)"
        );
        assert!(check_machine("x", u64::MAX, None).is_ok());
        // The receiving conn fits a relay's default budget on this machine.
        let (need, limit) = relay_need();
        assert!(need <= limit && need > 8192 * 2048, "{need} {limit}");
        // The fleet of the issue, 2^32 - 1 clients, is terabytes; the default a few MiB.
        assert!(fleet_bytes(u64::from(u32::MAX), 8, false) > 1 << 40);
        assert!(fleet_bytes(1000, 8, false) < 40 << 20);
        assert_eq!(fleet_bytes(u64::MAX, u32::MAX, true), u64::MAX);
    }

    #[test]
    fn values() {
        for ok in ["eth0", "veth-a.100", "fifteen-bytes-x"] {
            assert_eq!(parse_iface_name(ok).as_deref(), Ok(ok));
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen-bytes-xx"] {
            assert!(parse_iface_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_timeout("86400"), Ok(86_400.0));
        for bad in ["0", "-1", "NaN", "inf", "1e300", "86400.5", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_rate("0.001"), Ok(0.001));
        for bad in ["0", "1e-300", "1e7", "NaN", "-inf"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vlan_flags_make_the_plan() {
        let plan = |args: &[&str]| {
            let mut all = vec!["dhcp_fleet", "--iface", "lo"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|c| c.config().vlans)
        };
        let r = |s: &str| s.parse::<VlanRange>().unwrap();
        assert_eq!(plan(&[]).unwrap(), VlanPlan::untagged());
        assert_eq!(plan(&["--vlan", "5"]).unwrap(), VlanPlan::dot1q(r("5")));
        assert_eq!(
            plan(&["--qinq", "10", "--vlan", "200-209"]).unwrap(),
            VlanPlan::qinq(r("10"), r("200-209"))
        );
        assert_eq!(
            plan(&["--vlans", "10.200-209"]).unwrap(),
            VlanPlan::qinq(r("10"), r("200-209"))
        );
        let three = plan(&["--vlans", "10.20-21.100"]).unwrap();
        assert_eq!(
            three,
            VlanPlan::stacked(vec![r("10"), r("20-21"), r("100")]).unwrap()
        );
        assert!(plan(&["--vlans", "1.2.3.4"]).is_err());
        assert!(plan(&["--vlans", "1.2", "--vlan", "3"]).is_err());
        assert!(plan(&["--vlans", "1.2", "--qinq", "3", "--vlan", "4"]).is_err());
    }
}
