//! Kernel counters along the testbed's path, read before and after a measurement window to show
//! where datagrams were lost: the veth ends, namespace B's UDP stack, the per-CPU backlog.

use std::collections::BTreeMap;

use etherconn_testbed::{Side, Testbed};

/// A snapshot of the path's counters, by name.
#[derive(Debug, Clone, Default)]
pub struct PathCounters(BTreeMap<String, u64>);

impl PathCounters {
    /// Reads the counters now (a few `ip` commands; a missing one is left out).
    pub fn take(tb: &Testbed) -> PathCounters {
        let mut c = BTreeMap::new();
        for (side, prefix) in [(Side::A, "veth_a"), (Side::B, "veth_b")] {
            if let Some(stats) = link_stats(tb, side) {
                for (dir, field, value) in stats {
                    c.insert(format!("{prefix}_{dir}_{field}"), value);
                }
            }
        }
        if let Ok(out) = tb.b.exec(&["cat", "/proc/net/snmp"]) {
            let text = String::from_utf8_lossy(&out.stdout);
            for (name, value) in udp_snmp(&text) {
                if matches!(name.as_str(), "InDatagrams" | "InErrors" | "RcvbufErrors") {
                    c.insert(format!("udp_b_{name}"), value);
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string("/proc/net/softnet_stat") {
            c.insert("softnet_backlog_dropped".to_owned(), softnet_dropped(&text));
        }
        PathCounters(c)
    }

    /// What changed between `self` and `later`; unchanged counters are left out.
    pub fn delta(&self, later: &PathCounters) -> BTreeMap<String, u64> {
        later
            .0
            .iter()
            .filter_map(|(k, &v)| {
                let d = v.saturating_sub(self.0.get(k).copied().unwrap_or(0));
                (d != 0).then(|| (k.clone(), d))
            })
            .collect()
    }
}

/// `(rx|tx, packets|dropped, value)` of `side`'s veth end, from `ip -s -j link`.
fn link_stats(tb: &Testbed, side: Side) -> Option<Vec<(&'static str, &'static str, u64)>> {
    let out = tb
        .netns(side)
        .ip(&["-s", "-j", "link", "show", "dev", tb.ifname(side)])
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let stats = json.get(0)?.get("stats64")?;
    let mut v = Vec::new();
    for dir in ["rx", "tx"] {
        for field in ["packets", "dropped"] {
            if let Some(n) = stats
                .get(dir)
                .and_then(|d| d.get(field))
                .and_then(|n| n.as_u64())
            {
                v.push((dir, field, n));
            }
        }
    }
    Some(v)
}

/// The `Udp:` counters of `/proc/net/snmp` (a line of names, then a line of values).
fn udp_snmp(text: &str) -> Vec<(String, u64)> {
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Vec::new();
    };
    names
        .split_whitespace()
        .skip(1)
        .zip(values.split_whitespace().skip(1))
        .filter_map(|(n, v)| Some((n.to_owned(), v.parse().ok()?)))
        .collect()
}

/// Frames dropped because a CPU's input backlog (`netdev_max_backlog`) was full, summed over
/// CPUs (second column of `/proc/net/softnet_stat`, hexadecimal; not per namespace).
fn softnet_dropped(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|h| u64::from_str_radix(h, 16).ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let snmp =
            "Udp: InDatagrams NoPorts InErrors\nUdp: 10 2 3\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(
            udp_snmp(snmp),
            vec![
                ("InDatagrams".to_owned(), 10),
                ("NoPorts".to_owned(), 2),
                ("InErrors".to_owned(), 3)
            ]
        );
        let softnet = "00cb4f66 00000010 00000000\n022e29a5 00000001 00000000\n";
        assert_eq!(softnet_dropped(softnet), 17);
    }
}
