//! The fleet: every client's state on one thread, one receiving conn for all of them.
//!
//! # Why one default conn and not a conn per client
//!
//! A client per `RUdpConn` (its own `EtherConn`, so its own MAC) gets unicast replies by exact
//! key, but a server answers a client with the broadcast flag to `ff:ff:ff:ff:ff:ff`, which no
//! exact key matches: those frames go to every conn registered with "receive multicast", so
//! each reply would be copied into all N clients' queues and N-1 copies thrown away (O(N^2)
//! copies, and queue overflow long before 1,000 clients). A `SharedEtherConn` does not help:
//! it shares one MAC between endpoints, and every client needs its own.
//!
//! So the fleet registers ONE `EtherConn` as the relay's default conn. It receives the frames
//! no exact key matches: broadcast replies (no receive-multicast conn on their VLAN) and
//! unicast replies to client MACs (no conn registered for them), on any VLAN stack. Each
//! reply is copied once, into that conn's queue, and the fleet finds the client by the xid
//! (a hash map), then checks `chaddr` and the VLAN stack. Sending needs no conn per client
//! either: each frame is built with the client's own source MAC and VLAN stack
//! (`build_udp_frame` through `EtherConn::send_built`). The state of a client is a few dozen
//! bytes, and all of them run on the calling thread: with the relay's receive thread that is
//! two threads for any fleet size.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::vlan::VlanStack;
use etherconn_core::wire::{EtherType, MacAddr};
use etherconn_core::VlanIds;
use etherconn_relay::{EtherConn, EtherConnConfig};
use etherconn_relay::{PacketRelay, RelayStats, RxFrame};

use crate::client::{ClientState, Step, Timing};
use crate::mac::client_mac;
use crate::message::{
    decode_reply, encode_request, NotAReply, Reply, ReplyKind, Request, RequestHeader, CLIENT_PORT,
    SERVER_PORT,
};
use crate::report::{Counters, Failure, FleetReport, Lease, RelayDelta};

// The settings live in their own module, below both the fleet and its report; they stay
// nameable from here, where they were first.
pub use crate::config::FleetConfig;

/// IPv4 TTL of the requests (what common DHCP clients use).
const TTL: u8 = 64;
/// The longest the loop sleeps in one receive call, so that it notices due starts and timers.
const MAX_POLL: Duration = Duration::from_millis(100);

/// Why a fleet could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// A setting is out of range.
    #[error("invalid fleet configuration: {0}")]
    InvalidConfig(&'static str),
    /// The relay refused the receiving conn (another conn is its default conn, or it
    /// stopped).
    #[error("cannot register the fleet's receiving conn: {0}")]
    Register(#[source] etherconn_relay::RelayError),
    /// The relay stopped while the fleet ran.
    #[error("the relay stopped during the run: {0}")]
    RelayStopped(#[source] io::Error),
}

/// One emulated client.
#[derive(Debug)]
struct Client {
    mac: MacAddr,
    vlans: VlanStack,
    state: ClientState,
    /// The current transaction id.
    xid: u32,
    /// Bumped whenever a timer is armed; a popped timer with another value is stale.
    timer_seq: u32,
    retransmits: u32,
    naks: u32,
}

/// A DHCPv4 client fleet on one relay; see the [module docs](self) for the design.
#[derive(Debug)]
pub struct Fleet {
    conn: EtherConn,
    config: FleetConfig,
    timing: Timing,
    clients: Vec<Client>,
    /// Transaction id -> client index, for every xid a client ever used (late replies to an
    /// old transaction are told apart from strays).
    by_xid: HashMap<u32, u32>,
    next_xid: u32,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    counters: Counters,
    leases: Vec<Lease>,
    failures: Vec<Failure>,
    first_send: Option<Instant>,
    last_ack: Option<Instant>,
    finished: usize,
    scratch: Vec<u8>,
}

impl Fleet {
    /// Prepares `config.clients` clients on `relay` and registers the receiving conn as the
    /// relay's default conn (so the relay must have none).
    pub fn new(relay: Arc<dyn PacketRelay>, config: FleetConfig) -> Result<Fleet, FleetError> {
        config.check().map_err(FleetError::InvalidConfig)?;
        let conn_config = EtherConnConfig::default()
            .ethertypes(&[EtherType::IPV4])
            .default_conn(true)
            .queue_depth(config.queue_depth);
        let conn = EtherConn::new(relay, config.receiver_mac, &[], conn_config)
            .map_err(FleetError::Register)?;
        let clients = (0..config.clients)
            .map(|i| Client {
                mac: client_mac(config.mac_seed, i as u64),
                vlans: config.vlans.stack(i),
                state: ClientState::new(),
                xid: 0,
                timer_seq: 0,
                retransmits: 0,
                naks: 0,
            })
            .collect();
        Ok(Fleet {
            conn,
            timing: config.timing(),
            clients,
            by_xid: HashMap::with_capacity(config.clients.min(1 << 20)),
            next_xid: initial_xid(),
            timers: BinaryHeap::new(),
            counters: Counters::default(),
            leases: Vec::new(),
            failures: Vec::new(),
            first_send: None,
            last_ack: None,
            finished: 0,
            scratch: Vec::with_capacity(576),
            config,
        })
    }

    /// Runs every client to its end (bound or failed) and reports. Returns early only when
    /// the relay stops.
    pub fn run(mut self) -> Result<FleetReport, FleetError> {
        let relay_before = self.conn.relay().stats();
        let started = Instant::now();
        let n = self.clients.len();
        let mut next_client = 0usize;
        let mut next_start = started;
        while self.finished < n {
            let now = Instant::now();
            let in_flight = next_client - self.finished;
            let mut can_start = in_flight < self.config.window && next_client < n;
            while can_start && next_start <= now {
                self.begin(next_client, now)?;
                next_client += 1;
                if let Some(rate) = self.config.rate {
                    next_start += Duration::from_secs_f64(1.0 / rate);
                }
                can_start = next_client - self.finished < self.config.window && next_client < n;
            }
            self.fire_timers(now)?;
            let mut wait = self
                .timers
                .peek()
                .map_or(MAX_POLL, |Reverse((when, _, _))| {
                    when.saturating_duration_since(now)
                })
                .min(MAX_POLL);
            if can_start {
                wait = wait.min(next_start.saturating_duration_since(now));
            }
            if self.finished == n {
                break;
            }
            match self.conn.recv_frame_timeout(Some(wait)) {
                Ok(rx) => {
                    self.on_frame(&rx)?;
                    drop(rx);
                    // Drain what else is queued before looking at the clock again.
                    loop {
                        match self.conn.recv_frame_timeout(Some(Duration::ZERO)) {
                            Ok(rx) => self.on_frame(&rx)?,
                            Err(e) if is_timeout(&e) => break,
                            Err(e) => return Err(FleetError::RelayStopped(e)),
                        }
                    }
                }
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(FleetError::RelayStopped(e)),
            }
        }
        let ended = Instant::now();
        let relay_after = self.conn.relay().stats();
        Ok(self.report(started, ended, &relay_before, &relay_after))
    }

    fn new_xid(&mut self, idx: usize) -> u32 {
        let xid = self.next_xid;
        self.next_xid = self.next_xid.wrapping_add(1);
        self.by_xid.insert(xid, idx as u32);
        self.clients[idx].xid = xid;
        xid
    }

    /// Starts client `idx` at DISCOVER.
    fn begin(&mut self, idx: usize, now: Instant) -> Result<(), FleetError> {
        self.new_xid(idx);
        self.first_send.get_or_insert(now);
        let step = self.clients[idx].state.discover(&self.timing, now);
        self.apply(idx, step, now)
    }

    fn fire_timers(&mut self, now: Instant) -> Result<(), FleetError> {
        while let Some(&Reverse((when, idx, seq))) = self.timers.peek() {
            if when > now {
                break;
            }
            self.timers.pop();
            let idx = idx as usize;
            let client = &mut self.clients[idx];
            if client.timer_seq != seq || client.state.finished() {
                continue;
            }
            let step = client.state.on_timer(&self.timing, now);
            self.apply(idx, step, now)?;
        }
        Ok(())
    }

    fn on_frame(&mut self, rx: &RxFrame) -> Result<(), FleetError> {
        let Some(udp) = rx.info.udp() else {
            self.counters.non_dhcp += 1;
            return Ok(());
        };
        if udp.local.port() != CLIENT_PORT || udp.remote.port() != SERVER_PORT {
            self.counters.non_dhcp += 1;
            return Ok(());
        }
        let payload = rx.frame().get(udp.payload.range()).unwrap_or(&[]);
        let reply = match decode_reply(payload) {
            Ok(r) => r,
            Err(NotAReply::Malformed) => {
                self.counters.malformed += 1;
                return Ok(());
            }
            Err(NotAReply::Other) => {
                self.counters.non_dhcp += 1;
                return Ok(());
            }
        };
        match reply.kind {
            ReplyKind::Offer => self.counters.offers += 1,
            ReplyKind::Ack => self.counters.acks += 1,
            ReplyKind::Nak => self.counters.naks += 1,
        }
        let Some(&idx) = self.by_xid.get(&reply.xid) else {
            self.counters.stray += 1;
            return Ok(());
        };
        let idx = idx as usize;
        let client = &self.clients[idx];
        if reply.mac != client.mac
            || VlanIds::from_stack(&rx.info.vlans()) != VlanIds::from_stack(&client.vlans)
        {
            self.counters.stray += 1;
            return Ok(());
        }
        if reply.xid != client.xid {
            self.counters.late += 1;
            return Ok(());
        }
        let now = Instant::now();
        let step = self.clients[idx].state.on_reply(&self.timing, &reply, now);
        if step == Step::Ignore {
            self.counters.late += 1;
            return Ok(());
        }
        if step == Step::Bound {
            self.record_lease(idx, &reply, rx.info.src_mac, now);
        }
        self.apply(idx, step, now)
    }

    fn record_lease(&mut self, idx: usize, reply: &Reply, server_mac: MacAddr, now: Instant) {
        let c = &self.clients[idx];
        let started = c.state.started.unwrap_or(now);
        self.last_ack = Some(now);
        self.leases.push(Lease {
            client: idx,
            mac: c.mac,
            vlans: c.vlans.as_slice().iter().map(|t| t.id.get()).collect(),
            ip: reply.yiaddr,
            server: reply.server.unwrap_or(Ipv4Addr::UNSPECIFIED),
            server_mac,
            lease_secs: reply.lease_secs,
            setup_ms: now.saturating_duration_since(started).as_secs_f64() * 1e3,
            retransmits: c.retransmits,
            naks: c.naks,
            restarts: c.state.restarts,
        });
    }

    /// Carries out what a client's state machine asked for.
    fn apply(&mut self, idx: usize, step: Step, now: Instant) -> Result<(), FleetError> {
        match step {
            Step::Ignore => Ok(()),
            Step::Send {
                request,
                wait,
                retransmit,
            } => {
                if retransmit {
                    self.counters.retransmits += 1;
                    self.clients[idx].retransmits += 1;
                }
                self.send(idx, request, now)?;
                let c = &mut self.clients[idx];
                c.timer_seq = c.timer_seq.wrapping_add(1);
                self.timers
                    .push(Reverse((now + wait, idx as u32, c.timer_seq)));
                Ok(())
            }
            Step::Restart { nak } => {
                self.counters.restarts += 1;
                if nak {
                    self.clients[idx].naks += 1;
                }
                self.new_xid(idx);
                let step = self.clients[idx].state.discover(&self.timing, now);
                self.apply(idx, step, now)
            }
            Step::Bound => {
                self.finished += 1;
                Ok(())
            }
            Step::Failed(reason) => {
                let c = &self.clients[idx];
                self.failures.push(Failure {
                    client: idx,
                    mac: c.mac,
                    reason,
                });
                self.finished += 1;
                Ok(())
            }
        }
    }

    fn send(&mut self, idx: usize, request: Request, now: Instant) -> Result<(), FleetError> {
        let c = &self.clients[idx];
        let header = RequestHeader {
            mac: c.mac,
            xid: c.xid,
            secs: c.state.secs(now),
            broadcast: self.config.broadcast_flag,
        };
        if encode_request(&mut self.scratch, &header, request).is_err() {
            // Only an impossible message (a chaddr over 16 bytes) fails to encode.
            self.counters.send_errors += 1;
            return Ok(());
        }
        match request {
            Request::Discover => self.counters.discovers += 1,
            Request::Select { .. } => self.counters.requests += 1,
        }
        let frame = UdpFrame {
            src_mac: c.mac,
            dst_mac: MacAddr::BROADCAST,
            vlans: c.vlans.as_slice(),
            src: SocketAddr::from((Ipv4Addr::UNSPECIFIED, CLIENT_PORT)),
            dst: SocketAddr::from((Ipv4Addr::BROADCAST, SERVER_PORT)),
            ttl: TTL,
            dscp: 0,
            payload: &self.scratch,
        };
        match self.conn.send_built(|buf| build_udp_frame(buf, &frame)) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Err(FleetError::RelayStopped(e)),
            // A lost request: the armed timer retransmits it.
            Err(_) => {
                self.counters.send_errors += 1;
                Ok(())
            }
        }
    }

    fn report(
        mut self,
        started: Instant,
        ended: Instant,
        before: &RelayStats,
        after: &RelayStats,
    ) -> FleetReport {
        self.leases.sort_by_key(|l| l.client);
        self.failures.sort_by_key(|f| f.client);
        let first = self.first_send.unwrap_or(started);
        let dora_secs = self
            .last_ack
            .map_or(0.0, |t| t.saturating_duration_since(first).as_secs_f64());
        FleetReport::new(
            &self.config,
            self.leases,
            self.failures,
            self.counters,
            dora_secs,
            ended.saturating_duration_since(started).as_secs_f64(),
            RelayDelta::between(before, after),
        )
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A starting transaction id that differs between runs, so that a server does not take a
/// new run's requests for retransmissions of the last run's.
fn initial_xid() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed =
        (nanos ^ u64::from(std::process::id()).rotate_left(32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 32) as u32
}
