//! `dhcp_fleet`: N DHCPv4 clients with their own MACs and VLAN stacks on one interface, through
//! etherconn's AF_PACKET relay; prints leases, NAKs, retransmissions, failures and DORA/s.
//!
//! ```text
//! sudo dhcp_fleet --iface eth1 --clients 1000 --window 64
//! sudo dhcp_fleet --iface eth1 --clients 5000 --window 256 --vlan 100-163 --json
//! sudo dhcp_fleet --iface eth1 --clients 100 --qinq 10 --vlan 200 --lease-file-check /var/lib/misc/dnsmasq.leases
//! ```
//!
//! Exit status: 0 when every client got a lease (and the lease file check, if asked, passed),
//! 2 when some did not, 1 on an error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use etherconn_dhcp_fleet::{
    check_dnsmasq_lease_file, Fleet, FleetConfig, LeaseFileCheck, VlanPlan, VlanRange,
};

/// Runs N DHCPv4 clients (DISCOVER/OFFER/REQUEST/ACK), each with its own MAC and optional
/// VLAN stack, on an interface through etherconn's AF_PACKET relay (needs root or
/// CAP_NET_RAW), and reports leases, NAKs, retransmissions, failures and setups per second.
#[derive(Debug, Parser)]
#[command(name = "dhcp_fleet", version)]
struct Cli {
    /// Interface to run the clients on.
    #[arg(long, value_name = "IF")]
    iface: String,
    /// Number of clients.
    #[arg(long, short = 'n', default_value_t = 1000)]
    clients: usize,
    /// Most clients in flight (first DISCOVER sent, not yet bound or failed) at once.
    #[arg(long, short = 'w', default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    window: u32,
    /// Most client starts per second (default: as fast as the window allows).
    #[arg(long, value_name = "PER_SEC")]
    rate: Option<f64>,
    /// 802.1Q VLAN id (or range FIRST-LAST, assigned round-robin) of every client; the inner
    /// tag with --qinq.
    #[arg(long, value_name = "ID[-ID]")]
    vlan: Option<VlanRange>,
    /// Outer 802.1ad (TPID 0x88a8) VLAN id or range over --vlan's tag.
    #[arg(long, value_name = "ID[-ID]", requires = "vlan")]
    qinq: Option<VlanRange>,
    /// Clear the BOOTP broadcast flag: servers then unicast replies to the offered address
    /// (and a kernel-based server adds a neighbour entry per client).
    #[arg(long)]
    no_broadcast_flag: bool,
    /// First retransmission wait in milliseconds; doubles per retransmission.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    rto_ms: u64,
    /// Upper bound of the retransmission wait in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 4000)]
    max_rto_ms: u64,
    /// Retransmissions of one message before giving up on it.
    #[arg(long, default_value_t = 4)]
    retries: u32,
    /// Restarts at DISCOVER (after a NAK or an unanswered REQUEST) before a client fails.
    #[arg(long, default_value_t = 8)]
    max_restarts: u32,
    /// Longest one client may take from its first DISCOVER to its ACK, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
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
}

impl Cli {
    fn config(&self) -> Result<FleetConfig, String> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            return Err("--timeout must be a positive number of seconds".into());
        }
        let vlans = match (&self.qinq, &self.vlan) {
            (Some(outer), Some(inner)) => VlanPlan::qinq(outer.clone(), inner.clone()),
            (None, Some(ids)) => VlanPlan::dot1q(ids.clone()),
            _ => VlanPlan::untagged(),
        };
        Ok(FleetConfig::default()
            .clients(self.clients)
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
            .mac_seed(self.mac_seed))
    }
}

#[cfg(target_os = "linux")]
fn run(cli: &Cli) -> Result<bool, String> {
    use etherconn_core::wire::EtherType;
    use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
    use etherconn_relay::PacketRelay;

    let config = cli.config()?;
    // DHCP is IPv4 only: the kernel filter drops ARP and IPv6 before they cost a copy.
    let relay = RawSocketRelay::new(
        &cli.iface,
        RawSocketRelayConfig::default().ethertypes(&[EtherType::IPV4]),
    )
    .map_err(|e| format!("cannot open {}: {e}", cli.iface))?;
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
            serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?
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

#[cfg(not(target_os = "linux"))]
fn run(cli: &Cli) -> Result<bool, String> {
    cli.config()?;
    Err("dhcp_fleet runs on Linux only (AF_PACKET relay)".into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("dhcp_fleet: {e}");
            ExitCode::FAILURE
        }
    }
}
