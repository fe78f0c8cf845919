//! [`Delivery`]: the batched path from a burst of received frames to their conns.
//!
//! With 100,000 endpoints receiving, the table entries and queues a frame needs are rarely in
//! the cache, and looking each frame up and pushing it before starting the next pays every
//! miss in turn. A batch classifies all its frames, then looks them all up, then reads every
//! destination queue's line, and only then pushes, so that the misses of the whole batch are
//! outstanding together.

use std::sync::RwLockReadGuard;

use crossbeam_utils::sync::ShardedLockReadGuard;

use super::demux::{l4_lookup, L4Demux, L4Map};
use super::table::{shard_index, ConnEntry, ShardMap, SHARDS};
use super::Dispatcher;
use crate::queue::{RxFrame, RxQueue};
use crate::stats::RelayCounters;
use crate::wake::{defer_wakeups, DeferWakeups, DEFERRED_TOKENS};
use etherconn_core::wire::VlanTag;

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

/// Frames of one delivery whose wake-ups can be held back.
const HELD_FRAMES: usize = HOLD_BATCHES * DELIVERY_BATCH;

// The per-thread record of held-back listings has room for every frame held, twice over.
const _: () = assert!(DEFERRED_TOKENS >= 2 * HOLD_BATCHES * DELIVERY_BATCH);

impl Dispatcher {
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
            release: false,
        }
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
    wakeups: Option<DeferWakeups>,
    /// Automatic flushes since the listings were last released.
    held: usize,
    /// A queue pushed to since then is small and half full: release the listings at the end
    /// of this batch rather than [`HOLD_BATCHES`], so that a sleeping reader empties it before
    /// it overflows (a conn of 64 frames could otherwise get 128 while its reader sleeps).
    release: bool,
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
            self.wakeups = defer_wakeups();
        }
        if let Some(rx) = self.d.prepare(frame, stripped_tag, udp_checksum_trusted) {
            self.frames[self.n] = Some(rx);
            self.n += 1;
            if self.n == DELIVERY_BATCH {
                self.queue_frames();
                self.held += 1;
                if self.held == HOLD_BATCHES || self.release {
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
        self.release = false;
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
        let mut shards: [Option<ShardedLockReadGuard<'_, ShardMap>>; SHARDS] =
            [const { None }; SHARDS];
        while needed != 0 {
            let s = needed.trailing_zeros() as usize;
            shards[s] = Some(d.table.read_shard(s));
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
            *map = l4.map(L4Demux::read_map);
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
                _ => Dest::Queue(e.queue_for(&rx.info)),
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
        let mut release = self.release;
        for (slot, dst) in self.frames[start..stop].iter_mut().zip(&dest[start..stop]) {
            let Some(rx) = slot.take() else { continue };
            if mirror {
                *slot = d.copy_of(&rx);
            }
            match *dst {
                Dest::Queue(q) => {
                    let pushed = q.push(rx);
                    if !release && pushed.is_ok() {
                        release = q.fills_while_held(HELD_FRAMES);
                    }
                    d.count_push(pushed, &c.rx_delivered);
                }
                Dest::L4Miss => RelayCounters::bump(&c.rx_l4_miss),
                Dest::Unmatched => {}
            }
        }
        self.release = release;
        (stop, resume)
    }
}

impl Drop for Delivery<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}
