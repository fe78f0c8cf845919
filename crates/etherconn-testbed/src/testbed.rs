//! Two namespaces joined by a veth pair.

use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::process::{self, Command};

use crate::cmd;
use crate::netns::{next_id, Netns};

/// One end of a [`Testbed`]: namespace [`Testbed::a`] with interface [`Testbed::a_if`], or
/// namespace [`Testbed::b`] with [`Testbed::b_if`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Namespace `a` and its veth end `a_if`.
    A,
    /// Namespace `b` and its veth end `b_if`.
    B,
}

impl Side {
    /// The other end of the veth pair.
    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Two fresh network namespaces joined by a veth pair, both ends up.
///
/// Fields drop in order: deleting namespace `a` deletes its veth end and with it the pair, then
/// `b` goes; nothing is ever created in the root namespace. Cleanup runs during unwinding too.
/// A socket or thread still inside a namespace keeps it (and so the pair) alive, unnamed, until
/// it is closed or ends; it never shows in `ip netns list`.
///
/// On `up`, both ends are quiet except for the kernel's IPv6 link-local traffic (router
/// solicitations, MLD reports); tests that count frames can turn it off with
/// `set_sysctl(side, "net.ipv6.conf.<if>.disable_ipv6", "1")`.
#[derive(Debug)]
pub struct Testbed {
    /// Namespace holding [`Testbed::a_if`].
    pub a: Netns,
    /// Namespace holding [`Testbed::b_if`].
    pub b: Netns,
    /// Interface name of the veth end in `a` (at most 15 bytes, unique within this process; it
    /// only ever exists inside the testbed's namespaces, so it cannot clash with the host's).
    pub a_if: String,
    /// Interface name of the veth end in `b`.
    pub b_if: String,
    /// MAC address of `a_if` (random, chosen by the kernel, unless changed with
    /// [`Testbed::set_mac`]).
    pub a_mac: [u8; 6],
    /// MAC address of `b_if`.
    pub b_mac: [u8; 6],
}

impl Testbed {
    /// Creates namespaces `a` and `b` (names from [`Netns::new`]`(prefix)`), a veth pair with one
    /// end in each, IPv6 duplicate address detection off on both ends (so IPv6 addresses are
    /// usable at once), and `lo` and both ends up.
    ///
    /// Interface names are `ea`/`eb`, three hex digits of the pid and a hex counter, e.g.
    /// `ea3f10`/`eb3f10`; kept short so the threaded-NAPI kernel thread name
    /// `napi/<if>-<id>` identifies the interface even where thread names are cut at 15 bytes.
    pub fn new(prefix: &str) -> io::Result<Testbed> {
        Self::with_queues(prefix, 1)
    }

    /// [`new`](Self::new) with `queues` transmit and receive queues on each veth end (more
    /// than one: `ip link add ... numtxqueues N numrxqueues N`), for a relay that serves
    /// queues. A veth delivers a frame on the receive queue numbered like the transmit queue
    /// it was sent on.
    pub fn with_queues(prefix: &str, queues: u32) -> io::Result<Testbed> {
        let a = Netns::new(prefix)?;
        let b = Netns::new(prefix)?;
        let (pid, id) = (process::id() % 0x1000, next_id());
        let a_if = format!("ea{pid:03x}{id:x}");
        let b_if = format!("eb{pid:03x}{id:x}");
        let q = queues.max(1).to_string();
        let multi: &[&str] = if queues > 1 {
            &["numtxqueues", &q, "numrxqueues", &q]
        } else {
            &[]
        };
        let mut cmd: Vec<&str> = vec!["link", "add", &a_if];
        cmd.extend_from_slice(multi);
        cmd.extend_from_slice(&["type", "veth", "peer", "name", &b_if]);
        cmd.extend_from_slice(multi);
        cmd.extend_from_slice(&["netns", b.name()]);
        a.ip(&cmd)?;
        let ipv6 = Path::new("/proc/sys/net/ipv6").exists();
        for (ns, ifname) in [(&a, &a_if), (&b, &b_if)] {
            if ipv6 {
                let key = format!("net.ipv6.conf.{ifname}.accept_dad=0");
                ns.exec(&["sysctl", "-q", "-w", &key])?;
            }
            ns.ip(&["link", "set", "dev", "lo", "up"])?;
            ns.ip(&["link", "set", "dev", ifname, "up"])?;
        }
        let a_mac = read_mac(&a, &a_if)?;
        let b_mac = read_mac(&b, &b_if)?;
        Ok(Testbed {
            a,
            b,
            a_if,
            b_if,
            a_mac,
            b_mac,
        })
    }

    /// The namespace of `side`.
    pub fn netns(&self, side: Side) -> &Netns {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    /// The veth interface name of `side`.
    pub fn ifname(&self, side: Side) -> &str {
        match side {
            Side::A => &self.a_if,
            Side::B => &self.b_if,
        }
    }

    /// The MAC address of `side`'s veth end.
    pub fn mac(&self, side: Side) -> [u8; 6] {
        match side {
            Side::A => self.a_mac,
            Side::B => self.b_mac,
        }
    }

    /// Adds an address in CIDR form (`"10.99.0.1/24"`, `"2001:db8::1/64"`) to `side`'s veth end;
    /// IPv6 addresses are added `nodad`, usable at once.
    pub fn add_addr(&self, side: Side, cidr: &str) -> io::Result<()> {
        let ifname = self.ifname(side);
        let mut args = vec!["addr", "add", cidr, "dev", ifname];
        if cidr.contains(':') {
            args.push("nodad");
        }
        self.netns(side).ip(&args).map(drop)
    }

    /// Adds (or replaces) a permanent neighbour entry on `side`'s veth end: `ip` is reached at
    /// `mac` without ARP or neighbour discovery, e.g. to reach an etherconn endpoint that does
    /// not answer ARP.
    pub fn add_neigh(&self, side: Side, ip: impl Into<IpAddr>, mac: [u8; 6]) -> io::Result<()> {
        let (ip, mac) = (ip.into().to_string(), format_mac(mac));
        let ifname = self.ifname(side);
        self.netns(side)
            .ip(&[
                "neigh",
                "replace",
                &ip,
                "lladdr",
                &mac,
                "dev",
                ifname,
                "nud",
                "permanent",
            ])
            .map(drop)
    }

    /// Turns promiscuous mode of `side`'s veth end on or off.
    pub fn set_promisc(&self, side: Side, on: bool) -> io::Result<()> {
        let ifname = self.ifname(side);
        let state = if on { "on" } else { "off" };
        self.netns(side)
            .ip(&["link", "set", "dev", ifname, "promisc", state])
            .map(drop)
    }

    /// Sets the MAC address of `side`'s veth end and records it in `a_mac`/`b_mac`.
    pub fn set_mac(&mut self, side: Side, mac: [u8; 6]) -> io::Result<()> {
        let text = format_mac(mac);
        let ifname = self.ifname(side);
        self.netns(side)
            .ip(&["link", "set", "dev", ifname, "address", &text])?;
        match side {
            Side::A => self.a_mac = mac,
            Side::B => self.b_mac = mac,
        }
        Ok(())
    }

    /// Sets offload features of `side`'s veth end with `ethtool -K <if> name value ...`, e.g.
    /// `&[("rx-vlan-offload", "off"), ("tx-vlan-offload", "off")]` so VLAN tags stay in the
    /// frames. Names are ethtool's long or short feature names.
    pub fn set_offloads(&self, side: Side, features: &[(&str, &str)]) -> io::Result<()> {
        if features.is_empty() {
            return Ok(());
        }
        let mut args = vec!["ethtool", "-K", self.ifname(side)];
        for &(name, value) in features {
            args.extend([name, value]);
        }
        self.netns(side).exec(&args).map(drop)
    }

    /// Sets a sysctl inside `side`'s namespace (`sysctl -w key=value`), e.g.
    /// `("net.ipv6.conf.ea3f10.disable_ipv6", "1")`.
    pub fn set_sysctl(&self, side: Side, key: &str, value: &str) -> io::Result<()> {
        let assignment = format!("{key}={value}");
        self.netns(side)
            .exec(&["sysctl", "-q", "-w", &assignment])
            .map(drop)
    }

    /// Moves the kernel's receive work for frames arriving at `rx` onto a NAPI kernel thread of
    /// `rx`'s own: by default veth runs it on the *sending* core, so a receive figure measures
    /// sender-core time (docs/performance-tool.md, "veth caveats").
    ///
    /// Runs `ethtool -K <tx if> tso off`, `ethtool -K <rx if> gro on` and writes 1 to
    /// `/sys/class/net/<rx if>/threaded`. Pin the thread with [`Testbed::pin_napi_threads`].
    pub fn threaded_rx_mode(&self, rx: Side) -> io::Result<()> {
        let tx = rx.peer();
        self.set_offloads(tx, &[("tso", "off")])?;
        self.set_offloads(rx, &[("gro", "on")])?;
        // /sys must be this namespace's, which only `ip netns exec` (a new mount of /sys) gives.
        let write = format!("echo 1 > /sys/class/net/{}/threaded", self.ifname(rx));
        self.netns(rx).exec(&["sh", "-c", &write]).map(drop)
    }

    /// Process ids of the threaded-NAPI kernel threads (`napi/<if>-<id>`) of `side`'s veth end;
    /// empty unless [`Testbed::threaded_rx_mode`] was applied to that side.
    pub fn napi_threads(&self, side: Side) -> io::Result<Vec<u32>> {
        let wanted = format!("napi/{}-", self.ifname(side));
        // Kernels before 6.x cut thread names at 15 bytes; names longer than that cut cannot
        // be told apart, which the short interface names avoid in practice.
        let matches = |comm: &str| {
            comm.starts_with(&wanted) || (comm.len() == 15 && wanted.starts_with(comm))
        };
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let Some(pid) = entry?
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            // Processes can exit while we look; that is not an error.
            if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                if matches(comm.trim_end()) {
                    pids.push(pid);
                }
            }
        }
        pids.sort_unstable();
        Ok(pids)
    }

    /// Pins the threaded-NAPI kernel threads of `side` to CPU `cpu` (`taskset -pc`), returning
    /// their process ids; an error if there are none (threaded mode not on).
    pub fn pin_napi_threads(&self, side: Side, cpu: usize) -> io::Result<Vec<u32>> {
        let pids = self.napi_threads(side)?;
        if pids.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no napi/{}-* kernel thread; call threaded_rx_mode first",
                    self.ifname(side)
                ),
            ));
        }
        let cpu = cpu.to_string();
        for pid in &pids {
            cmd::run(Command::new("taskset").args(["-pc", &cpu, &pid.to_string()]))?;
        }
        Ok(pids)
    }
}

/// `aa:bb:cc:dd:ee:ff`, as `ip` takes it.
fn format_mac(mac: [u8; 6]) -> String {
    let mut text = String::with_capacity(17);
    for (i, byte) in mac.iter().enumerate() {
        let sep = if i == 0 { "" } else { ":" };
        let _ = write!(text, "{sep}{byte:02x}");
    }
    text
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The MAC address of `ifname`, from the `link/ether` field of `ip -o link show`.
fn read_mac(ns: &Netns, ifname: &str) -> io::Result<[u8; 6]> {
    let out = ns.ip(&["-o", "link", "show", "dev", ifname])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    words
        .find(|&w| w == "link/ether")
        .and_then(|_| words.next())
        .and_then(parse_mac)
        .ok_or_else(|| {
            io::Error::other(format!(
                "no link/ether address for {ifname} in {}: {text}",
                ns.name()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::{format_mac, parse_mac};

    #[test]
    fn mac_text_round_trip() {
        let mac = [0x02, 0x00, 0x5e, 0x10, 0xab, 0xff];
        assert_eq!(format_mac(mac), "02:00:5e:10:ab:ff");
        assert_eq!(parse_mac("02:00:5e:10:ab:ff"), Some(mac));
    }

    #[test]
    fn mac_text_malformed() {
        assert_eq!(parse_mac("02:00:5e:10:ab"), None);
        assert_eq!(parse_mac("02:00:5e:10:ab:ff:00"), None);
        assert_eq!(parse_mac("02:00:5e:10:ab:zz"), None);
        assert_eq!(parse_mac(""), None);
    }
}
