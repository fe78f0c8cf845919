//! `echo`: UDP echo on N etherconn endpoints of an existing interface, IPv4 or IPv6, answering
//! each datagram to its sender's MAC, VLAN stack, address and port; ARP or IPv6 neighbour
//! discovery (and pings) for the endpoints' addresses are answered by etherconn-udp's
//! `Neighbours` responder.
//!
//! It answers only where a host could, so that a forged request cannot turn it into a
//! reflector: never to a group (or all-zero) MAC, a martian address or port 0
//! ([`etherconn_core::martian`]), the broadcast or network address of its own subnet, or one
//! of its own addresses. Those requests are counted by reason ([`Refused`]) and printed at the
//! end. (The relay already drops frames from group source MACs, and the endpoint set drops
//! IPv4 datagrams with the reserved flag set; see `l2udp`.)

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use etherconn_core::martian::{self, Martian};

use crate::addr::{addr_index, describe_vlans, IpCidr, Ipv4Cidr};
use crate::cli::EchoArgs;
use crate::endpoint::{EndpointSet, Peer, TxSpec, BATCH, FRAME_ROOM};
use crate::error::{Failure, Result};
use crate::l2udp::{L2UdpConfig, L2UdpEndpoints, TxPath};
use crate::outcome::Outcome;
use crate::sys;

/// Runs `echo` until SIGINT or SIGTERM.
pub fn run(args: &EchoArgs) -> Result<Outcome> {
    // The addresses and MACs stay inside their ranges: `check` saw to it.
    let n = args.endpoints as usize;
    let cfg = L2UdpConfig {
        base_mac: args.mac,
        base_ip: args.ip.addr,
        endpoints: n,
        port: args.port,
        vlans: args.vlans.stack(),
        neighbours: true,
        queue_depth: args
            .queue_depth
            .map_or_else(|| L2UdpConfig::default_queue_depth(n), |d| d as usize),
        tx_path: TxPath::Batch,
        pcap: args.pcap.clone(),
        ring: None,
        relay_threads: 1,
        relay_cpus: Vec::new(),
    };
    let mut set = L2UdpEndpoints::open_rawsock(&args.iface, &cfg)?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "echo: ready on {}: {n} endpoint(s), MAC {}..{}, UDP {}..{}, VLANs {}; \
             SIGINT/SIGTERM stops",
            args.iface,
            set.mac(0),
            set.mac(n - 1),
            set.local_addr(0),
            set.local_addr(n - 1),
            describe_vlans(&cfg.vlans)
        );
        let _ = out.flush();
    }

    let served = Served {
        subnet: args.ip,
        first: args.ip.addr,
        count: n,
    };
    let mut staged = vec![0u8; BATCH * FRAME_ROOM].into_boxed_slice();
    let mut lens = [0usize; BATCH];
    let mut specs: Vec<TxSpec> = Vec::with_capacity(BATCH);
    let (mut received, mut echoed, mut failed_bursts) = (0u64, 0u64, 0u64);
    let mut refused = Refused::default();
    let mut last_error = None;
    let result = loop {
        if sys::stop_requested() {
            break Ok(());
        }
        specs.clear();
        let got = set.recv_burst(BATCH, Duration::from_millis(10), &mut |d| {
            let k = specs.len();
            if k == BATCH {
                return; // never: recv_burst hands over at most BATCH
            }
            if let Some(why) = refusal(&d.from, d.to, &served) {
                refused.note(why);
                return;
            }
            let len = d.payload.len().min(FRAME_ROOM);
            staged[k * FRAME_ROOM..k * FRAME_ROOM + len].copy_from_slice(&d.payload[..len]);
            lens[k] = len;
            specs.push(TxSpec {
                from: d.endpoint,
                to: d.from,
            });
        });
        match got {
            Ok(got) => received += got as u64,
            Err(e) => {
                break Err(Failure::new(format!(
                    "receive on {} failed: {e}",
                    args.iface
                )))
            }
        }
        let mut off = 0;
        while off < specs.len() {
            let sent = set.send_burst(&specs[off..], &mut |k, buf| {
                let j = off + k;
                buf[..lens[j]].copy_from_slice(&staged[j * FRAME_ROOM..j * FRAME_ROOM + lens[j]]);
                lens[j]
            });
            match sent {
                Ok(0) => break,
                Ok(s) => {
                    echoed += s as u64;
                    off += s;
                }
                Err(e) => {
                    failed_bursts += 1;
                    last_error = Some(e.to_string());
                    break;
                }
            }
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "echo: received {received} datagrams, echoed {echoed}, refused {}, failed send bursts \
         {failed_bursts}{}",
        refused.total(),
        last_error.map_or_else(String::new, |e| format!(" (last: {e})"))
    );
    let _ = writeln!(out, "echo: refused {refused}");
    let counters = set
        .counters()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    let _ = writeln!(out, "echo: {counters}");
    let _ = out.flush();
    result.map(|()| Outcome::Done)
}

/// The addresses `echo` serves: its subnet and its endpoints' range.
#[derive(Clone, Copy, Debug)]
struct Served {
    subnet: IpCidr,
    first: IpAddr,
    count: usize,
}

/// Why `echo` leaves a datagram unanswered: no host could answer it, or a host would have
/// dropped it on receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// The sender's MAC is a group or the all-zero address: a reply would reach every station
    /// of the group, or none.
    SenderMac,
    /// A martian source or destination address, or port 0 ([`etherconn_core::martian`]).
    Martian(Martian),
    /// The source is the broadcast or network address of the served IPv4 subnet: a host finds it
    /// as a broadcast route, drops it as martian and cannot send to it as to a host.
    SubnetBroadcast,
    /// The source is one of the served addresses: a host drops its own address as a source
    /// (Linux unless `accept_local`); answering could set two endpoints, or two echo servers,
    /// answering each other for ever.
    OwnAddress,
}

/// Whether `echo` refuses to answer a datagram from `from` to `to`, and why.
fn refusal(from: &Peer, to: SocketAddr, served: &Served) -> Option<Refusal> {
    let mac = from.mac;
    if mac.station_problem().is_some() {
        return Some(Refusal::SenderMac);
    }
    if let Some(m) = martian::udp(from.addr, to) {
        return Some(Refusal::Martian(m));
    }
    let src = from.addr.ip();
    if let (IpAddr::V4(src), Some(subnet)) = (src, served.subnet.v4()) {
        if is_subnet_broadcast(src, subnet) {
            return Some(Refusal::SubnetBroadcast);
        }
    }
    if addr_index(served.first, served.count, src).is_some() {
        return Some(Refusal::OwnAddress);
    }
    None
}

/// Whether `ip` is the broadcast or the network address of `subnet` (prefixes of 31 and 32
/// have neither, RFC 3021).
fn is_subnet_broadcast(ip: Ipv4Addr, subnet: Ipv4Cidr) -> bool {
    if subnet.prefix >= 31 {
        return false;
    }
    let mask = u32::MAX
        .checked_shl(32 - u32::from(subnet.prefix))
        .unwrap_or(0);
    let network = u32::from(subnet.addr) & mask;
    let ip = u32::from(ip);
    ip == network || ip == network | !mask
}

/// Datagrams `echo` refused, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Refused {
    sender_mac: u64,
    martian_source: u64,
    martian_destination: u64,
    port_zero: u64,
    subnet_broadcast: u64,
    own_address: u64,
}

impl Refused {
    fn note(&mut self, why: Refusal) {
        let counter = match why {
            Refusal::SenderMac => &mut self.sender_mac,
            Refusal::Martian(Martian::Source) => &mut self.martian_source,
            Refusal::Martian(Martian::Port) => &mut self.port_zero,
            // Destination, and any kind a later etherconn adds.
            Refusal::Martian(_) => &mut self.martian_destination,
            Refusal::SubnetBroadcast => &mut self.subnet_broadcast,
            Refusal::OwnAddress => &mut self.own_address,
        };
        *counter += 1;
    }

    fn total(&self) -> u64 {
        self.sender_mac
            + self.martian_source
            + self.martian_destination
            + self.port_zero
            + self.subnet_broadcast
            + self.own_address
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sender_mac={} martian_source={} martian_destination={} port_zero={} \
             subnet_broadcast={} own_address={}",
            self.sender_mac,
            self.martian_source,
            self.martian_destination,
            self.port_zero,
            self.subnet_broadcast,
            self.own_address
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> Served {
        Served {
            subnet: "10.56.0.10/24".parse().unwrap(),
            first: "10.56.0.10".parse().unwrap(),
            count: 4,
        }
    }

    fn from(mac: &str, addr: &str) -> Peer {
        Peer {
            mac: mac.parse().unwrap(),
            addr: addr.parse().unwrap(),
        }
    }

    const HOST_MAC: &str = "02:aa:00:00:00:01";
    const TO: &str = "10.56.0.11:9000";

    fn judge(mac: &str, addr: &str) -> Option<Refusal> {
        refusal(&from(mac, addr), TO.parse().unwrap(), &served())
    }

    #[test]
    fn answers_an_ordinary_sender() {
        assert_eq!(judge(HOST_MAC, "10.56.0.1:40000"), None);
        // Off the subnet too (through a router), and at the edges of the served range.
        assert_eq!(judge(HOST_MAC, "198.51.100.7:53"), None);
        assert_eq!(judge(HOST_MAC, "10.56.0.9:1"), None);
        assert_eq!(judge(HOST_MAC, "10.56.0.14:1"), None);
    }

    #[test]
    fn never_answers_a_group_or_zero_mac() {
        for mac in [
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "33:33:00:00:00:01",
            "03:00:00:00:00:01",
            "00:00:00:00:00:00",
        ] {
            assert_eq!(
                judge(mac, "10.56.0.1:40000"),
                Some(Refusal::SenderMac),
                "{mac}"
            );
        }
    }

    #[test]
    fn never_answers_martians_or_port_zero() {
        for src in [
            "255.255.255.255:9",
            "224.0.0.1:9",
            "127.0.0.1:9",
            "0.0.0.0:9",
            "0.1.2.3:9",
            "240.0.0.1:9",
        ] {
            assert_eq!(
                judge(HOST_MAC, src),
                Some(Refusal::Martian(Martian::Source)),
                "{src}"
            );
        }
        assert_eq!(
            judge(HOST_MAC, "10.56.0.1:0"),
            Some(Refusal::Martian(Martian::Port))
        );
    }

    #[test]
    fn never_answers_its_subnet_broadcast_or_own_addresses() {
        for src in ["10.56.0.255:9", "10.56.0.0:9"] {
            assert_eq!(
                judge(HOST_MAC, src),
                Some(Refusal::SubnetBroadcast),
                "{src}"
            );
        }
        for src in ["10.56.0.10:9", "10.56.0.13:9"] {
            assert_eq!(judge(HOST_MAC, src), Some(Refusal::OwnAddress), "{src}");
        }
        // A /31 or /32 has no broadcast address.
        let p2p = Served {
            subnet: "10.56.0.10/31".parse().unwrap(),
            first: "10.56.0.10".parse().unwrap(),
            count: 1,
        };
        let peer = from(HOST_MAC, "10.56.0.11:9");
        assert_eq!(
            refusal(&peer, "10.56.0.10:9000".parse().unwrap(), &p2p),
            None
        );
        assert!(is_subnet_broadcast(
            "255.255.255.255".parse().unwrap(),
            "10.0.0.1/0".parse().unwrap()
        ));
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let mut r = Refused::default();
        for why in [
            Refusal::SenderMac,
            Refusal::Martian(Martian::Source),
            Refusal::Martian(Martian::Source),
            Refusal::Martian(Martian::Destination),
            Refusal::Martian(Martian::Port),
            Refusal::SubnetBroadcast,
            Refusal::OwnAddress,
        ] {
            r.note(why);
        }
        assert_eq!(r.total(), 7);
        assert_eq!(
            r.to_string(),
            "sender_mac=1 martian_source=2 martian_destination=1 port_zero=1 \
             subnet_broadcast=1 own_address=1"
        );
    }
}
