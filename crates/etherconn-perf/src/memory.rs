//! What a fleet of endpoints costs in memory, and whether the machine has it: checked before a
//! run starts, because the queues are allocated up front and a fleet too large for the machine
//! is otherwise found out by the kernel's OOM killer, minutes later.

use std::mem::size_of;

use etherconn_relay::{DispatcherConfig, FrameSlot, RxFrame};

/// Heap bytes of one endpoint besides its queue's slots, rounded up: an `EtherConn` with its
/// `RxQueue` and table entry is about 1.1 KB (`scale --child reg:ether-10k` measures 2,614
/// bytes with 64 slots of 24), an `RUdpConn` wraps one, and the tool keeps a few words per
/// endpoint (its `ReadySet` entry, sequence numbers).
const ENDPOINT_BYTES: u64 = 4096;

/// One receive queue slot, allocated (and written) when the queue is made: the frame handle
/// and crossbeam's `ArrayQueue` stamp.
const SLOT_BYTES: u64 = (size_of::<RxFrame>() + size_of::<usize>()) as u64;

/// One receive buffer of a relay's pool when it is in use: the bytes, the slot that describes
/// them and its box.
fn buffer_bytes(cfg: &DispatcherConfig) -> u64 {
    (cfg.buf_len + size_of::<FrameSlot>() + 2 * size_of::<usize>()) as u64
}

/// Bytes a set of `endpoints` endpoints with queues of `queue_depth` frames can take on one
/// relay: the endpoints and their queues, and the relay's receive buffers that full queues
/// hold (no more than the relay's pool has).
pub fn fleet_bytes(endpoints: usize, queue_depth: usize) -> u64 {
    let relay = DispatcherConfig::default();
    let (n, depth) = (endpoints as u64, queue_depth as u64);
    let queued = n
        .saturating_mul(depth)
        .min(relay.rx_buffers as u64)
        .saturating_mul(buffer_bytes(&relay));
    n.saturating_mul(ENDPOINT_BYTES.saturating_add(depth.saturating_mul(SLOT_BYTES)))
        .saturating_add(queued)
}

/// The machine's memory, from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`, bytes.
    pub total: u64,
    /// `MemAvailable`: what can be allocated without swapping, bytes.
    pub available: u64,
}

impl MemInfo {
    /// Reads `/proc/meminfo`; `None` when it cannot be read or lacks either line.
    pub fn read() -> Option<MemInfo> {
        Self::parse(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }

    /// Parses the text of `/proc/meminfo` (values in kB).
    pub fn parse(text: &str) -> Option<MemInfo> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().strip_suffix("kB"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|kb| kb.saturating_mul(1024))
        };
        Some(MemInfo {
            total: field("MemTotal")?,
            available: field("MemAvailable")?,
        })
    }
}

/// Refuses `bytes` (what `what` would take) when it is more than the machine's available
/// memory. Without `/proc/meminfo` nothing is refused: the counts' own bounds still hold.
pub fn check_fits(what: &str, bytes: u64) -> Result<(), String> {
    check_fits_in(what, bytes, MemInfo::read())
}

fn check_fits_in(what: &str, bytes: u64, mem: Option<MemInfo>) -> Result<(), String> {
    match mem {
        Some(m) if bytes > m.available => Err(format!(
            "{what} would take about {} of memory; this machine has {} ({} available)",
            human(bytes),
            human(m.total),
            human(m.available)
        )),
        _ => Ok(()),
    }
}

/// Bytes in binary units with one decimal (`1.5 GiB`).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates() {
        // 65,536 endpoints with 1,048,576-frame queues: 24 bytes per slot is 1.5 TiB.
        assert!(fleet_bytes(65_536, 1_048_576) > 3 << 39);
        // A default echo endpoint: a few KiB plus its frames.
        let one = fleet_bytes(1, 64);
        assert!((4096..4096 + 64 * 2400).contains(&one), "{one}");
        assert_eq!(fleet_bytes(usize::MAX, usize::MAX), u64::MAX);
    }

    #[test]
    fn meminfo() {
        let m =
            MemInfo::parse("MemTotal:       24683584 kB\nMemFree: 1 kB\nMemAvailable:   1024 kB\n")
                .unwrap();
        assert_eq!(m.total, 24_683_584 * 1024);
        assert_eq!(m.available, 1 << 20);
        assert!(MemInfo::parse("MemTotal: 5 kB\n").is_none());
        assert!(MemInfo::read().is_some_and(|m| m.total >= m.available));
        assert!(check_fits_in("x", 1 << 20, Some(m)).is_ok());
        let e = check_fits_in("x", (1 << 20) + 1, Some(m)).unwrap_err();
        assert_eq!(
            e,
            "x would take about 1.0 MiB of memory; this machine has 23.5 GiB (1.0 MiB available)"
        );
        assert!(check_fits_in("x", u64::MAX, None).is_ok());
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(u64::MAX), "16384.0 PiB");
    }
}
