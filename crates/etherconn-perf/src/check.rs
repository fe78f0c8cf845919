//! The checks of a parsed command line that one flag alone cannot make: ranges of MACs and
//! addresses that follow from a base and a count, payloads against the VLAN tags and the
//! link, CPUs and interfaces of this machine, and the memory a fleet would take. The parser
//! (`cli.rs`) already bounds each value; what fails here is refused before anything is set up,
//! with exit status 2, as the parser's own errors are.

use std::net::Ipv4Addr;
use std::path::Path;

use etherconn_relay::CaptureConfig;

use crate::addr::{
    addr_index, addr_offset, check_addr_range, check_mac_range, max_payload, unusable_ip, Ipv4Cidr,
};
use crate::cli::{BackendChoice, BenchArgs, Cli, Command, EchoArgs, ScaleArgs, SendArgs};
use crate::l2udp::L2UdpConfig;
use crate::memory::check_fits;
use crate::{scale, sys};

/// Checks everything the parser could not; the message says what is wrong and why.
pub fn cli(cli: &Cli) -> Result<(), String> {
    match &cli.command {
        None => bench(&cli.bench),
        Some(Command::Bench(a)) => bench(a),
        Some(Command::Echo(a)) => echo(a),
        Some(Command::Send(a)) => send(a),
        Some(Command::Scale(a)) => scale(a),
    }
}

/// A `--pcap` file must be one the run can write: refused before anything is set up, not
/// after a relay started.
fn check_pcap(pcap: Option<&Path>) -> Result<(), String> {
    match pcap {
        Some(p) => CaptureConfig::check_file(p).map_err(|e| {
            format!(
                "--pcap {}: cannot write a capture file there: {e}",
                p.display()
            )
        }),
        None => Ok(()),
    }
}

fn bench(a: &BenchArgs) -> Result<(), String> {
    check_pcap(a.pcap.as_deref())?;
    let tags = a.vlans.stack().len();
    // The testbed's veth pair has the default 1500-byte MTU.
    check_payloads(&a.payload, max_payload(tags), tags, "a 1500-byte MTU")?;
    check_cpus(a)?;
    if let Some(ring) = a.ring.config() {
        ring.validate()
            .map_err(|e| format!("--ring-blocks/--ring-block-kib/--ring-timeout-ms: {e}"))?;
    }
    let etherconn = a.backend.iter().any(|&b| b != BackendChoice::Kernel);
    if etherconn {
        for &n in &a.endpoints {
            let n = n as usize;
            let depth = queue_depth(a.queue_depth, n);
            // A sending and a receiving set, each on its own relay, exist at once.
            check_fits(
                &format!("--endpoints {n} with queues of {depth} frames (both sides)"),
                n,
                depth,
                2,
            )?;
        }
    }
    Ok(())
}

fn echo(a: &EchoArgs) -> Result<(), String> {
    check_iface(&a.iface)?;
    check_pcap(a.pcap.as_deref())?;
    let n = a.endpoints as usize;
    check_addr_range("--ip", a.ip.addr, n)?;
    match a.ip.v4() {
        Some(v4) => check_in_prefix(v4, n)?,
        None => {
            let last = addr_offset(a.ip.addr, n - 1);
            if !a.ip.contains(last) {
                return Err(format!(
                    "--ip {} with --endpoints {n} runs to {last}, outside the prefix",
                    a.ip
                ));
            }
        }
    }
    check_mac_range(a.mac, n)?;
    let depth = queue_depth(a.queue_depth, n);
    check_fits(
        &format!("--endpoints {n} with queues of {depth} frames"),
        n,
        depth,
        1,
    )
}

fn send(a: &SendArgs) -> Result<(), String> {
    check_iface(&a.iface)?;
    check_pcap(a.pcap.as_deref())?;
    let n = a.endpoints as usize;
    check_addr_range("--ip", a.ip.addr, n)?;
    check_mac_range(a.mac, n)?;
    let dst = a.dst.ip();
    if dst.is_ipv4() != a.ip.addr.is_ipv4() {
        return Err(format!(
            "--dst {} and --ip {} are of different IP families",
            a.dst, a.ip.addr
        ));
    }
    if addr_index(a.ip.addr, n, dst).is_some() {
        return Err(format!(
            "--dst {} is one of the sending endpoints' own addresses ({} and the next {})",
            a.dst,
            a.ip.addr,
            n - 1
        ));
    }
    let tags = a.vlans.stack().len();
    let mtu = sys::interface_mtu(&a.iface)
        .map_err(|e| format!("--iface {}: cannot read its MTU: {e}", a.iface))?;
    // The tool builds frames for at most a 1500-byte MTU (its buffers and the parser's bound);
    // a smaller link MTU lowers the limit.
    let link = mtu.min(1500);
    let max = link.saturating_sub(1500 - max_payload(tags));
    check_payloads(
        &[a.payload],
        max,
        tags,
        &format!("the {link}-byte MTU of {}", a.iface),
    )?;
    let depth = L2UdpConfig::default_queue_depth(n);
    check_fits(
        &format!("--endpoints {n} with queues of {depth} frames"),
        n,
        depth,
        1,
    )
}

fn scale(a: &ScaleArgs) -> Result<(), String> {
    let names = scale::scenario_names();
    if let Some(child) = &a.child {
        let [name, seed] = child.as_slice() else {
            return Err("--child takes a scenario name and a seed".to_owned());
        };
        if !names.contains(&name.as_str()) {
            return Err(format!(
                "--child: no scenario {name}; `etherconn-perf scale --list` lists them"
            ));
        }
        if seed.parse::<u64>().is_err() {
            return Err(format!(
                "--child {name} {seed:?}: the seed is not a number from 0 to {}",
                u64::MAX
            ));
        }
    }
    for pattern in &a.only {
        // The empty pattern is in every name, but selects nothing anyone asked for.
        if pattern.is_empty() || !names.iter().any(|n| n.contains(pattern.as_str())) {
            return Err(format!(
                "--only {pattern:?} matches no scenario; `etherconn-perf scale --list` lists them"
            ));
        }
    }
    Ok(())
}

/// The queue depth a set of `n` endpoints gets.
fn queue_depth(flag: Option<u32>, n: usize) -> usize {
    flag.map_or_else(|| L2UdpConfig::default_queue_depth(n), |d| d as usize)
}

fn check_payloads(payloads: &[u32], max: usize, tags: usize, link: &str) -> Result<(), String> {
    match payloads.iter().find(|&&p| p as usize > max) {
        Some(p) => Err(format!(
            "--payload {p} does not fit {link} with {tags} VLAN tag(s); at most {max}"
        )),
        None => Ok(()),
    }
}

/// An interface name the kernel could have (1 to 15 bytes, no `/`, `:` or white space, not
/// `.` or `..`), of an interface that exists in this network namespace.
fn check_iface(name: &str) -> Result<(), String> {
    let bad_char = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if name.is_empty() || name.len() > 15 || name == "." || name == ".." || bad_char.is_some() {
        return Err(format!(
            "--iface {name:?} is not an interface name (1 to 15 bytes, no '/', ':' or white space)"
        ));
    }
    if !sys::interface_exists(name) {
        return Err(format!(
            "--iface {name:?}: no network interface of that name (in this network namespace)"
        ));
    }
    Ok(())
}

/// `echo`'s addresses `A + i` stay inside `A/PREFIX` and are host addresses of it: not its
/// network address nor its broadcast address (prefixes up to /30; /31 and /32 have neither).
fn check_in_prefix(cidr: Ipv4Cidr, n: usize) -> Result<(), String> {
    let first = u32::from(cidr.addr);
    // check_ip_range has made sure the range does not wrap.
    let last = Ipv4Addr::from(first + (n as u32 - 1));
    let base = cidr.addr;
    if !cidr.contains(last) {
        return Err(format!(
            "--ip {base}/{} with --endpoints {n} runs to {last}, outside the prefix",
            cidr.prefix
        ));
    }
    if cidr.prefix <= 30 {
        let mask = u32::MAX << (32 - u32::from(cidr.prefix));
        let network = Ipv4Addr::from(first & mask);
        let broadcast = Ipv4Addr::from(first | !mask);
        for (ip, what) in [(base, "network"), (last, "broadcast")] {
            if ip == network || ip == broadcast {
                return Err(format!(
                    "--ip {base}/{} with --endpoints {n} includes {ip}, the prefix's {what} address",
                    cidr.prefix
                ));
            }
        }
    }
    // Inside a prefix with usable first and last addresses, every address is usable.
    debug_assert!(unusable_ip(last).is_none());
    Ok(())
}

/// The CPUs of `bench` are ones this process may run on. With one CPU the defaults (0 and 1)
/// become 0 and 0, as `bench` does.
fn check_cpus(a: &BenchArgs) -> Result<(), String> {
    let cpus = sys::allowed_cpus().map_err(|e| format!("cannot read the CPU affinity: {e}"))?;
    let rx_cpu = if cpus.len() < 2 && a.tx_cpu == 0 && a.rx_cpu == 1 {
        0
    } else {
        a.rx_cpu
    };
    let relay = a.relay_cpus.iter().map(|&c| ("--relay-cpus", c));
    for (flag, cpu) in [("--tx-cpu", a.tx_cpu), ("--rx-cpu", rx_cpu)]
        .into_iter()
        .chain(relay)
    {
        if !cpus.contains(&cpu) {
            return Err(format!(
                "{flag} {cpu}: not a CPU this process may run on (it may run on {})",
                describe_cpus(&cpus)
            ));
        }
    }
    Ok(())
}

/// `0-3,6` for CPUs 0, 1, 2, 3 and 6.
fn describe_cpus(cpus: &[usize]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &c in cpus {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == c => *end = c,
            _ => runs.push((c, c)),
        }
    }
    runs.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(describe_cpus(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(describe_cpus(&[1]), "1");
        assert_eq!(describe_cpus(&[]), "");
    }

    #[test]
    fn prefixes() {
        let c = |s: &str| s.parse::<Ipv4Cidr>().unwrap();
        assert!(check_in_prefix(c("10.0.0.1/24"), 254).is_ok());
        assert!(check_in_prefix(c("10.0.0.1/24"), 255).is_err());
        assert!(check_in_prefix(c("10.0.0.0/24"), 1).is_err());
        assert!(check_in_prefix(c("10.0.0.0/31"), 2).is_ok());
        assert!(check_in_prefix(c("10.0.0.7/32"), 1).is_ok());
        assert!(check_in_prefix(c("10.0.0.7/32"), 2).is_err());
    }

    #[test]
    fn iface_names() {
        for bad in ["", "a/b", "a:b", "a b", ".", "..", "sixteen-bytes-xx"] {
            assert!(check_iface(bad)
                .unwrap_err()
                .contains("not an interface name"));
        }
        assert!(check_iface("no-such-if0")
            .unwrap_err()
            .contains("no network interface"));
        assert!(check_iface("lo").is_ok());
    }
}
