//! The dispatch table every relay delivers received frames through.
//!
//! Exact keys live in a sharded map ([`table`]): a frame's lookup read-locks one of
//! [`SHARDS`](table::SHARDS) shards chosen from its MAC and VLAN ids, so relay threads never
//! contend on one global lock and a registration only blocks lookups in its own shard. The
//! default conn and the receive-multicast set are consulted only for frames no exact key
//! matched. A shared L2 endpoint's UDP datagrams go on to their endpoint's queue through its
//! [`L4Demux`](demux::L4Demux).
//!
//! Relays deliver in batches ([`Delivery`](delivery::Delivery)), which push the frames of a
//! whole batch together; [`Dispatcher::deliver`], one frame at a time, is the plain statement
//! of the rules the batches follow.
//!
//! The modules build on each other in this order: `demux`, `observer` (the hook a backend
//! mirrors registrations through), `table` (whose entries hold a demultiplexer and which
//! tells the observer), this one (the [`Dispatcher`]), `delivery` (its batches).

pub(crate) mod delivery;
pub(crate) mod demux;
pub(crate) mod observer;
pub(crate) mod table;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::vec::Vec;

use crate::budget::{MemoryBudget, MemoryLimit};
use crate::capture::{Capture, CaptureConfig, CaptureError, CaptureStats};
use crate::error::RelayError;
use crate::pool::{BufferPool, PooledBuf};
use crate::queue::{PushError, RxFrame};
use crate::stats::{RelayCounters, RelayStats, StripedCounters};
use crate::summary::DropSummary;
use etherconn_core::classify::{classify_with, Options};
use etherconn_core::key::{L2EndpointKey, VlanIds};
use etherconn_core::wire::{ethernet, vlan, EtherType, VlanTag};
use observer::RegistrationObserver;
use table::{ConnEntry, KeyTable};

/// Buffers for frames being built by senders (one per concurrently sending thread suffices).
const TX_BUFFERS: usize = 1024;

/// Settings of a [`Dispatcher`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DispatcherConfig {
    /// Most receive buffers in flight (queued on conns); frames beyond are dropped and counted
    /// as `rx_no_buffer`. Buffers are allocated on first use.
    pub rx_buffers: usize,
    /// Bytes per buffer: the largest frame the relay takes, VLAN tags included.
    pub buf_len: usize,
    /// Also give every frame to the default conn.
    pub mirror_to_default: bool,
    /// Verify UDP checksums of received frames.
    pub verify_udp_checksum: bool,
    /// Deliver frames whose source MAC is a group (multicast or broadcast) address. Off by
    /// default: IEEE 802 makes every source an individual address, so such a frame is forged
    /// or broken, and an answer to its "sender" would reach every station of the group. They
    /// are dropped before any conn sees them and counted in `rx_group_source`. On: for a
    /// capture or test tool that must see them.
    pub accept_group_source: bool,
    /// The most memory the relay's conns may reserve for queued frames
    /// ([`MemoryBudget`]): each conn reserves its worst case (its queue full) when it registers
    /// and is refused with [`RelayError::OverBudget`] beyond it. Default
    /// [`MemoryLimit::Machine`]: half the machine's memory, at most what is available when the
    /// relay is made.
    pub memory_budget: MemoryLimit,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            rx_buffers: 65_536,
            buf_len: 2048,
            mirror_to_default: false,
            verify_udp_checksum: true,
            accept_group_source: false,
            memory_budget: MemoryLimit::Machine,
        }
    }
}

impl DispatcherConfig {
    /// These settings with `mirror_to_default` set.
    pub fn mirror_to_default(mut self, on: bool) -> Self {
        self.mirror_to_default = on;
        self
    }

    /// These settings with `accept_group_source` set.
    pub fn accept_group_source(mut self, on: bool) -> Self {
        self.accept_group_source = on;
        self
    }

    /// These settings with the memory budget set.
    pub fn memory_budget(mut self, limit: MemoryLimit) -> Self {
        self.memory_budget = limit;
        self
    }

    /// The budget a dispatcher with these settings starts with (reads `/proc/meminfo` for
    /// [`MemoryLimit::Machine`]): tools check their plans against it before setting up.
    pub fn budget(&self) -> MemoryBudget {
        MemoryBudget::new(self.memory_budget.bytes(), self.rx_buffers, self.buf_len)
    }

    /// These settings with the buffer count and length set.
    pub fn buffers(mut self, count: usize, len: usize) -> Self {
        self.rx_buffers = count;
        self.buf_len = len;
        self
    }
}

/// The shared dispatch table, receive buffer pool and counters of one relay.
#[derive(Debug)]
pub struct Dispatcher {
    table: KeyTable,
    pool: Arc<BufferPool>,
    tx_pool: Arc<BufferPool>,
    counters: StripedCounters,
    budget: Arc<MemoryBudget>,
    config: DispatcherConfig,
    stopped: AtomicBool,
    /// The capture, once started: relays look it up once per receive batch and per send.
    capture: OnceLock<Capture>,
    /// Rate-limited drop summaries through `tracing`.
    drops: DropSummary,
}

impl Dispatcher {
    /// An empty table.
    pub fn new(config: DispatcherConfig) -> Arc<Dispatcher> {
        Self::build(config, None)
    }

    /// An empty table that tells `observer` of every registration and deregistration (see
    /// [`RegistrationObserver`]); a backend that filters in the kernel mirrors the table
    /// through it.
    pub fn with_observer(
        config: DispatcherConfig,
        observer: Arc<dyn RegistrationObserver>,
    ) -> Arc<Dispatcher> {
        Self::build(config, Some(observer))
    }

    fn build(
        config: DispatcherConfig,
        observer: Option<Arc<dyn RegistrationObserver>>,
    ) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            table: KeyTable::new(observer),
            pool: BufferPool::new(config.rx_buffers, config.buf_len),
            tx_pool: BufferPool::new(TX_BUFFERS, config.buf_len),
            counters: StripedCounters::default(),
            budget: Arc::new(config.budget()),
            config,
            stopped: AtomicBool::new(false),
            capture: OnceLock::new(),
            drops: DropSummary::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &DispatcherConfig {
        &self.config
    }

    /// The memory budget the relay's conns reserve their queues from.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// The calling thread's stripe of the live counters (backends add their own tx counts
    /// here); [`stats`](Self::stats) sums every stripe.
    #[inline]
    pub fn counters(&self) -> &RelayCounters {
        self.counters.local()
    }

    /// A snapshot of the counters (the capture's included).
    pub fn stats(&self) -> RelayStats {
        let mut st = self.counters.snapshot();
        if let Some(c) = self.capture.get() {
            let cs = c.stats();
            st.captured = cs.captured;
            st.capture_dropped = cs.dropped;
        }
        st
    }

    /// Tells a `tracing` subscriber what the relay `relay` (an interface name, say) lost and
    /// discarded since the last summary, at most once per
    /// [`DROP_SUMMARY_INTERVAL`](crate::DROP_SUMMARY_INTERVAL), from
    /// the counters: relay threads call it between polls, never per frame. Without a
    /// subscriber it costs one interest check. See [`DropSummary`].
    #[inline]
    pub fn summarise_drops(&self, relay: &str) {
        self.drops.tick(relay, || self.stats());
    }

    /// Starts capturing every frame the relay sends and receives (or those of the endpoints
    /// `config` names) to a pcapng file: creates the file and writes its headers before it
    /// returns, so that a path that cannot be written is an error here. A relay thread looks
    /// the capture up once per receive batch, so on a running relay the frames of a batch
    /// already under way may be missed: a relay that offers it takes a capture when it is
    /// made, before its threads start. One capture per
    /// relay, for the rest of its life; it ends with [`close_capture`](Self::close_capture),
    /// which a relay's `stop` calls, or when the relay is dropped. See [`Capture`].
    pub fn start_capture(&self, config: CaptureConfig) -> Result<(), CaptureError> {
        if self.is_stopped() {
            return Err(CaptureError::Stopped);
        }
        if self.capture.get().is_some() {
            return Err(CaptureError::AlreadyCapturing);
        }
        // Room for the relay's largest frame with a VLAN tag put back.
        let capture = Capture::start(config, self.config.buf_len + vlan::HEADER_LEN)?;
        // Lost a race with another start: that one stays, this one closes as it drops.
        self.capture
            .set(capture)
            .map_err(|_| CaptureError::AlreadyCapturing)
    }

    /// The capture, if one was started (closed or not): the relay's hook. A relay looks it up
    /// once per batch and, when there is one, calls [`Capture::record`] for every frame it
    /// received (before any check) and every frame it sent.
    #[inline]
    pub fn capture(&self) -> Option<&Capture> {
        self.capture.get()
    }

    /// Closes the capture, if any: every frame handed over is written and the file closed.
    /// A relay calls it in `stop` once its threads have ended; idempotent.
    pub fn close_capture(&self) -> Option<Result<CaptureStats, CaptureError>> {
        self.capture.get().map(Capture::close)
    }

    /// Number of exact keys registered.
    pub fn key_count(&self) -> usize {
        self.table.len()
    }

    /// Whether the relay stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Registers `keys` for `entry`, all or none.
    ///
    /// A key registered to another conn is refused with [`RelayError::KeyInUse`] unless
    /// `replace` is set, in which case the other conn loses it. A receive-multicast entry also
    /// joins the broadcast group of each key's VLANs and EtherType.
    pub fn register(
        &self,
        keys: &[L2EndpointKey],
        entry: &Arc<ConnEntry>,
        replace: bool,
    ) -> Result<(), RelayError> {
        if self.is_stopped() {
            return Err(RelayError::Stopped);
        }
        self.table.register(keys, entry, replace)
    }

    /// Removes `entry`'s keys (keys since taken by another conn are left alone), its
    /// multicast memberships and, if it is the default conn, that role.
    pub fn deregister(&self, keys: &[L2EndpointKey], entry: &Arc<ConnEntry>) {
        self.table.deregister(keys, entry);
    }

    /// Makes `entry` a member of the receive-multicast group of `vlans` and `ethertype`
    /// without registering an exact key: it then gets every broadcast or multicast frame on
    /// that VLAN stack and EtherType that no exact key matches, as a receive-multicast conn
    /// does. A neighbour responder joins the ARP and IPv6 groups of each VLAN stack it serves
    /// this way. Joining twice is one membership. The entry is closed when the relay stops. A
    /// backend that mirrors the table (its [`RegistrationObserver`]) hears of a new group and
    /// may refuse it.
    pub fn join_multicast(
        &self,
        vlans: VlanIds,
        ethertype: EtherType,
        entry: &Arc<ConnEntry>,
    ) -> Result<(), RelayError> {
        if self.is_stopped() {
            return Err(RelayError::Stopped);
        }
        self.table.join_group(vlans, ethertype, entry)
    }

    /// Ends a membership [`join_multicast`](Self::join_multicast) made.
    pub fn leave_multicast(&self, vlans: VlanIds, ethertype: EtherType, entry: &Arc<ConnEntry>) {
        self.table.leave_group(vlans, ethertype, entry);
    }

    /// Makes `entry` the default conn; refused with [`RelayError::DefaultInUse`] when another
    /// conn is the default, unless `replace` is set.
    pub fn set_default(&self, entry: &Arc<ConnEntry>, replace: bool) -> Result<(), RelayError> {
        if self.is_stopped() {
            return Err(RelayError::Stopped);
        }
        self.table.set_default(entry, replace)
    }

    /// Stops delivery and wakes every blocked reader with an error.
    ///
    /// Each table is write-locked while its conns are closed: a delivery holds its tables'
    /// read locks from the lookup to the push, so a push in flight lands before the close (and
    /// an `Inbox` reports the close after that frame), never after it. One lock at a time, so
    /// no lock order is at stake.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.table.close_all();
    }

    /// Receive buffers the pool has allocated so far (queued on conns, held by readers, or
    /// free): the deepest the relay has had to draw on it, at most `rx_buffers`.
    pub fn rx_buffers_allocated(&self) -> usize {
        self.pool.allocated()
    }

    /// A buffer to build an outgoing frame in, `None` when every one is in use.
    pub fn tx_buffer(&self) -> Option<PooledBuf> {
        self.tx_pool.get()
    }

    /// Takes a receive buffer, counting a shortage.
    fn buffer(&self) -> Option<PooledBuf> {
        let b = self.pool.get();
        if b.is_none() {
            RelayCounters::bump(&self.counters().rx_no_buffer);
        }
        b
    }

    /// Delivers one received frame: copies it into a pooled buffer (putting back an outer VLAN
    /// tag the kernel stripped, so that every backend hands conns the same bytes), classifies it
    /// once and queues it on the conn(s) it belongs to. Never blocks; every outcome is counted.
    ///
    /// `udp_checksum_trusted` says the backend knows the UDP checksum is good or was never
    /// computed (a locally generated frame on a veth, say), so it is not verified again.
    ///
    /// A relay that receives frames in bursts should use [`delivery`](Self::delivery) instead.
    /// (This one-frame path is kept apart from the batched one on purpose: it is the plain
    /// statement of the dispatch rules, and `tests/delivery.rs` checks the batched path
    /// against it.)
    pub fn deliver(&self, frame: &[u8], stripped_tag: Option<VlanTag>, udp_checksum_trusted: bool) {
        let Some(rx) = self.prepare(frame, stripped_tag, udp_checksum_trusted) else {
            return;
        };
        let key = rx.info.key;
        {
            let shard = self.table.read_shard_of(&key);
            if let Some(entry) = shard.get(&key) {
                let copy = if self.config.mirror_to_default {
                    self.copy_of(&rx)
                } else {
                    None
                };
                self.push(entry, rx, &self.counters().rx_delivered);
                drop(shard);
                if let Some(copy) = copy {
                    self.push_default(copy);
                }
                return;
            }
        }
        self.deliver_unmatched(rx);
    }

    /// The common first step of delivery: counts the frame offered, copies it into a pooled
    /// buffer (re-inserting a stripped tag) and classifies it; `None` (counted) when there is
    /// no buffer, the frame is invalid or its source MAC is a group address (unless
    /// `accept_group_source`; checked first). Both delivery paths start here, so the rules hold
    /// for both.
    fn prepare(
        &self,
        frame: &[u8],
        stripped_tag: Option<VlanTag>,
        udp_checksum_trusted: bool,
    ) -> Option<RxFrame> {
        let c = self.counters();
        RelayCounters::bump(&c.rx_offered);
        // On the raw bytes, before the copy and the parse, which a flood of forged frames then
        // never costs (and which cost 16 instructions a frame more, measured, when this test
        // followed them). Frames too short for a header are left to classify, as invalid.
        if !self.config.accept_group_source && is_group_source(frame) {
            RelayCounters::bump(&c.rx_group_source);
            return None;
        }
        let mut buf = self.buffer()?;
        let Some(len) = copy_frame(&mut buf, frame, stripped_tag) else {
            c.count_invalid(&etherconn_core::classify::Invalid::Truncated {
                layer: etherconn_core::classify::Layer::Ethernet,
            });
            return None;
        };
        let opts = Options::new()
            .verify_udp_checksum(self.config.verify_udp_checksum && !udp_checksum_trusted);
        let info = match classify_with(&buf[..len], None, opts) {
            Ok(info) => info,
            Err(why) => {
                c.count_invalid(&why);
                return None;
            }
        };
        if info.ip().is_some_and(|ip| ip.fragment) {
            RelayCounters::bump(&c.rx_fragments);
        }
        let slot = buf.slot_mut();
        slot.len = len;
        slot.info = info;
        Some(RxFrame::new(buf))
    }

    /// Delivers a frame no exact key matched: to the multicast group members and the default
    /// conn, or to the default conn, or nowhere (counted as a miss).
    fn deliver_unmatched(&self, rx: RxFrame) {
        let c = self.counters();
        let key = rx.info.key;
        if rx.info.dst_mac().is_multicast() {
            let groups = self.table.read_multicast();
            let members = groups
                .get(&(key.vlans, key.ethertype))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let default = self.table.read_default();
            if members.is_empty() && default.is_none() {
                RelayCounters::bump(&c.rx_multicast_ignored);
                return;
            }
            let mut rx = Some(rx);
            let last = members.len() + usize::from(default.is_some());
            for (i, m) in members.iter().enumerate() {
                let item = if i + 1 == last {
                    rx.take()
                } else {
                    rx.as_ref().and_then(|r| self.copy_of(r))
                };
                if let Some(item) = item {
                    self.push(m, item, &c.rx_multicast_delivered);
                }
            }
            if let (Some(d), Some(item)) = (default.as_ref(), rx.take()) {
                self.push(d, item, &c.rx_to_default);
            }
            return;
        }

        if !self.push_default(rx) {
            RelayCounters::bump(&c.rx_miss);
        }
    }

    fn push_default(&self, rx: RxFrame) -> bool {
        match self.table.read_default().as_ref() {
            Some(d) => {
                self.push(d, rx, &self.counters().rx_to_default);
                true
            }
            None => false,
        }
    }

    fn push(&self, entry: &ConnEntry, rx: RxFrame, delivered: &AtomicU64) {
        let result = match (&entry.l4, rx.info.udp()) {
            (Some(l4), Some(udp)) => match l4.push(udp.local, rx) {
                Some(r) => r,
                None => {
                    RelayCounters::bump(&self.counters().rx_l4_miss);
                    return;
                }
            },
            _ => entry.queue_for(&rx.info).push(rx),
        };
        self.count_push(result, delivered);
    }

    fn count_push(&self, result: Result<(), PushError>, delivered: &AtomicU64) {
        match result {
            Ok(()) => RelayCounters::bump(delivered),
            Err(PushError::Full) => RelayCounters::bump(&self.counters().rx_queue_full),
            // A conn closing while frames arrive for it: the frame has no reader.
            Err(PushError::Closed) => RelayCounters::bump(&self.counters().rx_miss),
            Err(PushError::Martian) => RelayCounters::bump(&self.counters().rx_martian),
        }
    }

    fn copy_of(&self, rx: &RxFrame) -> Option<RxFrame> {
        let mut buf = self.buffer()?;
        buf[..rx.len].copy_from_slice(rx.frame());
        let slot = buf.slot_mut();
        slot.len = rx.len;
        slot.info = rx.info;
        Some(RxFrame::new(buf))
    }
}

/// Whether `frame` is a whole Ethernet header whose source address is a group address.
#[inline]
fn is_group_source(frame: &[u8]) -> bool {
    frame.len() >= ethernet::HEADER_LEN
        && ethernet::Frame::new_unchecked(frame)
            .src_addr()
            .is_multicast()
}

/// Copies `frame` into `buf`, re-inserting `stripped_tag` after the MAC addresses; `None` when
/// the frame is shorter than an Ethernet header or does not fit.
fn copy_frame(buf: &mut [u8], frame: &[u8], stripped_tag: Option<VlanTag>) -> Option<usize> {
    vlan::restore_tag(frame, stripped_tag, buf).ok()
}
