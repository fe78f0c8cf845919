//! `echo`: UDP echo on N etherconn endpoints of an existing interface, answering each datagram
//! to its sender's MAC, VLAN stack, address and port, and ARP for the endpoints' addresses.

use std::io::Write;
use std::time::Duration;

use crate::addr::describe_vlans;
use crate::cli::EchoArgs;
use crate::endpoint::{EndpointSet, TxSpec, BATCH, FRAME_ROOM};
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
        answer_arp: true,
        queue_depth: args
            .queue_depth
            .map_or_else(|| L2UdpConfig::default_queue_depth(n), |d| d as usize),
        tx_path: TxPath::Batch,
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

    let mut staged = vec![0u8; BATCH * FRAME_ROOM].into_boxed_slice();
    let mut lens = [0usize; BATCH];
    let mut specs: Vec<TxSpec> = Vec::with_capacity(BATCH);
    let (mut received, mut echoed, mut failed_bursts) = (0u64, 0u64, 0u64);
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
            let len = d.payload.len().min(FRAME_ROOM);
            staged[k * FRAME_ROOM..k * FRAME_ROOM + len].copy_from_slice(&d.payload[..len]);
            lens[k] = len;
            specs.push(TxSpec {
                from: d.endpoint,
                to: d.from,
            });
        });
        if let Err(e) = got {
            break Err(Failure::new(format!(
                "receive on {} failed: {e}",
                args.iface
            )));
        }
        received += specs.len() as u64;
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
        "echo: received {received} datagrams, echoed {echoed}, failed send bursts {failed_bursts}{}",
        last_error.map_or_else(String::new, |e| format!(" (last: {e})"))
    );
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
