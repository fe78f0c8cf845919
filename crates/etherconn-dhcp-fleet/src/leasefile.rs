//! Checking leases against dnsmasq's lease file.

use std::collections::HashMap;
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

use etherconn_core::wire::MacAddr;
use serde::Serialize;

use crate::report::Lease;

/// Parses dnsmasq's lease file: one DHCPv4 lease per line as
/// `<expiry> <mac> <ip> <hostname|*> <client-id|*>`. DHCPv6 lines (after a `duid` line) and
/// anything else that does not read as a MAC and an IPv4 address are skipped.
///
/// ```
/// let text = "1700000000 02:aa:bb:cc:dd:ee 10.88.0.17 * *\nduid 00:01\n";
/// let leases = etherconn_dhcp_fleet::parse_dnsmasq_leases(text);
/// assert_eq!(leases.len(), 1);
/// assert_eq!(leases[0].1.to_string(), "10.88.0.17");
/// ```
pub fn parse_dnsmasq_leases(text: &str) -> Vec<(MacAddr, Ipv4Addr)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _expiry = fields.next()?;
            let mac = fields.next()?.parse().ok()?;
            let ip = fields.next()?.parse().ok()?;
            Some((mac, ip))
        })
        .collect()
}

/// How a run's leases compare with a server's lease file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LeaseFileCheck {
    /// Lines in the file.
    pub file_leases: usize,
    /// Our leases the file lists with the same address.
    pub matched: usize,
    /// Our leases whose MAC the file does not list.
    pub missing: Vec<String>,
    /// Our leases the file lists with another address: `mac ours file`.
    pub mismatched: Vec<String>,
}

impl LeaseFileCheck {
    /// Whether every lease is listed with its address.
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.mismatched.is_empty()
    }
}

/// Compares `leases` with dnsmasq's lease file at `path`. Read it once the server is idle:
/// dnsmasq rewrites it in place.
pub fn check_dnsmasq_lease_file(path: &Path, leases: &[Lease]) -> io::Result<LeaseFileCheck> {
    let text = std::fs::read_to_string(path)?;
    let listed = parse_dnsmasq_leases(&text);
    let by_mac: HashMap<MacAddr, Ipv4Addr> = listed.iter().copied().collect();
    let mut check = LeaseFileCheck {
        file_leases: listed.len(),
        ..LeaseFileCheck::default()
    };
    for l in leases {
        match by_mac.get(&l.mac) {
            Some(ip) if *ip == l.ip => check.matched += 1,
            Some(ip) => check.mismatched.push(format!("{} {} {ip}", l.mac, l.ip)),
            None => check.missing.push(l.mac.to_string()),
        }
    }
    Ok(check)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_leases_and_skips_the_rest() {
        let text = "1700000000 02:AA:bb:cc:dd:ee 10.88.0.17 * *\r\n\
                    duid 00:01:00:01:2c:5e:3a:10:02:00:00:00:00:fe\n\
                    1700000000 305419896 2001:db8::17 host6 00:01\n\
                    1700000000 2-a-b-c-d-e 10.88.0.18 * *\n\
                    1700000000 02:aa:bb:cc:dd:ee 010.88.0.19 * *\n\
                    1700000000 +2:aa:bb:cc:dd:f1 10.88.0.24 * *\n\
                    \n\
                    1700000000 02:aa:bb:cc:dd:f0\n";
        let leases: Vec<String> = parse_dnsmasq_leases(text)
            .iter()
            .map(|(mac, ip)| format!("{mac} {ip}"))
            .collect();
        // The `+2` octet was read as 0x02 until the `leasefile` fuzz target found it.
        assert_eq!(
            leases,
            [
                "02:aa:bb:cc:dd:ee 10.88.0.17",
                "02:0a:0b:0c:0d:0e 10.88.0.18"
            ]
        );
    }
}
