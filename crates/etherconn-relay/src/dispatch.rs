//! The dispatch table every relay delivers received frames through (DESIGN.md section 3).
//!
//! Exact keys live in a sharded map: a frame's lookup read-locks one of [`SHARDS`] shards
//! chosen from its MAC and VLAN ids, so relay threads never contend on one global lock and a
//! registration only blocks lookups in its own shard. The default conn and the
//! receive-multicast set are consulted only for frames no exact key matched.
//!
//! Relays deliver in batches ([`Delivery`]): with 100,000 endpoints receiving, the table
//! entries and queues a frame needs are rarely in the cache, and looking each frame up and
//! pushing it before starting the next pays every miss in turn. A batch classifies all its
//! frames, then looks them all up, then reads every destination queue's line, and only then
//! pushes, so that the misses of the whole batch are outstanding together.

use core::net::SocketAddr;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::vec::Vec;

use ahash::RandomState;

use super::pool::{BufferPool, PooledBuf};
use super::queue::{PushError, RxFrame, RxQueue};
use super::stats::{RelayCounters, RelayStats, StripedCounters};
use super::stripe::Padded;
use super::RelayError;
use etherconn_core::classify::{classify_with, Options};
use etherconn_core::key::{L2EndpointKey, L4RecvKey, VlanIds};
use etherconn_core::wire::{ethernet, vlan, EtherType, VlanTag};

/// Buffers for frames being built by senders (one per concurrently sending thread suffices).
const TX_BUFFERS: usize = 1024;

/// Number of shards of the exact-key table (at most 64: a batch keeps the shards it needs in
/// a `u64` bit set).
pub const SHARDS: usize = 64;
const _: () = assert!(SHARDS <= 64);

/// Most frames a [`Delivery`] holds before it pushes them to their conns.
pub const DELIVERY_BATCH: usize = 32;

/// Batches whose `ReadySet` listings a busy relay holds back before it wakes the waiting
/// threads (at most 128 frames of delay, only while frames keep coming: every `flush`
/// releases them). Waking a waiter for every batch of 32 cost it two context switches per
/// batch on a CPU it shares with the relay: in the perf tool's threaded mode with 1000
/// `RUdpConn`s that starved the relay (runs of 187k-904k pps, median 550k); holding 4 batches
/// gave runs of 315k-947k, median 880k, and left the other rows unchanged. Holding the whole
/// ring drain instead starved the receiver (1000 `EtherConn`s: 1.15 M -> 0.47 M pps).
const HOLD_BATCHES: usize = 4;

/// What a conn registers: its receive queue and how it wants frames.
#[derive(Debug)]
pub struct ConnEntry {
    id: u64,
    /// The conn's receive queue.
    pub queue: RxQueue,
    /// Whether the conn also takes broadcast/multicast frames on its VLANs and EtherTypes.
    pub recv_multicast: bool,
    /// For a shared L2 endpoint: the UDP endpoints it carries, each with its own queue. UDP
    /// datagrams go to the queue their [`L4RecvKey`] picks; other frames (ARP, ICMP) to
    /// `queue`.
    pub l4: Option<L4Demux>,
}

impl ConnEntry {
    /// A conn entry with a queue of `depth` frames.
    pub fn new(depth: usize, recv_multicast: bool) -> Arc<ConnEntry> {
        Self::build(depth, recv_multicast, None)
    }

    /// An entry for a shared L2 endpoint, demultiplexing UDP by [`L4RecvKey`].
    pub fn with_l4(depth: usize, recv_multicast: bool) -> Arc<ConnEntry> {
        Self::build(depth, recv_multicast, Some(L4Demux::default()))
    }

    fn build(depth: usize, recv_multicast: bool, l4: Option<L4Demux>) -> Arc<ConnEntry> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Arc::new(ConnEntry {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            queue: RxQueue::new(depth),
            recv_multicast,
            l4,
        })
    }

    /// A process-unique id, for logs.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Reads the line a push to this entry starts from (the UDP demultiplexer's, or the
    /// queue's) without writing it; see [`Delivery`].
    #[inline]
    fn prefetch(&self) {
        match &self.l4 {
            Some(l4) => {
                core::hint::black_box(l4.closed.load(Ordering::Relaxed));
            }
            None => self.queue.prefetch(),
        }
    }

    fn close(&self) {
        self.queue.close();
        if let Some(l4) = &self.l4 {
            l4.close_all();
        }
    }
}

impl AsRef<RxQueue> for ConnEntry {
    fn as_ref(&self) -> &RxQueue {
        &self.queue
    }
}

/// The UDP endpoints of one shared L2 endpoint, keyed by [`L4RecvKey`].
///
/// A lookup tries the exact (local IP, protocol, port) first, then the wildcard IP of the same
/// family. The lock is this endpoint's own: lookups in different shared endpoints never
/// contend, and within one they only share a read lock.
#[derive(Debug, Default)]
pub struct L4Demux {
    map: RwLock<L4Map>,
    closed: AtomicBool,
}

type L4Map = HashMap<L4RecvKey, Arc<RxQueue>, RandomState>;

/// The queue of the UDP endpoint `dst`: the exact key, else the wildcard IP's.
#[inline]
fn l4_lookup(map: &L4Map, dst: SocketAddr) -> Option<&RxQueue> {
    let key = L4RecvKey::udp(dst.ip(), dst.port());
    map.get(&key)
        .or_else(|| map.get(&key.wildcard()))
        .map(|q| &**q)
}

impl L4Demux {
    /// Registers `queue` for `key`; a key held by another queue is refused with
    /// [`RelayError::L4KeyInUse`] unless `replace` is set.
    pub fn register(
        &self,
        key: L4RecvKey,
        queue: &Arc<RxQueue>,
        replace: bool,
    ) -> Result<(), RelayError> {
        let mut map = write(&self.map);
        if let Some(other) = map.get(&key) {
            if !replace && !Arc::ptr_eq(other, queue) {
                return Err(RelayError::L4KeyInUse(key));
            }
        }
        map.insert(key, Arc::clone(queue));
        Ok(())
    }

    /// Removes `key` if `queue` still holds it.
    pub fn deregister(&self, key: &L4RecvKey, queue: &Arc<RxQueue>) {
        let mut map = write(&self.map);
        if map.get(key).is_some_and(|q| Arc::ptr_eq(q, queue)) {
            map.remove(key);
        }
    }

    /// Number of registered UDP endpoints.
    pub fn len(&self) -> usize {
        read(&self.map).len()
    }

    /// Whether no UDP endpoint is registered.
    pub fn is_empty(&self) -> bool {
        read(&self.map).is_empty()
    }

    /// Closes every registered queue (their readers get an error).
    pub fn close_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for q in read(&self.map).values() {
            q.close();
        }
    }

    /// Pushes `rx` to the queue of its destination; `None` (and `rx` dropped) when no key
    /// matches.
    fn push(&self, dst: SocketAddr, rx: RxFrame) -> Option<Result<(), PushError>> {
        l4_lookup(&read(&self.map), dst).map(|q| q.push(rx))
    }
}

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
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            rx_buffers: 65_536,
            buf_len: 2048,
            mirror_to_default: false,
            verify_udp_checksum: true,
        }
    }
}

impl DispatcherConfig {
    /// These settings with `mirror_to_default` set.
    pub fn mirror_to_default(mut self, on: bool) -> Self {
        self.mirror_to_default = on;
        self
    }

    /// These settings with the buffer count and length set.
    pub fn buffers(mut self, count: usize, len: usize) -> Self {
        self.rx_buffers = count;
        self.buf_len = len;
        self
    }
}

type ShardMap = HashMap<L2EndpointKey, Arc<ConnEntry>, RandomState>;
type Shard = RwLock<ShardMap>;
type GroupKey = (VlanIds, EtherType);

/// The shared dispatch table, receive buffer pool and counters of one relay.
#[derive(Debug)]
pub struct Dispatcher {
    // Padded: a read lock writes the lock word, and unpadded neighbours would share its line.
    shards: Vec<Padded<Shard>>,
    default: RwLock<Option<Arc<ConnEntry>>>,
    multicast: RwLock<HashMap<GroupKey, Vec<Arc<ConnEntry>>, RandomState>>,
    pool: Arc<BufferPool>,
    tx_pool: Arc<BufferPool>,
    counters: StripedCounters,
    config: DispatcherConfig,
    stopped: AtomicBool,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl Dispatcher {
    /// An empty table.
    pub fn new(config: DispatcherConfig) -> Arc<Dispatcher> {
        Arc::new(Dispatcher {
            shards: (0..SHARDS)
                .map(|_| Padded(RwLock::new(HashMap::with_hasher(RandomState::new()))))
                .collect(),
            default: RwLock::new(None),
            multicast: RwLock::new(HashMap::with_hasher(RandomState::new())),
            pool: BufferPool::new(config.rx_buffers, config.buf_len),
            tx_pool: BufferPool::new(TX_BUFFERS, config.buf_len),
            counters: StripedCounters::default(),
            config,
            stopped: AtomicBool::new(false),
        })
    }

    /// The settings.
    pub fn config(&self) -> &DispatcherConfig {
        &self.config
    }

    /// The calling thread's stripe of the live counters (backends add their own tx counts
    /// here); [`stats`](Self::stats) sums every stripe.
    #[inline]
    pub fn counters(&self) -> &RelayCounters {
        self.counters.local()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RelayStats {
        self.counters.snapshot()
    }

    /// Number of exact keys registered.
    pub fn key_count(&self) -> usize {
        self.shards.iter().map(|s| read(&s.0).len()).sum()
    }

    fn shard(&self, key: &L2EndpointKey) -> &Shard {
        &self.shards[shard_index(key)].0
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
        for (i, key) in keys.iter().enumerate() {
            let mut shard = write(self.shard(key));
            match shard.get(key) {
                Some(other) if !replace && !Arc::ptr_eq(other, entry) => {
                    drop(shard);
                    self.remove_keys(&keys[..i], entry);
                    return Err(RelayError::KeyInUse(*key));
                }
                _ => {
                    shard.insert(*key, Arc::clone(entry));
                }
            }
        }
        if entry.recv_multicast {
            let mut groups = write(&self.multicast);
            for key in keys {
                let members = groups.entry((key.vlans, key.ethertype)).or_default();
                if !members.iter().any(|m| Arc::ptr_eq(m, entry)) {
                    members.push(Arc::clone(entry));
                }
            }
        }
        Ok(())
    }

    fn remove_keys(&self, keys: &[L2EndpointKey], entry: &Arc<ConnEntry>) {
        for key in keys {
            let mut shard = write(self.shard(key));
            if shard.get(key).is_some_and(|e| Arc::ptr_eq(e, entry)) {
                shard.remove(key);
            }
        }
    }

    /// Removes `entry`'s keys (keys since taken by another conn are left alone), its
    /// multicast memberships and, if it is the default conn, that role.
    pub fn deregister(&self, keys: &[L2EndpointKey], entry: &Arc<ConnEntry>) {
        self.remove_keys(keys, entry);
        if entry.recv_multicast {
            let mut groups = write(&self.multicast);
            for key in keys {
                let g = (key.vlans, key.ethertype);
                if let Some(members) = groups.get_mut(&g) {
                    members.retain(|m| !Arc::ptr_eq(m, entry));
                    if members.is_empty() {
                        groups.remove(&g);
                    }
                }
            }
        }
        let mut default = write(&self.default);
        if default.as_ref().is_some_and(|d| Arc::ptr_eq(d, entry)) {
            *default = None;
        }
    }

    /// Makes `entry` the default conn; refused with [`RelayError::DefaultInUse`] when another
    /// conn is the default, unless `replace` is set.
    pub fn set_default(&self, entry: &Arc<ConnEntry>, replace: bool) -> Result<(), RelayError> {
        if self.is_stopped() {
            return Err(RelayError::Stopped);
        }
        let mut default = write(&self.default);
        if let Some(d) = default.as_ref() {
            if !replace && !Arc::ptr_eq(d, entry) {
                return Err(RelayError::DefaultInUse);
            }
        }
        *default = Some(Arc::clone(entry));
        Ok(())
    }

    /// Stops delivery and wakes every blocked reader with an error.
    ///
    /// Each table is write-locked while its conns are closed: a delivery holds its tables'
    /// read locks from the lookup to the push, so a push in flight lands before the close (and
    /// an `Inbox` reports the close after that frame), never after it. One lock at a time, so
    /// no lock order is at stake.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        for s in &self.shards {
            for e in write(&s.0).values() {
                e.close();
            }
        }
        if let Some(d) = write(&self.default).as_ref() {
            d.close();
        }
        for members in write(&self.multicast).values() {
            for m in members {
                m.close();
            }
        }
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
            let shard = read(self.shard(&key));
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

    /// A batch for delivering a burst of frames (a receive ring's block, say): frames pushed
    /// to it are classified at once and queued on their conns when the batch fills
    /// ([`DELIVERY_BATCH`] frames), when [`Delivery::flush`] is called, or when it drops.
    /// Frames reach their conns exactly as with [`deliver`](Self::deliver), in order; with many
    /// endpoints receiving, a batch costs much less per frame. (Async readers' wakers are woken
    /// while the batch holds its table read locks: a waker must only schedule its task, as
    /// every async runtime's does, not run it inline.)
    pub fn delivery(&self) -> Delivery<'_> {
        Delivery {
            d: self,
            frames: [const { None }; DELIVERY_BATCH],
            n: 0,
            wakeups: None,
            held: 0,
        }
    }

    /// The common first step of delivery: counts the frame offered, copies it into a pooled
    /// buffer (re-inserting a stripped tag) and classifies it; `None` (counted) when there is
    /// no buffer or the frame is invalid.
    fn prepare(
        &self,
        frame: &[u8],
        stripped_tag: Option<VlanTag>,
        udp_checksum_trusted: bool,
    ) -> Option<RxFrame> {
        let c = self.counters();
        RelayCounters::bump(&c.rx_offered);
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
            let groups = read(&self.multicast);
            let members = groups
                .get(&(key.vlans, key.ethertype))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let default = read(&self.default);
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
        match read(&self.default).as_ref() {
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
            _ => entry.queue.push(rx),
        };
        self.count_push(result, delivered);
    }

    fn count_push(&self, result: Result<(), PushError>, delivered: &AtomicU64) {
        match result {
            Ok(()) => RelayCounters::bump(delivered),
            Err(PushError::Full) => RelayCounters::bump(&self.counters().rx_queue_full),
            // A conn closing while frames arrive for it: the frame has no reader.
            Err(PushError::Closed) => RelayCounters::bump(&self.counters().rx_miss),
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

/// A batch of received frames on their way to their conns; see [`Dispatcher::delivery`].
///
/// ```
/// use etherconn_relay::{DispatcherConfig, LoopbackRelay, PacketRelay};
///
/// let relay = LoopbackRelay::new(DispatcherConfig::default());
/// let frames: Vec<Vec<u8>> = vec![vec![0xff; 60]; 3];
/// let mut batch = relay.dispatcher().delivery();
/// for f in &frames {
///     batch.push(f, None, false);
/// }
/// batch.flush(); // or let it drop
/// assert_eq!(relay.dispatcher().stats().rx_offered, 3);
/// ```
#[derive(Debug)]
pub struct Delivery<'d> {
    d: &'d Dispatcher,
    /// Classified frames waiting for the flush (during a flush, a delivered frame's slot may
    /// hold its copy for the default conn).
    frames: [Option<RxFrame>; DELIVERY_BATCH],
    n: usize,
    /// `ReadySet` listings held back since the first frame pushed, across up to
    /// [`HOLD_BATCHES`] automatic flushes, until then or the public `flush` (or drop). (This
    /// also makes a `Delivery` belong to the thread that made it: it is not `Send`.)
    wakeups: Option<super::ready::DeferWakeups>,
    /// Automatic flushes since the listings were last released.
    held: usize,
}

/// Where a frame of a batch goes once everything is looked up.
#[derive(Clone, Copy)]
enum Dest<'a> {
    /// Not matched by an exact key: the multicast/default rules, after the batch.
    Unmatched,
    /// A UDP datagram for a shared L2 endpoint with no UDP endpoint on its port.
    L4Miss,
    Queue(&'a RxQueue),
}

impl Delivery<'_> {
    /// Copies and classifies `frame` (see [`Dispatcher::deliver`] for the arguments), and
    /// queues the batch on its conns once it holds [`DELIVERY_BATCH`] frames.
    pub fn push(
        &mut self,
        frame: &[u8],
        stripped_tag: Option<VlanTag>,
        udp_checksum_trusted: bool,
    ) {
        if self.wakeups.is_none() {
            self.wakeups = super::ready::defer_wakeups();
        }
        if let Some(rx) = self.d.prepare(frame, stripped_tag, udp_checksum_trusted) {
            self.frames[self.n] = Some(rx);
            self.n += 1;
            if self.n == DELIVERY_BATCH {
                self.queue_frames();
                self.held += 1;
                if self.held == HOLD_BATCHES {
                    self.flush();
                }
            }
        }
    }

    /// Frames waiting in the batch.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Queues every frame of the batch on its conn(s), in order, and wakes the threads waiting
    /// in a `ReadySet` for any conn that got frames since the last `flush`. Call it when the
    /// burst ends (a receive ring drained); a busy relay that never does still wakes them every
    /// few batches.
    pub fn flush(&mut self) {
        self.queue_frames();
        self.held = 0;
        // Dropping the guard lists the held-back tokens and wakes the waiters.
        self.wakeups = None;
    }

    /// Queues every frame of the batch on its conn(s), in order; `ReadySet` listings stay
    /// held (see [`HOLD_BATCHES`]).
    fn queue_frames(&mut self) {
        let n = core::mem::take(&mut self.n);
        if n == 0 {
            return;
        }
        let d = self.d;
        let mut start = 0;
        while start < n {
            let (stop, resume) = self.push_matched(start, n);
            // With every lock of the batch released: the default conn's copies of the frames
            // just delivered (the only frames left in `start..stop`), then the frames no exact
            // key matched, which go by the multicast and default rules. A conn that gets both
            // kinds still gets them in arrival order.
            for slot in &mut self.frames[start..stop] {
                if let Some(copy) = slot.take() {
                    d.push_default(copy);
                }
            }
            for slot in &mut self.frames[stop..resume] {
                if let Some(rx) = slot.take() {
                    d.deliver_unmatched(rx);
                }
            }
            start = resume;
        }
    }

    /// Pushes the frames of `start..n` an exact key matches, up to the first one none does
    /// (`stop`); returns `stop` and the end of the run of unmatched frames there (`resume`).
    /// Mirror copies for the default conn are left in the pushed frames' slots.
    ///
    /// In stages, so that the cache misses of different frames overlap: look up every frame's
    /// L2 entry (each shard read-locked once for the batch), read those entries' lines, look up
    /// the UDP endpoints (each demultiplexer read-locked once), read every destination queue's
    /// line, and only then push. The plain reads are independent of each other, so the CPU
    /// has them all in flight at once; the locks' atomic writes, which would wait for their
    /// line one at a time, come after the lines are in the cache.
    fn push_matched(&mut self, start: usize, n: usize) -> (usize, usize) {
        let d = self.d;
        let c = d.counters();
        let frames = &self.frames;
        let mut shard_of = [0u8; DELIVERY_BATCH];
        let mut needed = 0u64;
        for i in start..n {
            if let Some(rx) = &frames[i] {
                let s = shard_index(&rx.info.key);
                shard_of[i] = s as u8;
                needed |= 1 << s;
            }
        }
        // Every batch locks the shards it needs in ascending order, and then the UDP tables in
        // ascending address order: two relay threads' batches (fanout) could otherwise each hold
        // a lock the other wants while a writer queued behind each blocks new readers.
        let mut shards: [Option<RwLockReadGuard<'_, ShardMap>>; SHARDS] = [const { None }; SHARDS];
        while needed != 0 {
            let s = needed.trailing_zeros() as usize;
            shards[s] = Some(read(&d.shards[s].0));
            needed &= needed - 1;
        }
        let shards = &shards;

        let mut entries: [Option<&ConnEntry>; DELIVERY_BATCH] = [None; DELIVERY_BATCH];
        for i in start..n {
            if let (Some(rx), Some(shard)) = (&frames[i], &shards[usize::from(shard_of[i])]) {
                entries[i] = shard.get(&rx.info.key).map(|e| &**e);
            }
        }
        for e in entries[start..n].iter().flatten() {
            e.prefetch();
        }

        // Each demultiplexer is read-locked once (a second read lock taken by the same thread
        // could wait behind a queued writer that waits for the first), in address order (see
        // the shards above).
        let l4_of = |i: usize| match (entries[i], &frames[i]) {
            (Some(e), Some(rx)) if rx.info.udp().is_some() => e.l4.as_ref(),
            _ => None,
        };
        let mut demux: [Option<&L4Demux>; DELIVERY_BATCH] = [None; DELIVERY_BATCH];
        let mut locked = 0;
        for i in start..n {
            if let Some(l4) = l4_of(i) {
                if !demux[..locked]
                    .iter()
                    .flatten()
                    .any(|m| core::ptr::eq(*m, l4))
                {
                    demux[locked] = Some(l4);
                    locked += 1;
                }
            }
        }
        demux[..locked].sort_unstable_by_key(|m| m.map(|m| m as *const L4Demux as usize));
        let mut demux_of = [0u8; DELIVERY_BATCH];
        for (i, of) in demux_of.iter_mut().enumerate().take(n).skip(start) {
            if let Some(l4) = l4_of(i) {
                let at = demux[..locked]
                    .iter()
                    .position(|m| m.is_some_and(|m| core::ptr::eq(m, l4)));
                *of = at.unwrap_or(0) as u8;
            }
        }
        let mut maps: [Option<RwLockReadGuard<'_, L4Map>>; DELIVERY_BATCH] =
            [const { None }; DELIVERY_BATCH];
        for (map, l4) in maps.iter_mut().zip(&demux[..locked]) {
            *map = l4.map(|l4| read(&l4.map));
        }

        let mut dest = [Dest::Unmatched; DELIVERY_BATCH];
        for i in start..n {
            let (Some(e), Some(rx)) = (entries[i], &frames[i]) else {
                continue;
            };
            dest[i] = match (&e.l4, rx.info.udp()) {
                (Some(_), Some(udp)) => maps[usize::from(demux_of[i])]
                    .as_ref()
                    .and_then(|map| l4_lookup(map, udp.local))
                    .map_or(Dest::L4Miss, Dest::Queue),
                _ => Dest::Queue(&e.queue),
            };
        }
        let stop = (start..n)
            .find(|&i| matches!(dest[i], Dest::Unmatched))
            .unwrap_or(n);
        let resume = (stop..n)
            .find(|&i| !matches!(dest[i], Dest::Unmatched))
            .unwrap_or(n);
        for dst in &dest[start..stop] {
            if let Dest::Queue(q) = dst {
                q.prefetch();
            }
        }

        let mirror = d.config.mirror_to_default;
        for (slot, dst) in self.frames[start..stop].iter_mut().zip(&dest[start..stop]) {
            let Some(rx) = slot.take() else { continue };
            if mirror {
                *slot = d.copy_of(&rx);
            }
            match *dst {
                Dest::Queue(q) => d.count_push(q.push(rx), &c.rx_delivered),
                Dest::L4Miss => RelayCounters::bump(&c.rx_l4_miss),
                Dest::Unmatched => {}
            }
        }
        (stop, resume)
    }
}

impl Drop for Delivery<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The shard of `key`'s table.
#[inline]
fn shard_index(key: &L2EndpointKey) -> usize {
    // The low MAC octets vary most between endpoints of a fleet; mixing in the VLAN ids
    // spreads endpoints that share a MAC over VLANs.
    let m = key.mac.0;
    let v = key
        .vlans
        .as_slice()
        .iter()
        .fold(0u16, |a, &id| a.rotate_left(5) ^ id);
    let h = usize::from(m[5]) ^ (usize::from(m[4]) << 3) ^ usize::from(m[3]) ^ usize::from(v);
    h % SHARDS
}

/// Copies `frame` into `buf`, re-inserting `stripped_tag` after the MAC addresses; `None` when
/// the frame is shorter than an Ethernet header or does not fit.
fn copy_frame(buf: &mut [u8], frame: &[u8], stripped_tag: Option<VlanTag>) -> Option<usize> {
    if frame.len() < ethernet::HEADER_LEN {
        return None;
    }
    match stripped_tag {
        None => {
            buf.get_mut(..frame.len())?.copy_from_slice(frame);
            Some(frame.len())
        }
        Some(tag) => {
            let len = frame.len() + vlan::HEADER_LEN;
            let out = buf.get_mut(..len)?;
            out[..12].copy_from_slice(&frame[..12]);
            out[12..14].copy_from_slice(&tag.tpid.get().to_be_bytes());
            out[14..16].copy_from_slice(&tag.tci().to_be_bytes());
            out[16..].copy_from_slice(&frame[12..]);
            Some(len)
        }
    }
}
