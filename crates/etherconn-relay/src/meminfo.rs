//! The machine's memory, from `/proc/meminfo`, and byte counts written for people.
//!
//! Read with plain file I/O: no `unsafe`, no `sysinfo(2)`. Where the file does not exist (not
//! Linux, a sandbox without `/proc`) [`MemInfo::read`] says so with `None`, and callers fall back
//! to a fixed figure.

use std::string::String;

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

/// Bytes in binary units with one decimal (`1.5 GiB`; below 1 KiB, `512 B`).
pub fn human_bytes(bytes: u64) -> String {
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
    fn parses_meminfo() {
        let m =
            MemInfo::parse("MemTotal:       24683584 kB\nMemFree: 1 kB\nMemAvailable:   1024 kB\n")
                .unwrap();
        assert_eq!(m.total, 24_683_584 * 1024);
        assert_eq!(m.available, 1 << 20);
        assert!(MemInfo::parse("MemTotal: 5 kB\n").is_none());
        assert!(MemInfo::parse("MemTotal: x kB\nMemAvailable: 1 kB\n").is_none());
        assert!(MemInfo::read().is_some_and(|m| m.total >= m.available));
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }
}
