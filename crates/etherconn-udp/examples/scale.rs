//! Scale figures of etherconn-udp (DESIGN.md section 5, issue 4 "Scale"): registration time,
//! memory per idle endpoint and receive throughput with 100,000 endpoints on one relay.
//!
//! ```text
//! cargo run --release -p etherconn-udp --example scale                  # everything, 5 runs each
//! cargo run --release -p etherconn-udp --example scale -- --reps 7      # more runs
//! cargo run --release -p etherconn-udp --example scale -- --only reg    # scenarios matching "reg"
//! cargo run --release -p etherconn-udp --example scale -- --list        # the scenario names
//! ```
//!
//! Every run of a scenario is a fresh child process (this program re-executed with `--child`),
//! so resident-set figures start from a clean heap and runs do not share caches or allocator
//! state; the parent prints the median and the spread (min to max) of each figure, then checks
//! the targets:
//!
//! - registering 100,000 `SharingRUdpConn`s on one relay takes under 1 s;
//! - an idle `SharingRUdpConn` costs under 4 KiB (heap bytes counted exactly by a counting
//!   global allocator, struct included; the RSS delta is printed alongside);
//! - receive throughput with 100,000 endpoints is within 10% of that with one endpoint.
//!
//! The `veth:` scenario (root only, Linux) repeats the throughput comparison over a veth pair:
//! an AF_PACKET sender in one namespace, a `RawSocketRelay` in the other, the sender sending
//! as fast as it can (the rate delivered under overload). The `rate:` scenario measures the
//! same pair the RFC 2544 way: a paced sender and a binary search for the highest rate at
//! which the application receives all but [`LOSS_TOLERANCE`] of the frames. Their
//! `veth-inbox:` and `rate-inbox:` twins measure the same with the application reading through
//! an [`Inbox`] (every endpoint attached to one) instead of a `ReadySet` and each endpoint.
//!
//! `tests/scale.rs` includes this file as a module and asserts generous bounds with it.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::collections::BTreeMap;
use std::hint::spin_loop;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{MacAddr, VlanTag};
use etherconn_relay::{
    DispatcherConfig, Inbox, LoopbackRelay, Mail, PacketRelay, ReadySet, RelayStats, RxFrame,
    RxQueue, Watchable,
};
use etherconn_relay::{EtherConn, EtherConnConfig};
use etherconn_udp::{SharedConfig, SharedEtherConn, SharingConfig, SharingRUdpConn};

// ---------------------------------------------------------------------------------------------
// Counting allocator and process/thread figures.

/// Forwards to the system allocator and counts the bytes live.
pub struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to the system allocator unchanged; counting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's obligations for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`; forwarding keeps calloc's lazily zeroed pages, so the RSS
        // figures are those of a program using the system allocator directly.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with this layout, via the methods above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and `new_size` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap bytes currently allocated by the whole process (every thread).
pub fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// The process's resident set (`VmRSS`), when `/proc` has it.
pub fn rss_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time the calling thread has run (`/proc/thread-self/schedstat`), when available.
pub fn thread_cpu() -> Option<Duration> {
    schedstat("/proc/thread-self/schedstat")
}

fn schedstat(path: &str) -> Option<Duration> {
    let s = std::fs::read_to_string(path).ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

/// The median of `v` (sorted in place); NaN when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoint layouts and fleets.

/// The VLAN every endpoint and every test frame uses.
pub const VLAN: u16 = 100;

fn vlans() -> [VlanTag; 1] {
    [VlanTag::dot1q(VLAN).expect("VLAN id in range")]
}

/// The MAC of the `s`-th L2 endpoint of a fleet.
pub fn fleet_mac(s: usize) -> MacAddr {
    MacAddr([
        0x02,
        0x5c,
        (s >> 24) as u8,
        (s >> 16) as u8,
        (s >> 8) as u8,
        s as u8,
    ])
}

/// How a fleet of endpoints is laid out on one relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `macs` `SharedEtherConn`s with distinct MACs, `ports` `SharingRUdpConn`s on each (one IP
    /// per MAC, ports 10000 and up).
    Shared {
        /// L2 endpoints.
        macs: usize,
        /// UDP endpoints per L2 endpoint.
        ports: usize,
    },
    /// One `SharedEtherConn`, one `SharingRUdpConn` per IP (10.0.0.0 + i, port 68).
    OneMacIps(usize),
    /// One `SharedEtherConn`, `SharingRUdpConn`s on ports 1 to 65535 of 10.255.0.1, then of
    /// 10.255.0.2.
    OneMacPorts(usize),
    /// `EtherConn`s with distinct MACs, default EtherTypes (ARP, IPv4, IPv6: three keys each).
    EtherConns(usize),
}

impl Layout {
    /// Number of receiving endpoints.
    pub fn endpoints(self) -> usize {
        match self {
            Layout::Shared { macs, ports } => macs * ports,
            Layout::OneMacIps(n) | Layout::OneMacPorts(n) | Layout::EtherConns(n) => n,
        }
    }

    /// Number of L2 endpoints (`SharedEtherConn`s or `EtherConn`s).
    pub fn l2_endpoints(self) -> usize {
        match self {
            Layout::Shared { macs, .. } => macs,
            Layout::OneMacIps(_) | Layout::OneMacPorts(_) => 1,
            Layout::EtherConns(n) => n,
        }
    }

    /// A short description.
    pub fn describe(self) -> String {
        match self {
            Layout::Shared { macs, ports } => {
                format!("{macs} SharedEtherConn x {ports} SharingRUdpConn")
            }
            Layout::OneMacIps(n) => format!("1 SharedEtherConn x {n} SharingRUdpConn (IPs)"),
            Layout::OneMacPorts(n) => format!("1 SharedEtherConn x {n} SharingRUdpConn (ports)"),
            Layout::EtherConns(n) => format!("{n} EtherConn"),
        }
    }

    /// The MAC endpoint `i` receives on.
    pub fn mac(self, i: usize) -> MacAddr {
        match self {
            Layout::Shared { ports, .. } => fleet_mac(i / ports),
            Layout::OneMacIps(_) | Layout::OneMacPorts(_) => fleet_mac(0),
            Layout::EtherConns(_) => fleet_mac(i),
        }
    }

    /// The UDP address endpoint `i` receives on (any address on its MAC for `EtherConns`).
    pub fn addr(self, i: usize) -> SocketAddr {
        let (ip, port) = match self {
            Layout::Shared { ports, .. } => (
                0x0a40_0000 + (i / ports) as u32,
                10_000 + (i % ports) as u16,
            ),
            Layout::OneMacIps(_) => (0x0a00_0000 + i as u32, 68),
            Layout::OneMacPorts(_) => (0x0aff_0001 + (i / 65_535) as u32, 1 + (i % 65_535) as u16),
            Layout::EtherConns(_) => (0x0a80_0000 + i as u32, 68),
        };
        SocketAddr::from((Ipv4Addr::from(ip), port))
    }
}

/// The receiving endpoints of a fleet.
pub enum Endpoints {
    /// UDP endpoints on shared L2 endpoints.
    Sharing(Vec<SharingRUdpConn>),
    /// L2 endpoints.
    Ether(Vec<EtherConn>),
}

/// A fleet of endpoints registered on one relay.
pub struct Fleet {
    /// How it is laid out.
    pub layout: Layout,
    /// The relay.
    pub relay: Arc<dyn PacketRelay>,
    /// The endpoints, index-aligned with [`Layout::mac`] and [`Layout::addr`].
    pub endpoints: Endpoints,
    shared: Vec<Arc<SharedEtherConn>>,
}

impl Fleet {
    /// A `ReadySet` watching every endpoint; token `i` is endpoint `i`.
    pub fn ready_set(&self) -> ReadySet {
        let set = ReadySet::new();
        for i in 0..self.len() {
            let t = match &self.endpoints {
                Endpoints::Sharing(v) => set.add(&v[i]),
                Endpoints::Ether(v) => set.add(&v[i]),
            };
            assert_eq!(t, i, "tokens are handed out in order");
        }
        set
    }

    /// Number of receiving endpoints.
    pub fn len(&self) -> usize {
        match &self.endpoints {
            Endpoints::Sharing(v) => v.len(),
            Endpoints::Ether(v) => v.len(),
        }
    }

    /// Whether the fleet has no endpoint.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes every endpoint non-blocking.
    pub fn set_nonblocking(&self) {
        match &self.endpoints {
            Endpoints::Sharing(v) => v.iter().for_each(|c| c.set_nonblocking(true).unwrap()),
            Endpoints::Ether(v) => v.iter().for_each(|c| c.set_nonblocking(true).unwrap()),
        }
    }

    /// Endpoint `i`, as a `ReadySet` sees it.
    pub fn watchable(&self, i: usize) -> &dyn Watchable {
        match &self.endpoints {
            Endpoints::Sharing(v) => &v[i],
            Endpoints::Ether(v) => &v[i],
        }
    }

    /// An inbox of `capacity` frames every endpoint is attached to; token `i` is endpoint `i`.
    pub fn inbox(&self, capacity: usize) -> Inbox {
        let inbox = Inbox::with_capacity(capacity);
        for i in 0..self.len() {
            inbox.attach(self.watchable(i), i).expect("attach");
        }
        inbox
    }

    /// Whether endpoint `i` has something queued.
    #[inline]
    pub fn ready(&self, i: usize) -> bool {
        match &self.endpoints {
            Endpoints::Sharing(v) => v[i].queued() > 0,
            Endpoints::Ether(v) => v[i].queued() > 0,
        }
    }

    /// Receives one datagram (UDP payload) or frame (Ethernet payload) of endpoint `i` into
    /// `buf`; `None` when nothing is queued. Call [`set_nonblocking`](Self::set_nonblocking)
    /// first.
    #[inline]
    pub fn take(&self, i: usize, buf: &mut [u8]) -> Option<usize> {
        if !self.ready(i) {
            return None;
        }
        match &self.endpoints {
            Endpoints::Sharing(v) => v[i].recv_from(buf).ok().map(|(n, _)| n),
            Endpoints::Ether(v) => v[i].recv_from(buf).ok().map(|(n, _)| n),
        }
    }

    /// UDP endpoints bound on the shared L2 endpoints.
    pub fn l4_keys(&self) -> usize {
        self.shared.iter().map(|s| s.bound()).sum()
    }
}

/// What registering a fleet cost.
pub struct Registered {
    /// The fleet.
    pub fleet: Fleet,
    /// Wall time to create every endpoint.
    pub elapsed: Duration,
    /// Heap bytes allocated during registration and still live (endpoints, queues, table
    /// entries, the vectors holding them).
    pub live_bytes: usize,
    /// Resident-set growth during registration.
    pub rss_bytes: Option<usize>,
}

impl Registered {
    /// Heap bytes per receiving endpoint.
    pub fn bytes_per_endpoint(&self) -> f64 {
        self.live_bytes as f64 / self.fleet.len() as f64
    }
}

/// A relay with no interface, for in-process figures.
pub fn loopback() -> Arc<dyn PacketRelay> {
    LoopbackRelay::new(DispatcherConfig::default())
}

/// Registers `layout` on `relay`; `depth` is each endpoint's queue depth (`None`: the default of
/// its type, 4 for a `SharingRUdpConn`, 64 for an `EtherConn`).
pub fn register(relay: Arc<dyn PacketRelay>, layout: Layout, depth: Option<usize>) -> Registered {
    let vl = vlans();
    let rss0 = rss_bytes();
    let live0 = live_bytes();
    let t0 = Instant::now();
    let mut shared: Vec<Arc<SharedEtherConn>> = Vec::with_capacity(layout.l2_endpoints());
    let endpoints = if let Layout::EtherConns(n) = layout {
        let mut cfg = EtherConnConfig::default();
        if let Some(d) = depth {
            cfg = cfg.queue_depth(d);
        }
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            v.push(EtherConn::new(relay.clone(), layout.mac(i), &vl, cfg.clone()).unwrap());
        }
        Endpoints::Ether(v)
    } else {
        let mut cfg = SharingConfig::default();
        if let Some(d) = depth {
            cfg = cfg.queue_depth(d);
        }
        let n = layout.endpoints();
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            let mac = layout.mac(i);
            let new_mac = match shared.last() {
                Some(s) => s.local_mac() != mac,
                None => true,
            };
            if new_mac {
                let s = SharedEtherConn::new(relay.clone(), mac, &vl, SharedConfig::default());
                shared.push(s.unwrap());
            }
            let s = shared.last().expect("pushed above");
            v.push(s.bind(layout.addr(i), cfg).unwrap());
        }
        Endpoints::Sharing(v)
    };
    let elapsed = t0.elapsed();
    let live_bytes = live_bytes().saturating_sub(live0);
    let rss_bytes = rss0.zip(rss_bytes()).map(|(a, b)| b.saturating_sub(a));
    Registered {
        fleet: Fleet {
            layout,
            relay,
            endpoints,
            shared,
        },
        elapsed,
        live_bytes,
        rss_bytes,
    }
}

/// Drops a fleet (deregistering every endpoint); returns how long it took.
pub fn unregister(fleet: Fleet) -> Duration {
    let t0 = Instant::now();
    drop(fleet);
    t0.elapsed()
}

// ---------------------------------------------------------------------------------------------
// Receive throughput.

/// UDP payload bytes of every test frame (78-byte frames with the VLAN tag).
pub const PAYLOAD: usize = 32;

/// Pre-built frames, all the same length, frame `j` addressed to endpoint `j % endpoints`.
pub struct Frames {
    data: Vec<u8>,
    len: usize,
    count: usize,
}

impl Frames {
    /// Frame `j`.
    #[inline]
    pub fn get(&self, j: usize) -> &[u8] {
        &self.data[j * self.len..(j + 1) * self.len]
    }

    /// Number of frames.
    pub fn count(&self) -> usize {
        self.count
    }
}

/// `count` distinct frames to the endpoints of `layout`, round-robin (frame `j` to endpoint
/// `j % endpoints`); sources and payloads vary so that every frame is different bytes, whatever
/// the number of endpoints.
pub fn frames(layout: Layout, count: usize) -> Frames {
    let n = layout.endpoints();
    frames_to(layout, count, |j| j % n)
}

/// `count` distinct frames, frame `j` to endpoint `dest(j)` of `layout`.
pub fn frames_to(layout: Layout, count: usize, dest: impl Fn(usize) -> usize) -> Frames {
    let vl = vlans();
    let mut data = Vec::new();
    let mut len = 0;
    let mut buf = [0u8; 256];
    for j in 0..count {
        let payload = [j as u8; PAYLOAD];
        let f = UdpFrame {
            src_mac: MacAddr([0x02, 0xee, 0, 0, 0, 1]),
            dst_mac: layout.mac(dest(j)),
            vlans: &vl,
            src: SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 1024 + (j % 60_000) as u16)),
            dst: layout.addr(dest(j)),
            ttl: 64,
            dscp: 0,
            payload: &payload,
        };
        len = build_udp_frame(&mut buf, &f).unwrap();
        data.extend_from_slice(&buf[..len]);
    }
    Frames { data, len, count }
}

/// A random permutation of `0..count` (xorshift, fixed seed): the order frames are delivered in.
pub fn shuffled(count: usize, seed: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..count as u32).collect();
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// One throughput measurement.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Frames delivered and received.
    pub frames: u64,
    /// Wall time.
    pub wall: Duration,
    /// CPU time of the delivering thread (`None` without `/proc`).
    pub cpu: Option<Duration>,
    /// Of the wall time, the part spent in `Dispatcher::deliver` (single-thread mode only).
    pub deliver: Option<Duration>,
}

impl Rate {
    /// Millions of frames per second, wall clock.
    pub fn mfps(&self) -> f64 {
        self.frames as f64 / self.wall.as_secs_f64() / 1e6
    }

    /// Delivering thread's CPU nanoseconds per frame.
    pub fn cpu_ns(&self) -> Option<f64> {
        self.cpu.map(|c| c.as_nanos() as f64 / self.frames as f64)
    }

    /// Nanoseconds per frame inside `deliver` (single-thread mode).
    pub fn deliver_ns(&self) -> Option<f64> {
        self.deliver
            .map(|d| d.as_nanos() as f64 / self.frames as f64)
    }
}

fn check_counters(before: RelayStats, after: RelayStats, frames: u64) {
    let lost = [
        ("rx_queue_full", after.rx_queue_full - before.rx_queue_full),
        ("rx_no_buffer", after.rx_no_buffer - before.rx_no_buffer),
        ("rx_l4_miss", after.rx_l4_miss - before.rx_l4_miss),
        ("rx_invalid", after.rx_invalid - before.rx_invalid),
        ("rx_miss", after.rx_miss - before.rx_miss),
    ];
    for (name, n) in lost {
        assert_eq!(n, 0, "{name} grew by {n}");
    }
    assert_eq!(after.rx_delivered - before.rx_delivered, frames);
}

/// One thread plays relay and application in turn: it delivers `batch` frames through the
/// relay's `Dispatcher::deliver` (classification, key lookup, L4 demultiplexing, queue push),
/// then receives each of them from its endpoint (`recv_from` into a buffer); `total` frames in
/// `order`, cycling.
///
/// Panics if a frame is lost (the queues must hold a batch: depth ≥ `batch` for one endpoint).
pub fn dispatch_one_thread(
    fleet: &Fleet,
    frames: &Frames,
    order: &[u32],
    total: u64,
    batch: usize,
) -> Rate {
    let n = fleet.len();
    dispatch_one_thread_to(fleet, frames, order, total, batch, |j| j % n)
}

/// [`dispatch_one_thread`] with frame `j` addressed to endpoint `dest(j)`.
pub fn dispatch_one_thread_to(
    fleet: &Fleet,
    frames: &Frames,
    order: &[u32],
    total: u64,
    batch: usize,
    dest: impl Fn(usize) -> usize,
) -> Rate {
    let mut buf = [0u8; 2048];
    deliver_and_receive(fleet, frames, order, total, batch, |chunk| {
        for &j in chunk {
            let got = fleet.take(dest(j as usize), &mut buf);
            assert!(got.is_some(), "frame {j} was not delivered");
        }
    })
}

/// [`dispatch_one_thread`] with every endpoint attached to `inbox` (token = endpoint index):
/// each batch delivered, then taken from the inbox with one `recv` and copied out, checking that
/// every frame came under its endpoint's token.
pub fn dispatch_one_thread_inbox(
    fleet: &Fleet,
    inbox: &Inbox,
    frames: &Frames,
    order: &[u32],
    total: u64,
    batch: usize,
) -> Rate {
    let n = fleet.len();
    let mut buf = [0u8; 2048];
    let mut mail = Vec::with_capacity(batch);
    deliver_and_receive(fleet, frames, order, total, batch, |chunk| {
        let got = inbox
            .recv(&mut mail, batch, Some(Duration::ZERO))
            .expect("recv");
        assert_eq!(got, chunk.len(), "frames missing from the inbox");
        for (m, &j) in mail.iter().zip(chunk) {
            let Mail::Frame { token, frame } = m else {
                panic!("unexpected {m:?}");
            };
            assert_eq!(*token, j as usize % n, "frame {j} under the wrong token");
            etherconn_udp::read_datagram(frame, &mut buf).expect("a UDP datagram");
        }
    })
}

/// The single-thread loop: `total` frames in `order`, cycling, `batch` at a time delivered
/// through the relay's dispatcher and then handed (as frame indices) to `receive`; checks that
/// the relay lost none.
fn deliver_and_receive(
    fleet: &Fleet,
    frames: &Frames,
    order: &[u32],
    total: u64,
    batch: usize,
    mut receive: impl FnMut(&[u32]),
) -> Rate {
    let d = fleet.relay.dispatcher();
    let before = d.stats();
    let mut in_deliver = Duration::ZERO;
    let mut done = 0u64;
    let mut at = 0usize;
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    while done < total {
        let end = (at + batch).min(order.len());
        let chunk = &order[at..end];
        at = if end == order.len() { 0 } else { end };
        let t = Instant::now();
        // As a relay thread delivers what its receive ring handed over: in one batch.
        let mut delivery = d.delivery();
        for &j in chunk {
            delivery.push(frames.get(j as usize), None, false);
        }
        drop(delivery);
        in_deliver += t.elapsed();
        receive(chunk);
        done += chunk.len() as u64;
    }
    let wall = t0.elapsed();
    let cpu = thread_cpu().zip(cpu0).map(|(b, a)| b - a);
    check_counters(before, d.stats(), done);
    Rate {
        frames: done,
        wall,
        cpu,
        deliver: Some(in_deliver),
    }
}

/// A relay thread delivers frames in `order` while the calling thread receives them from their
/// endpoints in the same order; the relay stays at most `window` frames ahead (as a receive ring
/// would hold it back). `cpu` is the relay thread's.
pub fn dispatch_two_threads(
    fleet: &Fleet,
    frames: &Frames,
    order: &[u32],
    total: u64,
    window: u64,
) -> Rate {
    let d = fleet.relay.dispatcher();
    let n = fleet.len();
    let consumed = AtomicU64::new(0);
    let before = d.stats();
    let t0 = Instant::now();
    let cpu = std::thread::scope(|s| {
        let relay = s.spawn(|| {
            let cpu0 = thread_cpu();
            let mut at = 0;
            // Delivered in batches, as a relay thread delivers its ring's blocks; a batch is
            // flushed before waiting for the receiver, which may be waiting for its frames.
            let mut batch = d.delivery();
            for produced in 0..total {
                let mut spins = 0u32;
                while produced - consumed.load(Ordering::Acquire) >= window {
                    batch.flush();
                    spins += 1;
                    if spins % 1024 == 0 {
                        std::thread::yield_now();
                    } else {
                        spin_loop();
                    }
                }
                batch.push(frames.get(order[at] as usize), None, false);
                at += 1;
                if at == order.len() {
                    at = 0;
                }
            }
            drop(batch);
            thread_cpu().zip(cpu0).map(|(b, a)| b - a)
        });
        let mut buf = [0u8; 2048];
        let mut at = 0;
        for k in 0..total {
            let e = order[at] as usize % n;
            at += 1;
            if at == order.len() {
                at = 0;
            }
            let mut spins = 0u32;
            loop {
                if fleet.take(e, &mut buf).is_some() {
                    break;
                }
                spins += 1;
                assert!(spins < 50_000_000, "frame {k} never arrived");
                if spins % 1024 == 0 {
                    std::thread::yield_now();
                } else {
                    spin_loop();
                }
            }
            consumed.store(k + 1, Ordering::Release);
        }
        relay.join().expect("relay thread")
    });
    let wall = t0.elapsed();
    check_counters(before, d.stats(), total);
    Rate {
        frames: total,
        wall,
        cpu,
        deliver: None,
    }
}

/// Distinct frames (and so distinct sources) per throughput run: one per endpoint of the largest
/// fleet, the same count for the one-endpoint fleet.
pub const FRAME_SET: usize = 100_000;

/// Frames per batch in single-thread mode.
pub const BATCH: usize = 32;

/// How far the relay thread may run ahead in two-thread mode.
pub const WINDOW: u64 = 1024;

/// The loss a trial of the `rate:` scenario's throughput search may show and still pass.
pub const LOSS_TOLERANCE: f64 = 0.001;

/// The one-endpoint fleet compared with `layout` (same endpoint type), with a queue deep enough
/// for a whole window.
pub fn single_of(layout: Layout) -> Layout {
    match layout {
        Layout::EtherConns(_) => Layout::EtherConns(1),
        _ => Layout::Shared { macs: 1, ports: 1 },
    }
}

/// Two fleets on their own relays, with frames and delivery order, ready to compare.
pub struct Comparison {
    /// One endpoint.
    pub one: Fleet,
    /// Many endpoints.
    pub many: Fleet,
    /// Frames to the one endpoint.
    pub frames_one: Frames,
    /// Frames to the many endpoints, round-robin.
    pub frames_many: Frames,
    /// Delivery order (a permutation of the frame indices).
    pub order: Vec<u32>,
}

impl Comparison {
    /// Registers one endpoint and `layout` on two loopback relays.
    pub fn new(layout: Layout, seed: u64) -> Comparison {
        let one = register(loopback(), single_of(layout), Some(WINDOW as usize)).fleet;
        let many = register(loopback(), layout, None).fleet;
        one.set_nonblocking();
        many.set_nonblocking();
        Comparison {
            frames_one: frames(one.layout, FRAME_SET),
            frames_many: frames(layout, FRAME_SET),
            order: shuffled(FRAME_SET, seed),
            one,
            many,
        }
    }

    /// Single-thread mode, one endpoint then many: `(one, many)`.
    pub fn one_thread(&self, total: u64) -> (Rate, Rate) {
        let a = dispatch_one_thread(&self.one, &self.frames_one, &self.order, total, BATCH);
        let b = dispatch_one_thread(&self.many, &self.frames_many, &self.order, total, BATCH);
        (a, b)
    }

    /// Single-thread mode reading through an inbox (every endpoint attached to a fresh one),
    /// one endpoint then many, `rounds` times after a warm-up: `(one, many)` each. Endpoints
    /// stay attached afterwards (their own reads then fail), so this goes last.
    pub fn one_thread_inbox(&self, total: u64, rounds: usize) -> Vec<(Rate, Rate)> {
        let (inbox_one, inbox_many) = (self.one.inbox(BATCH), self.many.inbox(BATCH));
        let run = |total: u64| {
            let go = |fleet: &Fleet, inbox: &Inbox, frames: &Frames| {
                dispatch_one_thread_inbox(fleet, inbox, frames, &self.order, total, BATCH)
            };
            (
                go(&self.one, &inbox_one, &self.frames_one),
                go(&self.many, &inbox_many, &self.frames_many),
            )
        };
        run(FRAME_SET as u64);
        (0..rounds).map(|_| run(total)).collect()
    }

    /// Two-thread mode, one endpoint then many: `(one, many)`.
    pub fn two_threads(&self, total: u64) -> (Rate, Rate) {
        let a = dispatch_two_threads(&self.one, &self.frames_one, &self.order, total, WINDOW);
        let b = dispatch_two_threads(&self.many, &self.frames_many, &self.order, total, WINDOW);
        (a, b)
    }
}

// ---------------------------------------------------------------------------------------------
// Over a veth pair (root, Linux).

#[cfg(target_os = "linux")]
mod veth {
    use super::*;
    use etherconn_rawsock::{PacketSocket, RawSocketRelay, RawSocketRelayConfig, SocketConfig};
    use etherconn_rawsock::{TxBatcher, TxConfig};
    use etherconn_testbed::{Side, Testbed};
    use std::sync::atomic::AtomicBool;

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

    fn relay_thread_stat() -> Option<String> {
        for t in std::fs::read_dir("/proc/self/task").ok()? {
            let p = t.ok()?.path();
            let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
            if comm.trim() == "etherconn-rx0" {
                return Some(p.join("schedstat").to_string_lossy().into_owned());
            }
        }
        None
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
    enum Source {
        Set(ReadySet),
        Inbox(Inbox),
    }

    impl Source {
        /// `fleet` watched as `reader` reads; an inbox holds `inbox_capacity` frames.
        fn new(fleet: &Fleet, reader: Reader, inbox_capacity: usize) -> Source {
            match reader {
                Reader::ReadySet => Source::Set(fleet.ready_set()),
                Reader::Inbox => Source::Inbox(fleet.inbox(inbox_capacity)),
            }
        }

        /// Reads until `stop`, counting in `received`.
        fn consume(&self, fleet: &Fleet, stop: &AtomicBool, received: &AtomicU64) {
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

    /// One phase: a fresh relay in namespace `b` with `layout` registered on it, blasted from
    /// namespace `a` for `secs` (after a warm-up), with a consumer draining every endpoint.
    pub fn phase(tb: &Testbed, layout: Layout, reader: Reader, secs: f64, seed: u64) -> VethRate {
        let relay: Arc<dyn PacketRelay> =
            tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
                .unwrap()
                .unwrap();
        let depth = (layout.endpoints() == 1).then_some(WINDOW as usize);
        let fleet = register(relay.clone(), layout, depth).fleet;
        fleet.set_nonblocking();
        let frames = Arc::new(frames(layout, FRAME_SET));
        let order = Arc::new(shuffled(FRAME_SET, seed));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let received = AtomicU64::new(0);
        let stat_path = relay_thread_stat();
        let source = Source::new(&fleet, reader, etherconn_relay::DEFAULT_INBOX_CAPACITY);
        let result = std::thread::scope(|s| {
            let consumer = s.spawn(|| source.consume(&fleet, &stop, &received));
            let tx = sender(
                tb,
                frames.clone(),
                order.clone(),
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
                    stat_path.as_deref().and_then(schedstat),
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
                relay_drops: (s1.rx_queue_full - s0.rx_queue_full)
                    + (s1.rx_no_buffer - s0.rx_no_buffer)
                    + (s1.rx_l4_miss - s0.rx_l4_miss)
                    + (s1.rx_invalid - s0.rx_invalid)
                    + (s1.rx_miss - s0.rx_miss),
                received_pps: (recv1 - recv0) as f64 / dt,
                rx_buffers: relay.dispatcher().rx_buffers_allocated(),
            }
        });
        drop(fleet);
        relay.stop();
        result
    }

    /// Sends `frames` in `order` from namespace `a` at `rate` frames per second (or as fast as
    /// it can, for an infinite rate) for `secs`; returns the frames the kernel took and the
    /// time from the first send to the last.
    ///
    /// The pace is kept on average: whatever is due goes out in batches of up to 64, and the
    /// sender sleeps while nothing is (sleeps last at least the 50 µs timer slack, so at high
    /// rates frames leave in bursts of up to ~100 at the sender's peak rate; both fleets are
    /// offered the same bursts).
    fn paced_sender(
        tb: &Testbed,
        frames: Arc<Frames>,
        order: Arc<Vec<u32>>,
        rate: f64,
        secs: f64,
    ) -> std::thread::JoinHandle<std::io::Result<(u64, Duration)>> {
        let ifname = tb.a_if.clone();
        tb.a.spawn_thread_in(move || {
            let sock = PacketSocket::open(&ifname, &SocketConfig::send_only()).expect("socket");
            let mut tx = TxBatcher::new(&TxConfig::default()).expect("tx batcher");
            let batch = TxConfig::DEFAULT_BATCH as u64;
            let (mut at, mut sent, mut offered) = (0, 0u64, 0u64);
            let t0 = Instant::now();
            let end = Duration::from_secs_f64(secs);
            loop {
                let now = t0.elapsed();
                if now >= end {
                    break;
                }
                let due = if rate.is_infinite() {
                    u64::MAX
                } else {
                    (now.as_secs_f64() * rate) as u64
                };
                if due <= offered {
                    let next = Duration::from_secs_f64((offered + 32) as f64 / rate);
                    std::thread::sleep(next.saturating_sub(now).min(end - now));
                    continue;
                }
                for _ in 0..(due - offered).min(batch) {
                    tx.push(frames.get(order[at] as usize)).expect("frame fits");
                    at = (at + 1) % order.len();
                    offered += 1;
                }
                // A hard error would lose the count of a partly sent batch and make the
                // trial's loss look smaller: fail instead.
                sent += tx.flush(&sock).expect("send") as u64;
            }
            (sent, t0.elapsed())
        })
    }

    /// What the search found for one fleet.
    pub struct NoLossRate {
        /// The highest sending rate (frames the kernel took per second of sending) at which the
        /// consumer received all but `tolerance` of the frames sent.
        pub rate_pps: f64,
        /// Loss at that rate (fraction of the frames sent).
        pub loss: f64,
        /// Relay receive thread CPU ns per frame offered to it, at that rate.
        pub relay_cpu_ns: Option<f64>,
        /// The sender's unpaced rate (the upper bound of the search).
        pub max_sent_pps: f64,
        /// Whether the fleet kept up with the unpaced sender: the rate is then the sender's
        /// limit, and the fleet's own is somewhere above it.
        pub sender_bound: bool,
    }

    /// Sets `stop` when dropped, so that a panic in the measuring thread still ends the
    /// consumer thread of the scope (which would otherwise keep the scope, and the run, alive).
    struct StopOnDrop<'a>(&'a AtomicBool);

    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// RFC 2544-style throughput: the highest offered rate at which (almost) no frame is lost
    /// between the sender and the application. One unpaced trial first: if the fleet keeps up
    /// with it, that rate is the answer (sender-bound); otherwise a binary search of `steps`
    /// paced trials between 0 and it. Every trial lasts `secs`; it passes when the consumer
    /// received at least `1 - tolerance` of the frames the kernel took from the sender, counted
    /// after the relay and the consumer have gone quiet.
    pub fn no_loss_rate(
        tb: &Testbed,
        layout: Layout,
        reader: Reader,
        secs: f64,
        steps: usize,
        tolerance: f64,
        seed: u64,
    ) -> NoLossRate {
        let relay: Arc<dyn PacketRelay> =
            tb.b.run_in(|| RawSocketRelay::new(&tb.b_if, RawSocketRelayConfig::default()))
                .unwrap()
                .unwrap();
        // The single endpoint gets a queue as deep as the relay's buffer pool, so that it can
        // ride out a scheduling gap of the consumer as well as 100,000 queues of 4 can (the
        // pool bounds both): its best throughput is the baseline.
        let depth = (layout.endpoints() == 1).then_some(DispatcherConfig::default().rx_buffers);
        let fleet = register(relay.clone(), layout, depth).fleet;
        fleet.set_nonblocking();
        let frames = Arc::new(frames(layout, FRAME_SET));
        let order = Arc::new(shuffled(FRAME_SET, seed));
        let stop = AtomicBool::new(false);
        let received = AtomicU64::new(0);
        let stat_path = relay_thread_stat();
        // An inbox as deep as the single endpoint's queue, for the same reason.
        let source = Source::new(&fleet, reader, DispatcherConfig::default().rx_buffers);
        let result = std::thread::scope(|s| {
            let _stop = StopOnDrop(&stop);
            s.spawn(|| source.consume(&fleet, &stop, &received));
            // One trial: (loss fraction, sent pps, relay CPU ns per frame offered).
            let trial = |rate: f64| {
                let r0 = received.load(Ordering::Relaxed);
                let o0 = relay.stats().rx_offered;
                let c0 = stat_path.as_deref().and_then(schedstat);
                let tx = paced_sender(tb, frames.clone(), order.clone(), rate, secs);
                let (sent, took) = tx.join().expect("sender").expect("enter namespace a");
                // Let the relay and the consumer finish what is in flight: both counts still
                // for 100 ms.
                let mut last = (received.load(Ordering::Relaxed), relay.stats().rx_offered);
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    let now = (received.load(Ordering::Relaxed), relay.stats().rx_offered);
                    if now == last {
                        break;
                    }
                    last = now;
                }
                let c1 = stat_path.as_deref().and_then(schedstat);
                let got = last.0 - r0;
                let offered = last.1 - o0;
                let loss = sent.saturating_sub(got) as f64 / sent.max(1) as f64;
                let cpu = c0
                    .zip(c1)
                    .map(|(a, b)| (b - a).as_nanos() as f64 / offered.max(1) as f64);
                (loss, sent as f64 / took.as_secs_f64(), cpu)
            };
            let (loss, max_sent_pps, cpu) = trial(f64::INFINITY);
            if loss <= tolerance {
                return NoLossRate {
                    rate_pps: max_sent_pps,
                    loss,
                    relay_cpu_ns: cpu,
                    max_sent_pps,
                    sender_bound: true,
                };
            }
            let (mut lo, mut hi) = (0.0, max_sent_pps);
            let mut best = NoLossRate {
                rate_pps: 0.0,
                loss: 1.0,
                relay_cpu_ns: None,
                max_sent_pps,
                sender_bound: false,
            };
            for _ in 0..steps {
                let rate = (lo + hi) / 2.0;
                let (loss, sent_pps, cpu) = trial(rate);
                if loss <= tolerance {
                    lo = rate;
                    best.rate_pps = sent_pps;
                    best.loss = loss;
                    best.relay_cpu_ns = cpu;
                } else {
                    hi = rate;
                }
            }
            best
        });
        drop(fleet);
        relay.stop();
        result
    }

    /// A testbed with IPv6 off on both ends (no kernel chatter on the link), if running as
    /// root; otherwise `None`, with a line saying the `kind` scenario was skipped.
    pub fn testbed_as_root(kind: &str) -> Option<Testbed> {
        if !etherconn_testbed::is_root() {
            println!("S not root: {kind} scenario skipped");
            return None;
        }
        let tb = Testbed::new("ecscale-").expect("create namespaces (root needed)");
        for side in [Side::A, Side::B] {
            let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
            let _ = tb.set_sysctl(side, &key, "1");
        }
        Some(tb)
    }
}

// ---------------------------------------------------------------------------------------------
// The program: a parent that runs each scenario in fresh child processes and sums up.

/// The layouts measured.
pub const SHARED_1000X100: Layout = Layout::Shared {
    macs: 1000,
    ports: 100,
};

fn scenarios() -> Vec<(&'static str, Layout)> {
    vec![
        ("reg:shared-1000x100", SHARED_1000X100),
        ("reg:1mac-100k-ips", Layout::OneMacIps(100_000)),
        ("reg:1mac-2ips-100k-ports", Layout::OneMacPorts(100_000)),
        ("reg:ether-10k", Layout::EtherConns(10_000)),
        ("reg:ether-100k", Layout::EtherConns(100_000)),
        ("dispatch:shared-1000x100", SHARED_1000X100),
        ("dispatch:1mac-100k-ips", Layout::OneMacIps(100_000)),
        ("dispatch:ether-10k", Layout::EtherConns(10_000)),
        ("active:shared-1000x100", SHARED_1000X100),
        ("profile:one", Layout::Shared { macs: 1, ports: 1 }),
        ("profile:shared-1000x100", SHARED_1000X100),
        ("profile-inbox:one", Layout::Shared { macs: 1, ports: 1 }),
        ("profile-inbox:shared-1000x100", SHARED_1000X100),
        ("veth:shared-1000x100", SHARED_1000X100),
        ("rate:shared-1000x100", SHARED_1000X100),
        ("veth-inbox:shared-1000x100", SHARED_1000X100),
        ("rate-inbox:shared-1000x100", SHARED_1000X100),
    ]
}

struct Opts {
    reps: usize,
    frames: u64,
    veth_secs: f64,
    only: Vec<String>,
}

fn result(name: &str, value: f64) {
    println!("R {name} {value}");
}

/// One run of one scenario, in this (child) process: prints `R name value` lines.
fn child(name: &str, opts: &Opts, seed: u64) {
    let (_, layout) = scenarios()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no scenario {name}"));
    let kind = name.split(':').next().unwrap_or("");
    match kind {
        "reg" => {
            let relay = loopback();
            let r = register(relay.clone(), layout, None);
            let n = r.fleet.len() as f64;
            result("register_ms", r.elapsed.as_secs_f64() * 1e3);
            result(
                "register_us_per_endpoint",
                r.elapsed.as_secs_f64() * 1e6 / n,
            );
            result("heap_bytes_per_endpoint", r.bytes_per_endpoint());
            if let Some(rss) = r.rss_bytes {
                result("rss_bytes_per_endpoint", rss as f64 / n);
            }
            result(
                "size_of_SharingRUdpConn",
                std::mem::size_of::<SharingRUdpConn>() as f64,
            );
            result("size_of_EtherConn", std::mem::size_of::<EtherConn>() as f64);
            result("size_of_RxQueue", std::mem::size_of::<RxQueue>() as f64);
            result("size_of_RxFrame", std::mem::size_of::<RxFrame>() as f64);
            result("l2_keys", relay.dispatcher().key_count() as f64);
            result("l4_keys", r.fleet.l4_keys() as f64);
            result("unregister_ms", unregister(r.fleet).as_secs_f64() * 1e3);
            assert_eq!(relay.dispatcher().key_count(), 0);
        }
        "dispatch" => {
            let c = Comparison::new(layout, seed);
            // Warm-up: every queue and buffer touched once.
            c.one_thread(FRAME_SET as u64);
            let emit = |mode: &str, (a, b): (Rate, Rate)| {
                result(&format!("{mode}_1_mfps"), a.mfps());
                result(&format!("{mode}_N_mfps"), b.mfps());
                result(&format!("{mode}_ratio_N_over_1"), b.mfps() / a.mfps());
                if let (Some(x), Some(y)) = (a.cpu_ns(), b.cpu_ns()) {
                    result(&format!("{mode}_1_cpu_ns"), x);
                    result(&format!("{mode}_N_cpu_ns"), y);
                    result(&format!("{mode}_cpu_ratio_1_over_N"), x / y);
                }
                if let (Some(x), Some(y)) = (a.deliver_ns(), b.deliver_ns()) {
                    result(&format!("{mode}_1_deliver_ns"), x);
                    result(&format!("{mode}_N_deliver_ns"), y);
                }
            };
            for _ in 0..3 {
                emit("one_thread", c.one_thread(opts.frames));
                emit("two_threads", c.two_threads(opts.frames));
            }
            // Last: attaching to an inbox is for good.
            for r in c.one_thread_inbox(opts.frames, 3) {
                emit("inbox_one_thread", r);
            }
        }
        "profile" | "profile-inbox" => {
            // Only the single-thread receive loop on one fleet (read from each endpoint, or
            // through an inbox), for a profiler: `perf record` or `valgrind --tool=cachegrind`
            // on `scale --child profile:shared-1000x100 1 --frames 200000`.
            let depth = (layout.endpoints() == 1).then_some(WINDOW as usize);
            let fleet = register(loopback(), layout, depth).fleet;
            fleet.set_nonblocking();
            let f = frames(layout, FRAME_SET);
            let order = shuffled(FRAME_SET, seed);
            let r = if kind == "profile-inbox" {
                let inbox = fleet.inbox(BATCH);
                dispatch_one_thread_inbox(&fleet, &inbox, &f, &order, opts.frames, BATCH)
            } else {
                dispatch_one_thread(&fleet, &f, &order, opts.frames, BATCH)
            };
            result("profile_cpu_ns", r.cpu_ns().unwrap_or(f64::NAN));
            result("profile_deliver_ns", r.deliver_ns().unwrap_or(f64::NAN));
        }
        "active" => {
            // Every endpoint registered, traffic to only `k` of them (spread over the fleet):
            // the cost follows the endpoints receiving traffic, not those registered. Queues
            // have the default depth of 4, so batches are 4 frames.
            // Default queue depth (4), so batches of 4 frames.
            let many = register(loopback(), layout, None).fleet;
            many.set_nonblocking();
            let n = many.len();
            let order = shuffled(FRAME_SET, seed);
            for k in [1, 16, 256, 1_000, 4_000, 16_000, 50_000, 100_000] {
                let k = k.min(n);
                let dest = |j: usize| (j % k) * (n / k);
                let f = frames_to(layout, FRAME_SET, dest);
                dispatch_one_thread_to(&many, &f, &order, FRAME_SET as u64, 4, dest);
                let r = dispatch_one_thread_to(&many, &f, &order, opts.frames, 4, dest);
                result(
                    &format!("active_{k:06}_cpu_ns"),
                    r.cpu_ns().unwrap_or(f64::NAN),
                );
                result(
                    &format!("active_{k:06}_deliver_ns"),
                    r.deliver_ns().unwrap_or(f64::NAN),
                );
            }
        }
        #[cfg(target_os = "linux")]
        "veth" | "veth-inbox" => {
            let Some(tb) = veth::testbed_as_root(kind) else {
                return;
            };
            for _ in 0..2 {
                for (tag, l) in [("1", single_of(layout)), ("N", layout)] {
                    let r = veth::phase(&tb, l, veth::Reader::of(kind), opts.veth_secs, seed);
                    result(&format!("veth_{tag}_delivered_kpps"), r.delivered_pps / 1e3);
                    result(&format!("veth_{tag}_sent_kpps"), r.sent_pps / 1e3);
                    result(&format!("veth_{tag}_received_kpps"), r.received_pps / 1e3);
                    if let Some(ns) = r.relay_cpu_ns {
                        result(&format!("veth_{tag}_relay_cpu_ns"), ns);
                    }
                    result(
                        &format!("veth_{tag}_lost_before_relay"),
                        r.lost_before_relay as f64,
                    );
                    result(&format!("veth_{tag}_relay_drops"), r.relay_drops as f64);
                    result(&format!("veth_{tag}_rx_buffers"), r.rx_buffers as f64);
                }
            }
        }
        #[cfg(target_os = "linux")]
        "rate" | "rate-inbox" => {
            let Some(tb) = veth::testbed_as_root(kind) else {
                return;
            };
            for (tag, l) in [("1", single_of(layout)), ("N", layout)] {
                let r = veth::no_loss_rate(
                    &tb,
                    l,
                    veth::Reader::of(kind),
                    opts.veth_secs / 3.0,
                    7,
                    LOSS_TOLERANCE,
                    seed,
                );
                result(&format!("rate_{tag}_no_loss_kpps"), r.rate_pps / 1e3);
                result(&format!("rate_{tag}_loss_ppm"), r.loss * 1e6);
                result(&format!("rate_{tag}_max_sent_kpps"), r.max_sent_pps / 1e3);
                result(
                    &format!("rate_{tag}_sender_bound"),
                    f64::from(u8::from(r.sender_bound)),
                );
                if let Some(ns) = r.relay_cpu_ns {
                    result(&format!("rate_{tag}_relay_cpu_ns"), ns);
                }
            }
        }
        _ => println!("S scenario {name} not available here"),
    }
}

fn parse_opts(args: &[String]) -> (Opts, Option<(String, u64)>, bool) {
    let mut opts = Opts {
        reps: 5,
        frames: 1_000_000,
        veth_secs: 3.0,
        only: Vec::new(),
    };
    let mut child = None;
    let mut list = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--reps" => opts.reps = val().parse().expect("--reps N"),
            "--frames" => opts.frames = val().parse().expect("--frames N"),
            "--veth-secs" => opts.veth_secs = val().parse().expect("--veth-secs S"),
            "--only" => opts.only.push(val()),
            "--child" => {
                let name = val();
                let seed = val().parse().expect("--child NAME SEED");
                child = Some((name, seed));
            }
            "--list" => list = true,
            other => panic!("unknown argument {other}"),
        }
    }
    (opts, child, list)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, child_run, list) = parse_opts(&args);
    if let Some((name, seed)) = child_run {
        child(&name, &opts, seed);
        return;
    }
    if list {
        for (name, layout) in scenarios() {
            println!("{name:28} {}", layout.describe());
        }
        return;
    }
    if cfg!(debug_assertions) {
        println!("warning: debug build; the targets are for --release");
    }
    let exe = std::env::current_exe().expect("own path");
    let mut medians: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (name, layout) in scenarios() {
        let wanted = if opts.only.is_empty() {
            // Profiling runs only when asked for.
            !name.starts_with("profile")
        } else {
            opts.only.iter().any(|o| name.contains(o.as_str()))
        };
        if !wanted {
            continue;
        }
        let reps = if name.starts_with("veth") || name.starts_with("rate") {
            opts.reps.min(3)
        } else {
            opts.reps
        };
        println!("\n== {name}: {} ({reps} runs)", layout.describe());
        let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for rep in 0..reps {
            let out = std::process::Command::new(&exe)
                .args(["--child", name, &(rep as u64 * 7919 + 17).to_string()])
                .args(["--frames", &opts.frames.to_string()])
                .args(["--veth-secs", &opts.veth_secs.to_string()])
                .output()
                .expect("run child");
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
                panic!("{name} run {rep} failed");
            }
            for line in stdout.lines() {
                let mut w = line.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some("R"), Some(k), Some(v)) => samples
                        .entry(k.to_owned())
                        .or_default()
                        .push(v.parse().unwrap_or(f64::NAN)),
                    (Some("S"), ..) => println!("  {}", &line[2..]),
                    _ => {}
                }
            }
        }
        for (k, mut v) in samples {
            let (lo, hi) = v
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                    (l.min(x), h.max(x))
                });
            let m = median(&mut v);
            let spread = if m != 0.0 {
                (hi - lo) / m.abs() * 100.0
            } else {
                0.0
            };
            println!(
                "  {k:34} median {m:>12.3}   min {lo:>12.3}   max {hi:>12.3}   spread {spread:>5.1}%   (n={})",
                v.len()
            );
            medians.insert((name.to_owned(), k), m);
        }
    }
    println!("\n== targets");
    let get = |s: &str, k: &str| medians.get(&(s.to_owned(), k.to_owned())).copied();
    for s in [
        "reg:shared-1000x100",
        "reg:1mac-100k-ips",
        "reg:1mac-2ips-100k-ports",
    ] {
        if let Some(ms) = get(s, "register_ms") {
            let ok = if ms < 1000.0 { "MET" } else { "MISSED" };
            println!("  {s}: 100,000 registrations in {ms:.1} ms (target < 1000 ms): {ok}");
        }
        if let Some(b) = get(s, "heap_bytes_per_endpoint") {
            let ok = if b < 4096.0 { "MET" } else { "MISSED" };
            println!("  {s}: {b:.0} heap bytes per idle SharingRUdpConn (target < 4096): {ok}");
        }
    }
    for s in [
        "dispatch:shared-1000x100",
        "dispatch:1mac-100k-ips",
        "dispatch:ether-10k",
    ] {
        for mode in ["one_thread", "two_threads", "inbox_one_thread"] {
            if let Some(r) = get(s, &format!("{mode}_ratio_N_over_1")) {
                let ok = if r >= 0.9 { "MET" } else { "MISSED" };
                println!(
                    "  {s} {mode}: throughput N/1 = {r:.3} (target >= 0.90): {ok}{}",
                    get(s, &format!("{mode}_cpu_ratio_1_over_N"))
                        .map(|c| format!("; CPU-time ratio 1/N = {c:.3}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    for (veth, rate, how) in [
        ("veth:shared-1000x100", "rate:shared-1000x100", "a ReadySet"),
        (
            "veth-inbox:shared-1000x100",
            "rate-inbox:shared-1000x100",
            "an Inbox",
        ),
    ] {
        for what in ["delivered", "received"] {
            if let (Some(a), Some(b)) = (
                get(veth, &format!("veth_1_{what}_kpps")),
                get(veth, &format!("veth_N_{what}_kpps")),
            ) {
                println!(
                    "  veth, read through {how}: {what} {b:.0} kpps with 100,000 endpoints vs \
                     {a:.0} kpps with 1: N/1 = {:.3}",
                    b / a
                );
            }
        }
        if let (Some(a), Some(b)) = (
            get(rate, "rate_1_no_loss_kpps"),
            get(rate, "rate_N_no_loss_kpps"),
        ) {
            let r = b / a;
            let ok = if r >= 0.9 { "MET" } else { "MISSED" };
            // A fleet that kept up with the unpaced sender was measured at the sender's limit:
            // its own lies above, so a ratio against it is an upper bound.
            let bound =
                |tag: &str| get(rate, &format!("rate_{tag}_sender_bound")).is_some_and(|v| v > 0.5);
            let note = match (bound("1"), bound("N")) {
                (true, false) => "; one endpoint kept up with the sender: N/1 is an upper bound",
                (false, true) => {
                    "; 100,000 endpoints kept up with the sender: N/1 is a lower bound"
                }
                (true, true) => "; both kept up with the sender: N/1 says only that both can",
                _ => "",
            };
            println!(
                "  veth, read through {how}, RFC 2544 throughput (loss <= {:.1}%): {b:.0} kpps \
                 with 100,000 endpoints vs {a:.0} kpps with 1: N/1 = {r:.3} (target >= 0.90): \
                 {ok}{note}",
                LOSS_TOLERANCE * 100.0
            );
        }
    }
}
