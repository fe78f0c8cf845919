//! The key table: which conn each frame goes to. Exact keys in [`SHARDS`] shards, the default
//! conn, and the receive-multicast groups.

use core::fmt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::vec::Vec;

use ahash::RandomState;
use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};

use super::demux::L4Demux;
use super::observer::{RegistrationChange, RegistrationObserver};
use crate::error::RelayError;
use crate::locks::{read_sharded, write_sharded};
use crate::queue::RxQueue;
use etherconn_core::classify::Classified;
use etherconn_core::key::{L2EndpointKey, VlanIds};
use etherconn_core::wire::{ip_protocol, EtherType};

/// Number of shards of the exact-key table (at most 64: a batch keeps the shards it needs in
/// a `u64` bit set).
pub const SHARDS: usize = 64;
const _: () = assert!(SHARDS <= 64);

/// What a conn registers: its receive queue and how it wants frames.
#[derive(Debug)]
pub struct ConnEntry {
    id: u64,
    /// The conn's receive queue.
    pub queue: RxQueue,
    /// Whether the conn also takes broadcast/multicast frames on its VLANs and EtherTypes.
    pub recv_multicast: bool,
    /// For a shared L2 endpoint: the UDP endpoints it carries, each with its own queue. UDP
    /// datagrams go to the queue their [`L4RecvKey`](etherconn_core::key::L4RecvKey) picks;
    /// other frames (ARP, ICMP) to `queue`.
    pub l4: Option<L4Demux>,
    /// Set once, by [`ConnEntry::divert_neighbour_frames`]: ARP and ICMP frames go there.
    // Boxed: a thin pointer fits the room the entry's 128-byte-aligned queue leaves, where
    // the wide pointer of the tap itself grew every entry by 128 bytes.
    neighbour: OnceLock<Box<Tap>>,
}

/// Where a conn's ARP and ICMP frames go instead of its queue
/// ([`ConnEntry::divert_neighbour_frames`]): any shared owner of a queue, a [`ConnEntry`] or
/// an [`RxQueue`] itself.
pub type NeighbourTap = Arc<dyn AsRef<RxQueue> + Send + Sync>;

/// A set tap, `Debug` for the entry's sake.
struct Tap(NeighbourTap);

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<neighbour tap {:p}>", Arc::as_ptr(&self.0))
    }
}

/// What a tap takes: ARP, and IP packets carrying ICMP or ICMPv6 (neighbour discovery, echo).
#[inline]
fn is_neighbour_frame(info: &Classified) -> bool {
    info.ethertype() == EtherType::ARP
        || matches!(
            info.ip_protocol(),
            Some(ip_protocol::ICMP | ip_protocol::ICMPV6)
        )
}

impl ConnEntry {
    /// A conn entry with a queue of `depth` frames.
    pub fn new(depth: usize, recv_multicast: bool) -> Arc<ConnEntry> {
        Self::build(depth, recv_multicast, None)
    }

    /// An entry for a shared L2 endpoint, demultiplexing UDP by
    /// [`L4RecvKey`](etherconn_core::key::L4RecvKey).
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
            neighbour: OnceLock::new(),
        })
    }

    /// Sends the ARP, ICMP and ICMPv6 frames delivered to this conn from now on to `to`
    /// instead of its queue: how a neighbour responder (one queue for a relay's endpoints)
    /// sees the requests and answers sent to each endpoint's MAC, with no thread or key of its
    /// own per endpoint. The conn's reader never sees them; its UDP datagrams are untouched.
    ///
    /// Set once for the conn's life; setting the same target again succeeds, another one is
    /// refused with [`RelayError::InvalidConfig`]. Frames are queued on `to` whatever its own
    /// entry's tap.
    pub fn divert_neighbour_frames(&self, to: &NeighbourTap) -> Result<(), RelayError> {
        let set = self.neighbour.get_or_init(|| Box::new(Tap(Arc::clone(to))));
        if core::ptr::addr_eq(Arc::as_ptr(&set.0), Arc::as_ptr(to)) {
            Ok(())
        } else {
            Err(RelayError::InvalidConfig(
                "the conn already diverts neighbour frames elsewhere",
            ))
        }
    }

    /// Whether [`divert_neighbour_frames`](Self::divert_neighbour_frames) was called.
    pub fn diverts_neighbour_frames(&self) -> bool {
        self.neighbour.get().is_some()
    }

    /// The queue a frame for this conn that no UDP demultiplexer takes goes to: the tap's for
    /// ARP and ICMP when one is set, the conn's own otherwise. A plain load when no tap is
    /// set; the frame's class is looked at only when one is.
    #[inline]
    pub(super) fn queue_for(&self, info: &Classified) -> &RxQueue {
        match self.neighbour.get() {
            Some(tap) if is_neighbour_frame(info) => (*tap.0).as_ref(),
            _ => &self.queue,
        }
    }

    /// A process-unique id, for logs.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Reads the line a push to this entry starts from (the UDP demultiplexer's, or the
    /// queue's) without writing it; see `Delivery`.
    #[inline]
    pub(super) fn prefetch(&self) {
        match &self.l4 {
            Some(l4) => l4.prefetch(),
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

pub(super) type ShardMap = HashMap<L2EndpointKey, Arc<ConnEntry>, RandomState>;
type Shard = ShardedLock<ShardMap>;
type GroupKey = (VlanIds, EtherType);
/// The receive-multicast conns of each (VLAN ids, EtherType).
pub(super) type GroupMap = HashMap<GroupKey, Vec<Arc<ConnEntry>>, RandomState>;

/// The conns of one relay, by key: the exact keys in shards, the default conn and the
/// receive-multicast groups, each behind its own lock.
///
/// Every lock here is a [`ShardedLock`]: 8 reader-writer locks on their own cache lines, of
/// which a read lock takes the one a process-wide thread index picks (mod 8), where a plain
/// `RwLock`'s read lock writes the one word every reader shares. Two relay threads share a
/// lock word only when their indices are equal mod 8 (more than 8 threads reading
/// `ShardedLock`s in the process, or an unlucky reuse of indices). Relay threads read-lock most of the 64 shards for every batch of 32 frames, and
/// with two of them delivering at once (a fanout by flow puts any endpoint on either thread)
/// that one word's line went back and forth between their cores on every lock: two threads
/// delivered 1.47x what one did, against 1.68-1.73x with per-thread lock words (the dispatch
/// bench, `hash` split, 1,000 endpoints; docs/performance.md). Writers, who register and
/// remove conns, take all 8 in turn instead of one.
#[derive(Debug)]
pub(super) struct KeyTable {
    shards: Vec<Shard>,
    default: ShardedLock<Option<Arc<ConnEntry>>>,
    multicast: ShardedLock<GroupMap>,
    observer: Option<Arc<dyn RegistrationObserver>>,
}

impl KeyTable {
    /// An empty table, telling `observer` of every change.
    pub(super) fn new(observer: Option<Arc<dyn RegistrationObserver>>) -> KeyTable {
        KeyTable {
            shards: (0..SHARDS)
                .map(|_| ShardedLock::new(HashMap::with_hasher(RandomState::new())))
                .collect(),
            default: ShardedLock::new(None),
            multicast: ShardedLock::new(HashMap::with_hasher(RandomState::new())),
            observer,
        }
    }

    /// Tells the observer, if any, of `change`.
    fn observe(&self, change: RegistrationChange) -> Result<(), RelayError> {
        match &self.observer {
            Some(o) => o.on_change(change),
            None => Ok(()),
        }
    }

    /// Number of exact keys registered.
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| read_sharded(s).len()).sum()
    }

    fn shard(&self, key: &L2EndpointKey) -> &Shard {
        &self.shards[shard_index(key)]
    }

    /// The shard holding `key`, read-locked.
    #[inline]
    pub(super) fn read_shard_of(&self, key: &L2EndpointKey) -> ShardedLockReadGuard<'_, ShardMap> {
        read_sharded(self.shard(key))
    }

    /// Shard `s` (a [`shard_index`]), read-locked.
    #[inline]
    pub(super) fn read_shard(&self, s: usize) -> ShardedLockReadGuard<'_, ShardMap> {
        read_sharded(&self.shards[s])
    }

    /// The default conn, read-locked.
    #[inline]
    pub(super) fn read_default(&self) -> ShardedLockReadGuard<'_, Option<Arc<ConnEntry>>> {
        read_sharded(&self.default)
    }

    /// The receive-multicast groups, read-locked.
    #[inline]
    pub(super) fn read_multicast(&self) -> ShardedLockReadGuard<'_, GroupMap> {
        read_sharded(&self.multicast)
    }

    /// Write-locks the shards of `keys`, each once, in ascending shard order (the order a
    /// batched delivery read-locks them in, so that neither waits on the other in a cycle).
    fn write_shards(
        &self,
        keys: &[L2EndpointKey],
    ) -> Vec<(usize, ShardedLockWriteGuard<'_, ShardMap>)> {
        let mut set = 0u64;
        for k in keys {
            set |= 1 << shard_index(k);
        }
        let mut guards = Vec::with_capacity(set.count_ones() as usize);
        while set != 0 {
            let s = set.trailing_zeros() as usize;
            set &= set - 1;
            guards.push((s, write_sharded(&self.shards[s])));
        }
        guards
    }

    /// Registers `keys` for `entry`, all or none; see `Dispatcher::register`.
    ///
    /// Every shard involved stays write-locked from the check to the insert, so the keys that
    /// are new are reported to the observer together, and refused together.
    pub(super) fn register(
        &self,
        keys: &[L2EndpointKey],
        entry: &Arc<ConnEntry>,
        replace: bool,
    ) -> Result<(), RelayError> {
        {
            let mut shards = self.write_shards(keys);
            let mut added = Vec::new();
            for key in keys {
                match locked_shard(&mut shards, key).get(key) {
                    Some(other) if !replace && !Arc::ptr_eq(other, entry) => {
                        return Err(RelayError::KeyInUse(*key));
                    }
                    Some(_) => {}
                    None => {
                        let c = RegistrationChange::KeyAdded(*key);
                        if !added.contains(&c) {
                            added.push(c);
                        }
                    }
                }
            }
            if !added.is_empty() {
                if let Some(o) = &self.observer {
                    o.on_changes(&added)?;
                }
            }
            for key in keys {
                locked_shard(&mut shards, key).insert(*key, Arc::clone(entry));
            }
        }
        if entry.recv_multicast {
            let mut groups = write_sharded(&self.multicast);
            for (i, key) in keys.iter().enumerate() {
                let g = (key.vlans, key.ethertype);
                if !groups.contains_key(&g) {
                    if let Err(e) = self.observe(RegistrationChange::GroupAdded(g.0, g.1)) {
                        self.leave_groups(&mut groups, &keys[..i], entry);
                        drop(groups);
                        self.remove_keys(keys, entry);
                        return Err(e);
                    }
                }
                let members = groups.entry(g).or_default();
                if !members.iter().any(|m| Arc::ptr_eq(m, entry)) {
                    members.push(Arc::clone(entry));
                }
            }
        }
        Ok(())
    }

    /// Adds `entry` to the receive-multicast group of `vlans` and `ethertype` (no exact key);
    /// see `Dispatcher::join_multicast`. A new group is reported to the observer first, which
    /// may refuse it.
    pub(super) fn join_group(
        &self,
        vlans: VlanIds,
        ethertype: EtherType,
        entry: &Arc<ConnEntry>,
    ) -> Result<(), RelayError> {
        let mut groups = write_sharded(&self.multicast);
        if !groups.contains_key(&(vlans, ethertype)) {
            self.observe(RegistrationChange::GroupAdded(vlans, ethertype))?;
        }
        let members = groups.entry((vlans, ethertype)).or_default();
        if !members.iter().any(|m| Arc::ptr_eq(m, entry)) {
            members.push(Arc::clone(entry));
        }
        Ok(())
    }

    /// Removes `entry` from one receive-multicast group; see `Dispatcher::leave_multicast`.
    /// A group left empty is reported to the observer.
    pub(super) fn leave_group(&self, vlans: VlanIds, ethertype: EtherType, entry: &Arc<ConnEntry>) {
        let mut groups = write_sharded(&self.multicast);
        let g = (vlans, ethertype);
        if let Some(members) = groups.get_mut(&g) {
            members.retain(|m| !Arc::ptr_eq(m, entry));
            if members.is_empty() {
                groups.remove(&g);
                let _ = self.observe(RegistrationChange::GroupRemoved(g.0, g.1));
            }
        }
    }

    /// Removes those of `keys` that are `entry`'s, reporting them together.
    fn remove_keys(&self, keys: &[L2EndpointKey], entry: &Arc<ConnEntry>) {
        let mut shards = self.write_shards(keys);
        let mut removed = Vec::new();
        for key in keys {
            let shard = locked_shard(&mut shards, key);
            if shard.get(key).is_some_and(|e| Arc::ptr_eq(e, entry)) {
                shard.remove(key);
                removed.push(RegistrationChange::KeyRemoved(*key));
            }
        }
        if !removed.is_empty() {
            if let Some(o) = &self.observer {
                let _ = o.on_changes(&removed);
            }
        }
    }

    /// Takes `entry` out of the groups of `keys`, removing the groups it leaves empty.
    fn leave_groups(&self, groups: &mut GroupMap, keys: &[L2EndpointKey], entry: &Arc<ConnEntry>) {
        for key in keys {
            let g = (key.vlans, key.ethertype);
            if let Some(members) = groups.get_mut(&g) {
                members.retain(|m| !Arc::ptr_eq(m, entry));
                if members.is_empty() {
                    groups.remove(&g);
                    let _ = self.observe(RegistrationChange::GroupRemoved(g.0, g.1));
                }
            }
        }
    }

    /// Removes `entry`'s keys, multicast memberships and default role; see
    /// `Dispatcher::deregister`.
    pub(super) fn deregister(&self, keys: &[L2EndpointKey], entry: &Arc<ConnEntry>) {
        self.remove_keys(keys, entry);
        if entry.recv_multicast {
            self.leave_groups(&mut write_sharded(&self.multicast), keys, entry);
        }
        let mut default = write_sharded(&self.default);
        if default.as_ref().is_some_and(|d| Arc::ptr_eq(d, entry)) {
            *default = None;
            let _ = self.observe(RegistrationChange::DefaultCleared);
        }
    }

    /// Makes `entry` the default conn; see `Dispatcher::set_default`.
    pub(super) fn set_default(
        &self,
        entry: &Arc<ConnEntry>,
        replace: bool,
    ) -> Result<(), RelayError> {
        let mut default = write_sharded(&self.default);
        match default.as_ref() {
            Some(d) if !replace && !Arc::ptr_eq(d, entry) => return Err(RelayError::DefaultInUse),
            Some(_) => {}
            None => self.observe(RegistrationChange::DefaultSet)?,
        }
        *default = Some(Arc::clone(entry));
        Ok(())
    }

    /// Closes every conn, each table write-locked while its conns are closed; see
    /// `Dispatcher::stop`.
    pub(super) fn close_all(&self) {
        for s in &self.shards {
            for e in write_sharded(s).values() {
                e.close();
            }
        }
        if let Some(d) = write_sharded(&self.default).as_ref() {
            d.close();
        }
        for members in write_sharded(&self.multicast).values() {
            for m in members {
                m.close();
            }
        }
    }
}

/// The guard, among `shards` (from `KeyTable::write_shards`), of `key`'s shard.
fn locked_shard<'a, 'g>(
    shards: &'a mut [(usize, ShardedLockWriteGuard<'g, ShardMap>)],
    key: &L2EndpointKey,
) -> &'a mut ShardedLockWriteGuard<'g, ShardMap> {
    let s = shard_index(key);
    match shards.iter_mut().find(|(i, _)| *i == s) {
        Some((_, g)) => g,
        // `write_shards` locked the shard of every key it was given.
        None => unreachable!("shard {s} of {key} was not locked"),
    }
}

/// The shard of `key`'s table.
#[inline]
pub(super) fn shard_index(key: &L2EndpointKey) -> usize {
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
