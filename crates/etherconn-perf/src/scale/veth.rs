//! Over a veth pair (root): an AF_PACKET sender in one namespace, a `RawSocketRelay` with a
//! fleet registered on it in the other, and the application reading every endpoint through a
//! `ReadySet` or an `Inbox`; the `veth:` scenarios measure the rate delivered under overload.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_rawsock::{PacketSocket, RawSocketRelay, RawSocketRelayConfig, SocketConfig};
use etherconn_rawsock::{TxBatcher, TxConfig};
use etherconn_relay::{Inbox, Mail, PacketRelay, ReadySet};
use etherconn_testbed::Testbed;

use super::dispatch::{frames, relay_drops, shuffled, Frames, FRAME_SET, WINDOW};
use super::fleet::{register, Fleet, Layout};
use super::procfs::relay_thread_stat;
use crate::error::Result;
use crate::taskstat::schedstat;

/// Start of the names of the testbed's namespaces (then the pid).
pub const NETNS_PREFIX: &str = "ecscale-";

/// Figures of one veth phase.
pub struct VethRate {
    /// Frames the relay delivered to endpoint queues, per second.
    pub delivered_pps: f64,
    /// Frames the sender handed to the kernel, per second.
    pub sent_pps: f64,
    /// Relay receive thread CPU ns per frame offered to the dispatcher.
    pub relay_cpu_ns: Option<f64>,
    /// Frames sent but never offered to the dispatcher (kernel drops: veth backlog, ring).
    pub lost_before_relay: i64,
    /// Frames the relay dropped (queue full, no buffer, L4 miss, invalid, miss).
    pub relay_drops: u64,
    /// Frames the consumer received, per second.
    pub received_pps: f64,
    /// Receive buffers the relay's pool allocated since it started: the consumer's peak
    /// backlog.
    pub rx_buffers: usize,
}
/// The application side: one thread serving every endpoint, told by a `ReadySet` which
/// ones have datagrams (no sweep over all of them), until `stop`; counts in `received`.
fn consume(fleet: &Fleet, set: &ReadySet, stop: &AtomicBool, received: &AtomicU64) {
    let mut buf = [0u8; 2048];
    let mut ready = Vec::with_capacity(fleet.len());
    while !stop.load(Ordering::Relaxed) {
        let n = set
            .wait(&mut ready, Some(Duration::from_millis(50)))
            .expect("wait");
        let mut got = 0u64;
        // Read ahead: with 100,000 endpoints receiving, the reader otherwise waits for each
        // endpoint's misses in turn.
        for (i, _) in ReadySet::read_ahead(&ready[..n], |t| fleet.watchable(t)) {
            while fleet.take(i, &mut buf).is_some() {
                got += 1;
            }
        }
        received.fetch_add(got, Ordering::Relaxed);
    }
}

/// How the application reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// A `ReadySet` says which endpoints have datagrams; each is read ([`consume`]).
    ReadySet,
    /// Every endpoint is attached to one `Inbox`, read in batches ([`consume_inbox`]).
    Inbox,
}

impl Reader {
    /// The reader of a scenario kind: `veth-inbox` and `rate-inbox` read an inbox.
    pub fn of(kind: &str) -> Reader {
        if kind.ends_with("-inbox") {
            Reader::Inbox
        } else {
            Reader::ReadySet
        }
    }
}

/// What the application thread reads from.
pub enum Source {
    /// A `ReadySet` watching every endpoint.
    Set(ReadySet),
    /// An `Inbox` every endpoint is attached to.
    Inbox(Inbox),
}

impl Source {
    /// `fleet` watched as `reader` reads; an inbox holds `inbox_capacity` frames.
    pub fn new(fleet: &Fleet, reader: Reader, inbox_capacity: usize) -> Source {
        match reader {
            Reader::ReadySet => Source::Set(fleet.ready_set()),
            Reader::Inbox => Source::Inbox(fleet.inbox(inbox_capacity)),
        }
    }

    /// Reads until `stop`, counting in `received`.
    pub fn consume(&self, fleet: &Fleet, stop: &AtomicBool, received: &AtomicU64) {
        match self {
            Source::Set(set) => consume(fleet, set, stop, received),
            Source::Inbox(inbox) => consume_inbox(inbox, stop, received),
        }
    }
}

/// Frames an inbox reader takes per `recv`.
const INBOX_BATCH: usize = 64;

/// The application side through an inbox: one thread taking every endpoint's datagrams in
/// arrival order, each copied out as `recv_from` would, until `stop`.
fn consume_inbox(inbox: &Inbox, stop: &AtomicBool, received: &AtomicU64) {
    let mut buf = [0u8; 2048];
    let mut mail = Vec::with_capacity(INBOX_BATCH);
    while !stop.load(Ordering::Relaxed) {
        inbox
            .recv(&mut mail, INBOX_BATCH, Some(Duration::from_millis(50)))
            .expect("recv");
        let mut got = 0u64;
        for m in &mail {
            if let Mail::Frame { frame, .. } = m {
                // A UDP endpoint's datagram, or an EtherConn's Ethernet payload.
                if etherconn_udp::read_datagram(frame, &mut buf).is_none() {
                    let p = frame.payload();
                    buf[..p.len()].copy_from_slice(p);
                }
                got += 1;
            }
        }
        received.fetch_add(got, Ordering::Relaxed);
    }
}

/// Sends `frames` in `order` from namespace `a` until `stop`, counting in `sent`.
fn sender(
    tb: &Testbed,
    frames: Arc<Frames>,
    order: Arc<Vec<u32>>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<std::io::Result<()>> {
    let ifname = tb.a_if.clone();
    tb.a.spawn_thread_in(move || {
        let sock = PacketSocket::open(&ifname, &SocketConfig::send_only()).unwrap();
        let mut tx = TxBatcher::new(&TxConfig::default()).unwrap();
        let mut at = 0;
        while !stop.load(Ordering::Relaxed) {
            while !tx.is_full() {
                tx.push(frames.get(order[at] as usize)).unwrap();
                at = (at + 1) % order.len();
            }
            let n = tx.flush(&sock).unwrap_or(0);
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    })
}

/// A fresh relay in namespace `b` with a fleet registered on it, the frames to send it and
/// what the application reads from: where a veth phase and a throughput search both start.
pub struct Rig {
    /// The relay on the veth end in namespace `b`.
    pub relay: Arc<dyn PacketRelay>,
    /// The endpoints registered on it, non-blocking.
    pub fleet: Fleet,
    /// Frames to the fleet's endpoints, round-robin.
    pub frames: Arc<Frames>,
    /// The order they are sent in.
    pub order: Arc<Vec<u32>>,
    /// What the application reads from.
    pub source: Source,
    /// The relay receive thread's `schedstat` file.
    pub relay_stat: Option<String>,
}

impl Rig {
    /// `layout` on a new relay on `tb`'s `b` end, each endpoint with a queue of `depth` frames
    /// (`None`: its type's default), read as `reader` with an inbox of `inbox_capacity`.
    pub fn new(
        tb: &Testbed,
        layout: Layout,
        depth: Option<usize>,
        reader: Reader,
        inbox_capacity: usize,
        seed: u64,
    ) -> Rig {
        let relay: Arc<dyn PacketRelay> =
            tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
                .unwrap()
                .unwrap();
        let fleet = register(relay.clone(), layout, depth).fleet;
        fleet.set_nonblocking();
        Rig {
            frames: Arc::new(frames(layout, FRAME_SET)),
            order: Arc::new(shuffled(FRAME_SET, seed)),
            relay_stat: relay_thread_stat(),
            source: Source::new(&fleet, reader, inbox_capacity),
            relay,
            fleet,
        }
    }

    /// CPU time of the relay's receive thread so far.
    pub fn relay_cpu(&self) -> Option<Duration> {
        self.relay_stat.as_deref().and_then(schedstat)
    }

    /// Drops the fleet (deregistering every endpoint), then stops the relay.
    pub fn finish(self) {
        let Rig {
            relay,
            fleet,
            source,
            ..
        } = self;
        drop(fleet);
        relay.stop();
        drop(source);
    }
}

/// One phase: a fresh relay in namespace `b` with `layout` registered on it, blasted from
/// namespace `a` for `secs` (after a warm-up), with a consumer draining every endpoint.
pub fn phase(tb: &Testbed, layout: Layout, reader: Reader, secs: f64, seed: u64) -> VethRate {
    let depth = (layout.endpoints() == 1).then_some(WINDOW as usize);
    let rig = Rig::new(
        tb,
        layout,
        depth,
        reader,
        etherconn_relay::DEFAULT_INBOX_CAPACITY,
        seed,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = AtomicU64::new(0);
    let relay = &rig.relay;
    let result = std::thread::scope(|s| {
        let consumer = s.spawn(|| rig.source.consume(&rig.fleet, &stop, &received));
        let tx = sender(
            tb,
            rig.frames.clone(),
            rig.order.clone(),
            stop.clone(),
            sent.clone(),
        );
        std::thread::sleep(Duration::from_millis(500));
        let snap = || {
            (
                Instant::now(),
                relay.stats(),
                sent.load(Ordering::Relaxed),
                received.load(Ordering::Relaxed),
                rig.relay_cpu(),
            )
        };
        let (t0, s0, sent0, recv0, cpu0) = snap();
        std::thread::sleep(Duration::from_secs_f64(secs));
        let (t1, s1, sent1, recv1, cpu1) = snap();
        stop.store(true, Ordering::Relaxed);
        tx.join().expect("sender").expect("enter namespace a");
        consumer.join().expect("consumer");
        let dt = (t1 - t0).as_secs_f64();
        let offered = s1.rx_offered - s0.rx_offered;
        VethRate {
            delivered_pps: (s1.rx_delivered - s0.rx_delivered) as f64 / dt,
            sent_pps: (sent1 - sent0) as f64 / dt,
            relay_cpu_ns: cpu0
                .zip(cpu1)
                .map(|(a, b)| (b - a).as_nanos() as f64 / offered.max(1) as f64),
            lost_before_relay: (sent1 - sent0) as i64 - offered as i64,
            relay_drops: relay_drops(&s0, &s1).iter().map(|&(_, n)| n).sum(),
            received_pps: (recv1 - recv0) as f64 / dt,
            rx_buffers: relay.dispatcher().rx_buffers_allocated(),
        }
    });
    rig.finish();
    result
}

/// The testbed of the `kind` scenario (IPv6 off on both ends: no kernel chatter on the link),
/// if running as root; otherwise `None`, with a line saying the scenario was skipped.
pub fn testbed_as_root(kind: &str) -> Result<Option<Testbed>> {
    if !etherconn_testbed::is_root() {
        println!("S not root: {kind} scenario skipped");
        return Ok(None);
    }
    crate::testbed::quiet_testbed(NETNS_PREFIX).map(Some)
}
