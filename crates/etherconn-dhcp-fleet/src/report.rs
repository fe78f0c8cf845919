//! What a fleet run reports: leases, failures, counters and setups per second.

use std::fmt;
use std::net::Ipv4Addr;

use etherconn_core::wire::MacAddr;
use etherconn_relay::RelayStats;
use serde::{Serialize, Serializer};

use crate::client::FailReason;
use crate::config::FleetConfig;

fn display<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// A lease a client obtained (it was ACKed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lease {
    /// The client's index in the fleet.
    pub client: usize,
    /// The client's MAC.
    #[serde(serialize_with = "display")]
    pub mac: MacAddr,
    /// The client's VLAN ids, outermost first.
    pub vlans: Vec<u16>,
    /// The address (`yiaddr` of the ACK).
    pub ip: Ipv4Addr,
    /// The server identifier of the ACK (`0.0.0.0` when it had none).
    pub server: Ipv4Addr,
    /// Source MAC of the ACK frame.
    #[serde(serialize_with = "display")]
    pub server_mac: MacAddr,
    /// Lease time the server granted, in seconds.
    pub lease_secs: Option<u32>,
    /// Milliseconds from the client's first DISCOVER to its ACK.
    pub setup_ms: f64,
    /// Retransmissions the client made.
    pub retransmits: u32,
    /// NAKs it received.
    pub naks: u32,
    /// Times it started over at DISCOVER.
    pub restarts: u32,
}

/// A client that gave up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The client's index in the fleet.
    pub client: usize,
    /// The client's MAC.
    #[serde(serialize_with = "display")]
    pub mac: MacAddr,
    /// Why it gave up.
    pub reason: FailReason,
}

/// Messages and events of a run, over all clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// DISCOVERs sent, retransmissions included.
    pub discovers: u64,
    /// REQUESTs sent, retransmissions included.
    pub requests: u64,
    /// OFFERs received (for any client, late ones included).
    pub offers: u64,
    /// ACKs received.
    pub acks: u64,
    /// NAKs received.
    pub naks: u64,
    /// Retransmissions (a timer expired without the awaited reply).
    pub retransmits: u64,
    /// Restarts at DISCOVER (after a NAK, or a REQUEST never answered).
    pub restarts: u64,
    /// Replies for a transaction no client ran, or whose `chaddr` or VLAN stack did not
    /// match the client's.
    pub stray: u64,
    /// Replies for a client's earlier transaction, or that its state no longer expects
    /// (second OFFERs, duplicate ACKs).
    pub late: u64,
    /// UDP datagrams to port 68 that are not DHCP messages.
    pub malformed: u64,
    /// Other frames the receiving conn got (not UDP 67 -> 68, or DHCP messages that are not
    /// OFFER/ACK/NAK replies).
    pub non_dhcp: u64,
    /// Requests that could not be handed to the relay (retransmitted by their timer).
    pub send_errors: u64,
}

/// Relay counters that moved during the run (the relay may carry other conns too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RelayDelta {
    /// Frames sent.
    pub tx: u64,
    /// Frames the relay failed to send.
    pub tx_errors: u64,
    /// Frames given to the default conn (the fleet's receiver).
    pub rx_to_default: u64,
    /// Frames dropped because a conn's queue was full.
    pub rx_queue_full: u64,
    /// Frames dropped for want of a receive buffer.
    pub rx_no_buffer: u64,
    /// Malformed frames.
    pub rx_invalid: u64,
}

impl RelayDelta {
    pub(crate) fn between(a: &RelayStats, b: &RelayStats) -> RelayDelta {
        RelayDelta {
            tx: b.tx.saturating_sub(a.tx),
            tx_errors: b.tx_errors.saturating_sub(a.tx_errors),
            rx_to_default: b.rx_to_default.saturating_sub(a.rx_to_default),
            rx_queue_full: b.rx_queue_full.saturating_sub(a.rx_queue_full),
            rx_no_buffer: b.rx_no_buffer.saturating_sub(a.rx_no_buffer),
            rx_invalid: b.rx_invalid.saturating_sub(a.rx_invalid),
        }
    }
}

/// Setup time percentiles over the clients that got a lease, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SetupTimes {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl SetupTimes {
    fn of(leases: &[Lease]) -> SetupTimes {
        let mut ms: Vec<f64> = leases.iter().map(|l| l.setup_ms).collect();
        if ms.is_empty() {
            return SetupTimes::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        SetupTimes {
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            max_ms: ms[ms.len() - 1],
        }
    }
}

/// The outcome of a fleet run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetReport {
    /// Clients run.
    pub clients: usize,
    /// Window (most clients in flight).
    pub window: usize,
    /// Whether requests had the broadcast flag.
    pub broadcast_flag: bool,
    /// The VLAN plan, as text.
    pub vlans: String,
    /// Clients that got a lease.
    pub leased: usize,
    /// Clients that gave up.
    pub failed: usize,
    /// Failures by reason.
    pub failures_by_reason: Vec<(FailReason, usize)>,
    /// Seconds from the first DISCOVER to the last ACK.
    pub dora_secs: f64,
    /// Leases per second over `dora_secs` (DORA exchanges completed per second).
    pub setups_per_sec: f64,
    /// Seconds the whole run took (until the last client bound or gave up).
    pub run_secs: f64,
    /// Setup times.
    pub setup_times: SetupTimes,
    /// Message counters.
    pub counters: Counters,
    /// Relay counters during the run.
    pub relay: RelayDelta,
    /// Every lease, by client index (empty in JSON output unless asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<Lease>,
    /// Every failure, by client index.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
}

impl FleetReport {
    pub(crate) fn new(
        config: &FleetConfig,
        leases: Vec<Lease>,
        failures: Vec<Failure>,
        counters: Counters,
        dora_secs: f64,
        run_secs: f64,
        relay: RelayDelta,
    ) -> FleetReport {
        let setups_per_sec = if dora_secs > 0.0 {
            leases.len() as f64 / dora_secs
        } else {
            0.0
        };
        FleetReport {
            clients: config.clients,
            window: config.window,
            broadcast_flag: config.broadcast_flag,
            vlans: config.vlans.to_string(),
            leased: leases.len(),
            failed: failures.len(),
            failures_by_reason: count_reasons(&failures),
            dora_secs,
            setups_per_sec,
            run_secs,
            setup_times: SetupTimes::of(&leases),
            counters,
            relay,
            leases,
            failures,
        }
    }

    /// Whether every client got a lease.
    pub fn all_leased(&self) -> bool {
        self.leased == self.clients
    }
}

impl fmt::Display for FleetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        writeln!(
            f,
            "clients {}  window {}  {}  broadcast flag {}",
            self.clients,
            self.window,
            self.vlans,
            if self.broadcast_flag { "on" } else { "off" }
        )?;
        writeln!(
            f,
            "leases {}  failed {}  NAKs {}  retransmits {}  restarts {}",
            self.leased, self.failed, c.naks, c.retransmits, c.restarts
        )?;
        if !self.failures_by_reason.is_empty() {
            let reasons: Vec<String> = self
                .failures_by_reason
                .iter()
                .map(|(r, n)| format!("{} {n}", r.as_str()))
                .collect();
            writeln!(f, "failures: {}", reasons.join(", "))?;
        }
        writeln!(
            f,
            "setups/s (DORA/s) {:.0}  over {:.3} s (run {:.3} s)",
            self.setups_per_sec, self.dora_secs, self.run_secs
        )?;
        let t = &self.setup_times;
        writeln!(
            f,
            "setup time ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            t.p50_ms, t.p90_ms, t.p99_ms, t.max_ms
        )?;
        writeln!(
            f,
            "sent: discover {} request {}  received: offer {} ack {} nak {}  stray {} late {} malformed {} other {}  send errors {}",
            c.discovers, c.requests, c.offers, c.acks, c.naks, c.stray, c.late, c.malformed,
            c.non_dhcp, c.send_errors
        )?;
        let r = &self.relay;
        write!(
            f,
            "relay: tx {} tx_errors {} rx_to_default {} rx_queue_full {} rx_no_buffer {} rx_invalid {}",
            r.tx, r.tx_errors, r.rx_to_default, r.rx_queue_full, r.rx_no_buffer, r.rx_invalid
        )
    }
}

/// The failure reasons, counted.
fn count_reasons(failures: &[Failure]) -> Vec<(FailReason, usize)> {
    let mut counts: Vec<(FailReason, usize)> = Vec::new();
    for f in failures {
        match counts.iter_mut().find(|(r, _)| *r == f.reason) {
            Some((_, n)) => *n += 1,
            None => counts.push((f.reason, 1)),
        }
    }
    counts
}
