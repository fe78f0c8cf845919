//! What a fleet of endpoints costs in memory, and whether its relay and the machine have it:
//! checked before a run starts, because the queues are allocated up front and a fleet too
//! large is otherwise refused by the relay half-way through set-up, or found out by the
//! kernel's OOM killer minutes later.
//!
//! The relay's part is the relay's own rule (`etherconn_relay::MemoryBudget`): the same
//! per-conn cost, capped by the same pool, against the same default budget the relay will
//! have. The tool adds what it keeps per endpoint itself.

use etherconn_relay::{human_bytes, DispatcherConfig, MemInfo, MemoryBudget, CONN_FIXED_BYTES};

/// Heap bytes the tool keeps per endpoint besides the relay's conn (its `ReadySet` entry,
/// sequence numbers, the `RUdpConn` around the `EtherConn`), rounded up so that an endpoint
/// with its conn comes to 4 KiB.
const TOOL_ENDPOINT_BYTES: u64 = 4096 - CONN_FIXED_BYTES;

/// What `endpoints` endpoints with queues of `queue_depth` frames take on one relay with the
/// default settings, by the relay's rule, and the budget that relay will have.
pub fn relay_need(endpoints: usize, queue_depth: usize) -> (u64, MemoryBudget) {
    let budget = DispatcherConfig::default().budget();
    let cost = MemoryBudget::conn_cost(queue_depth).times(endpoints as u64);
    (budget.bytes(cost), budget)
}

/// Bytes a set of `endpoints` endpoints with queues of `queue_depth` frames can take in all:
/// the relay's part and the tool's own.
pub fn fleet_bytes(endpoints: usize, queue_depth: usize) -> u64 {
    relay_need(endpoints, queue_depth)
        .0
        .saturating_add((endpoints as u64).saturating_mul(TOOL_ENDPOINT_BYTES))
}

/// Refuses `relays` relays each carrying `endpoints` endpoints with queues of `queue_depth`
/// frames (`what` says so) when one relay's conns would go past its memory budget (the relay
/// would refuse them), or when all of it is more than the machine's available memory. Without
/// `/proc/meminfo` only the budget (then its fallback) is checked.
pub fn check_fits(
    what: &str,
    endpoints: usize,
    queue_depth: usize,
    relays: u64,
) -> Result<(), String> {
    let (need, budget) = relay_need(endpoints, queue_depth);
    check_budget(what, need, budget.limit())?;
    let total = fleet_bytes(endpoints, queue_depth).saturating_mul(relays);
    check_machine(what, total, MemInfo::read())
}

fn check_budget(what: &str, need: u64, limit: u64) -> Result<(), String> {
    if need > limit {
        return Err(format!(
            "{what} would take about {} of queue memory on a relay, above its memory budget \
             of {} (half this machine's memory, at most what is available)",
            human_bytes(need),
            human_bytes(limit)
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates() {
        // 65,536 endpoints with 1,048,576-frame queues: 16 bytes per slot is 1 TiB.
        assert!(fleet_bytes(65_536, 1_048_576) > 1 << 40);
        // A default echo endpoint: a few KiB plus its frames.
        let one = fleet_bytes(1, 64);
        assert!((4096..4096 + 64 * 2400).contains(&one), "{one}");
        assert_eq!(fleet_bytes(usize::MAX, usize::MAX), u64::MAX);
        // The relay's part is what the relay itself would reserve.
        let (need, budget) = relay_need(100, 64);
        assert_eq!(need, budget.bytes(MemoryBudget::conn_cost(64).times(100)));
    }

    #[test]
    fn checks() {
        assert!(check_budget("x", 1 << 20, 1 << 20).is_ok());
        assert_eq!(
            check_budget("x", (1 << 20) + 1, 1 << 20).unwrap_err(),
            "x would take about 1.0 MiB of queue memory on a relay, above its memory budget \
             of 1.0 MiB (half this machine's memory, at most what is available)"
        );
        let m = MemInfo {
            total: 24_683_584 * 1024,
            available: 1 << 20,
        };
        assert!(check_machine("x", 1 << 20, Some(m)).is_ok());
        assert_eq!(
            check_machine("x", (1 << 20) + 1, Some(m)).unwrap_err(),
            "x would take about 1.0 MiB of memory; this machine has 23.5 GiB (1.0 MiB available)"
        );
        assert!(check_machine("x", u64::MAX, None).is_ok());
        // The default budget is never above what the machine has available.
        assert!(check_fits("x", 65_536, 1_048_576, 1).is_err());
        assert!(check_fits("x", 1, 64, 2).is_ok());
    }
}
