//! `send`: UDP datagrams from N etherconn endpoints of an existing interface to one peer (an
//! `echo`, say), round robin, at full speed or a given rate; counts the echoes that come back
//! and their round trip times.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::addr::describe_vlans;
use crate::cli::SendArgs;
use crate::endpoint::{EndpointSet, Peer, RxDatagram, TxSpec, BATCH};
use crate::error::{Context, Failure, Result};
use crate::l2udp::{L2UdpConfig, L2UdpEndpoints};
use crate::outcome::Outcome;
use crate::payload::{self, Checker};
use crate::sys;

/// Round trip times of the echoes, in microseconds.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Rtt {
    min_us: f64,
    avg_us: f64,
    max_us: f64,
    #[serde(skip)]
    sum_ns: u128,
    #[serde(skip)]
    count: u64,
}

impl Rtt {
    fn add(&mut self, ns: u64) {
        let us = ns as f64 / 1e3;
        if self.count == 0 || us < self.min_us {
            self.min_us = us;
        }
        self.max_us = self.max_us.max(us);
        self.sum_ns += u128::from(ns);
        self.count += 1;
        self.avg_us = self.sum_ns as f64 / self.count as f64 / 1e3;
    }
}

/// The echoes that came back.
struct Echoes {
    checker: Checker,
    rtt: Rtt,
    received: u64,
    other: u64,
    dst: SocketAddr,
    start: Instant,
}

impl Echoes {
    fn note(&mut self, d: &RxDatagram<'_>) {
        if d.from.addr != self.dst {
            self.other += 1;
            return;
        }
        self.received += 1;
        self.checker.check(d.endpoint, d.payload);
        if let Some(t) = payload::time_ns(d.payload) {
            let now = self.start.elapsed().as_nanos() as u64;
            self.rtt.add(now.saturating_sub(t));
        }
    }
}

/// What `send --json` prints.
#[derive(Debug, Serialize)]
struct SendReport {
    interface: String,
    endpoints: usize,
    dst: SocketAddr,
    dst_mac: String,
    vlans: String,
    payload: usize,
    seconds: f64,
    sent: u64,
    received: u64,
    tx_pps: f64,
    rx_pps: f64,
    loss: f64,
    out_of_order: u64,
    bad_payload: u64,
    other_datagrams: u64,
    send_errors: u64,
    rtt: Option<Rtt>,
    counters: std::collections::BTreeMap<String, u64>,
    interrupted: bool,
}

/// Runs `send`.
pub fn run(args: &SendArgs) -> Result<Outcome> {
    let n = args.endpoints as usize;
    let vlans = args.vlans.stack();
    // Fits the link with the VLAN tags: `check` saw to it.
    let plen = args.payload as usize;
    let cfg = L2UdpConfig {
        base_mac: args.mac,
        base_ip: args.base_ip(),
        endpoints: n,
        port: args.port,
        vlans: vlans.clone(),
        neighbours: true,
        queue_depth: L2UdpConfig::default_queue_depth(n),
        tx_path: args.tx_path,
        pcap: args.pcap.clone(),
        ring: None,
        relay_threads: 1,
        relay_cpus: Vec::new(),
    };
    let mut set = L2UdpEndpoints::open_rawsock(&args.iface, &cfg)?;
    let proto = if args.dst.is_ipv4() {
        "ARP"
    } else {
        "neighbour discovery"
    };
    let dst_mac = match args.dst_mac {
        Some(m) => m,
        None => match set.resolve(0, args.dst.ip(), Duration::from_secs(3)) {
            Some(m) => m,
            // The resolver gave up early for Ctrl-C: not an unanswered request.
            None if sys::stop_requested() => {
                return Err(Failure::interrupted(format_args!(
                    "resolving the destination with {proto}"
                )))
            }
            None => {
                return Err(Failure::new(format!(
                    "no {proto} answer for {} on {} (VLANs {}) within 3 s; pass --dst-mac",
                    args.dst.ip(),
                    args.iface,
                    describe_vlans(&vlans)
                )))
            }
        },
    };
    let dst = Peer {
        mac: dst_mac,
        addr: args.dst,
    };
    eprintln!(
        "send: {n} endpoint(s) from {}/{} on {} (VLANs {}) -> {} at {dst_mac}, {plen} B, {} s{}",
        args.mac,
        args.base_ip(),
        args.iface,
        describe_vlans(&vlans),
        args.dst,
        args.seconds,
        args.rate
            .map_or_else(|| ", full speed".to_owned(), |r| format!(", {r} pps"))
    );

    let specs: Vec<TxSpec> = (0..n + BATCH)
        .map(|i| TxSpec {
            from: i % n,
            to: dst,
        })
        .collect();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.seconds);
    let mut seq = vec![0u64; n];
    let mut echoes = Echoes {
        checker: Checker::new(n, plen),
        rtt: Rtt::default(),
        received: 0,
        other: 0,
        dst: dst.addr,
        start,
    };
    let (mut sent, mut errors, mut at) = (0u64, 0u64, 0usize);
    let mut last_error = None;
    let recv = |set: &mut L2UdpEndpoints, echoes: &mut Echoes, wait| {
        set.recv_burst(BATCH, wait, &mut |d| echoes.note(d))
            .map_err(|e| Failure::new(format!("receive on {} failed: {e}", args.iface)))
    };

    loop {
        let now = Instant::now();
        if now >= end || sys::stop_requested() {
            break;
        }
        let elapsed = now.duration_since(start).as_secs_f64();
        let burst = match args.rate {
            None => BATCH,
            Some(r) => ((r as f64 * elapsed) as u64)
                .saturating_sub(sent)
                .min(BATCH as u64) as usize,
        };
        if burst == 0 {
            // Ahead of the rate: wait for echoes until the next datagram is due.
            let r = args.rate.unwrap_or(1) as f64;
            let due = start + Duration::from_secs_f64((sent + 1) as f64 / r);
            let wait = due
                .saturating_duration_since(now)
                .min(Duration::from_millis(10));
            recv(&mut set, &mut echoes, wait)?;
            continue;
        }
        let batch = &specs[at..at + burst];
        let result = set.send_burst(batch, &mut |k, buf| {
            let e = batch[k].from;
            let s = seq[e];
            seq[e] += 1;
            let t = (start.elapsed().as_nanos() as u64).max(1);
            payload::write(buf, plen, s, t)
        });
        let done = match result {
            Ok(s) => s,
            Err(e) => {
                errors += 1;
                last_error = Some(e.to_string());
                if errors > 10_000 && sent == 0 {
                    return Err(Failure::new(format!(
                        "sending on {} fails: {e}",
                        args.iface
                    )));
                }
                0
            }
        };
        for spec in batch[done..].iter().rev() {
            seq[spec.from] -= 1;
        }
        sent += done as u64;
        at = (at + done) % n;
        recv(&mut set, &mut echoes, Duration::ZERO)?;
    }
    let send_seconds = start.elapsed().as_secs_f64();
    // Echoes still on their way: until all are back, or nothing came for 500 ms (2 s at most).
    let drain_end = Instant::now() + Duration::from_secs(2);
    let mut quiet_since = Instant::now();
    while Instant::now() < drain_end && !sys::stop_requested() {
        let before = echoes.received;
        if before >= sent {
            break;
        }
        recv(&mut set, &mut echoes, Duration::from_millis(50))?;
        if echoes.received != before {
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= Duration::from_millis(500) {
            break;
        }
    }
    let received_total = echoes.received;
    let (checker, rtt) = (&echoes.checker, echoes.rtt);
    let report = SendReport {
        interface: args.iface.clone(),
        endpoints: n,
        dst: dst.addr,
        dst_mac: dst_mac.to_string(),
        vlans: describe_vlans(&vlans),
        payload: plen,
        seconds: send_seconds,
        sent,
        received: received_total,
        tx_pps: sent as f64 / send_seconds,
        rx_pps: received_total as f64 / send_seconds,
        loss: if sent == 0 {
            0.0
        } else {
            (1.0 - received_total as f64 / sent as f64).max(0.0)
        },
        out_of_order: checker.out_of_order,
        bad_payload: checker.bad,
        other_datagrams: echoes.other,
        send_errors: errors,
        rtt: (rtt.count > 0).then_some(rtt),
        counters: set.counters().into_iter().collect(),
        interrupted: sys::stop_requested(),
    };
    drop(set);
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = serde_json::to_string_pretty(&report).context(|| "cannot encode JSON")?;
        let _ = writeln!(out, "{json}");
    } else {
        let _ = writeln!(
            out,
            "send: sent {} datagrams in {:.2} s ({:.0} pps); {} echoes back ({:.0} pps), loss {:.2}%, \
             {} out of order, {} bad, {} send errors{}",
            report.sent,
            report.seconds,
            report.tx_pps,
            report.received,
            report.rx_pps,
            report.loss * 100.0,
            report.out_of_order,
            report.bad_payload,
            report.send_errors,
            last_error.map_or_else(String::new, |e| format!(" (last: {e})"))
        );
        if let Some(r) = report.rtt {
            let _ = writeln!(
                out,
                "send: round trip min {:.0} us, avg {:.0} us, max {:.0} us",
                r.min_us, r.avg_us, r.max_us
            );
        }
    }
    let _ = out.flush();
    Ok(if report.interrupted {
        Outcome::Interrupted
    } else {
        Outcome::Done
    })
}
