//! The resolver's side: the MACs learned for remote addresses, with their age, and the
//! resolutions under way, which every endpoint on a VLAN stack shares (so that a thousand
//! endpoints resolving their gateway send one request, not a thousand).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};
use std::vec::Vec;

use ahash::RandomState;
use etherconn_core::wire::vlan::VlanStack;
use etherconn_core::wire::MacAddr;

use super::table::AddrKey;

/// Shards of the learned table: every send to a unicast destination reads one.
const SHARDS: usize = 16;

/// A millisecond clock the worker advances, so that the send path reads the time with one
/// load instead of a clock call.
#[derive(Debug)]
pub(crate) struct Clock {
    start: Instant,
    ms: AtomicU64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: Instant::now(),
            ms: AtomicU64::new(0),
        }
    }

    /// Reads the real clock and stores it; returns it.
    pub(crate) fn tick(&self) -> u64 {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.ms.fetch_max(now, Ordering::Relaxed);
        now
    }

    /// The time of the last tick.
    pub(crate) fn now(&self) -> u64 {
        self.ms.load(Ordering::Relaxed)
    }
}

/// A MAC learned for an address, and when.
#[derive(Debug, Clone, Copy)]
struct Learned {
    mac: MacAddr,
    at_ms: u64,
}

/// What the cache knows of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// Learned within the lifetime.
    Fresh(MacAddr),
    /// Learned longer ago: still used while it is confirmed again.
    Stale(MacAddr),
    /// Not known.
    Unknown,
}

/// Who asks: the endpoint a request is sent from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asker {
    pub(crate) mac: MacAddr,
    pub(crate) vlans: VlanStack,
    pub(crate) ip: IpAddr,
}

/// A resolution under way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) asker: Asker,
    /// Requests sent so far.
    pub(crate) sent: u32,
    /// When the next one is due.
    pub(crate) next_ms: u64,
    /// For a confirmation of a stale entry: the MAC the requests go to (unicast), as a host
    /// probes a neighbour it already knows.
    pub(crate) probe: Option<MacAddr>,
}

/// The learned table and the resolutions under way.
#[derive(Debug)]
pub(crate) struct Cache {
    shards: Vec<RwLock<HashMap<AddrKey, Learned, RandomState>>>,
    pending: Mutex<HashMap<AddrKey, Pending, RandomState>>,
    resolved: Condvar,
    pub(crate) clock: Clock,
    /// Addresses learned, and the most learned unasked (see [`Cache::learn`]).
    entries: AtomicUsize,
    max_unasked: usize,
}

fn shard_of(key: &AddrKey) -> usize {
    let low = match key.1 {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15],
    };
    let v = key.0.as_slice().iter().fold(0u16, |a, &id| a ^ id);
    (usize::from(low) ^ usize::from(v)) % SHARDS
}

impl Cache {
    pub(crate) fn new(max_unasked: usize) -> Cache {
        Cache {
            entries: AtomicUsize::new(0),
            max_unasked,
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashMap::with_hasher(RandomState::new())))
                .collect(),
            pending: Mutex::new(HashMap::with_hasher(RandomState::new())),
            resolved: Condvar::new(),
            clock: Clock::new(),
        }
    }

    fn shard(&self, key: &AddrKey) -> &RwLock<HashMap<AddrKey, Learned, RandomState>> {
        &self.shards[shard_of(key)]
    }

    /// What is known of `key`, judged against `lifetime_ms`.
    pub(crate) fn known(&self, key: &AddrKey, lifetime_ms: u64) -> Known {
        let shard = self.shard(key).read().unwrap_or_else(|e| e.into_inner());
        match shard.get(key) {
            Some(l) if self.clock.now().saturating_sub(l.at_ms) <= lifetime_ms => {
                Known::Fresh(l.mac)
            }
            Some(l) => Known::Stale(l.mac),
            None => Known::Unknown,
        }
    }

    /// Learns that `key` is at `mac`, now. An address being resolved or already known is
    /// learned; another one only when `create` is set (the sender of a request for one of our
    /// addresses, which will be answered to, as a host does) and fewer than the configured
    /// most are cached, so that forged requests cannot fill memory. An unsolicited answer
    /// creates nothing (as in Linux). Returns whether it was learned, and wakes the threads
    /// waiting for it.
    pub(crate) fn learn(&self, key: AddrKey, mac: MacAddr, create: bool) -> bool {
        // The pending entry is removed only once the MAC is in the table, both under the
        // pending lock (always taken before a shard's), so that a waiter never finds the
        // resolution over and the table still empty.
        let mut pending = self.lock_pending();
        let was_pending = pending.contains_key(&key);
        let now = self.clock.tick();
        let learned = {
            let mut shard = self.shard(&key).write().unwrap_or_else(|e| e.into_inner());
            match shard.get_mut(&key) {
                Some(l) => {
                    *l = Learned { mac, at_ms: now };
                    true
                }
                None if was_pending
                    || (create && self.entries.load(Ordering::Relaxed) < self.max_unasked) =>
                {
                    shard.insert(key, Learned { mac, at_ms: now });
                    self.entries.fetch_add(1, Ordering::Relaxed);
                    true
                }
                None => false,
            }
        };
        if was_pending {
            pending.remove(&key);
            drop(pending);
            self.resolved.notify_all();
        }
        learned
    }

    /// Forgets `key`.
    pub(crate) fn forget(&self, key: &AddrKey) {
        let removed = self
            .shard(key)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if removed.is_some() {
            self.entries.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<AddrKey, Pending, RandomState>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts resolving `key` unless it already is, or (for a first resolution) an answer
    /// arrived since the caller looked; returns the resolution to send the first request of
    /// when it is new (`retry_ms` from now the next one is due).
    pub(crate) fn start(
        &self,
        key: AddrKey,
        asker: Asker,
        probe: Option<MacAddr>,
        retry_ms: u64,
        lifetime_ms: u64,
    ) -> Option<Pending> {
        let mut pending = self.lock_pending();
        // Under the pending lock, which `learn` holds while it writes the table: an answer
        // is either seen here or comes after the resolution is registered.
        if pending.contains_key(&key)
            || (probe.is_none() && matches!(self.known(&key, lifetime_ms), Known::Fresh(_)))
        {
            return None;
        }
        let p = Pending {
            asker,
            sent: 1,
            next_ms: self.clock.now() + retry_ms,
            probe,
        };
        pending.insert(key, p);
        Some(p)
    }

    /// The resolutions whose next request is due at `now`, with that request counted; those
    /// that already sent `max_requests` are dropped instead (returned in `failed`; the caller
    /// wakes their waiters with [`failed`](Self::failed) once it has dealt with them).
    pub(crate) fn due(
        &self,
        now: u64,
        retry_ms: u64,
        max_requests: u32,
        resend: &mut Vec<(AddrKey, Pending)>,
        failed: &mut Vec<AddrKey>,
    ) {
        let mut pending = self.lock_pending();
        pending.retain(|key, p| {
            if p.next_ms > now {
                return true;
            }
            if p.sent >= max_requests {
                failed.push(*key);
                return false;
            }
            p.sent += 1;
            p.next_ms = now + retry_ms;
            resend.push((*key, *p));
            true
        });
    }

    /// Wakes the threads waiting for resolutions [`due`](Self::due) ended.
    pub(crate) fn failed(&self) {
        drop(self.lock_pending());
        self.resolved.notify_all();
    }

    /// Whether `key` is being resolved.
    pub(crate) fn is_pending(&self, key: &AddrKey) -> bool {
        self.lock_pending().contains_key(key)
    }

    /// Waits until `key` is learned (its MAC), its resolution fails or `timeout` passes
    /// (`None`).
    pub(crate) fn wait(
        &self,
        key: &AddrKey,
        lifetime_ms: u64,
        timeout: Duration,
    ) -> Option<MacAddr> {
        let deadline = Instant::now() + timeout;
        let mut pending = self.lock_pending();
        loop {
            if let Known::Fresh(mac) = self.known(key, lifetime_ms) {
                return Some(mac);
            }
            if !pending.contains_key(key) {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            pending = self
                .resolved
                .wait_timeout(pending, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Addresses learned.
    pub(crate) fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    /// Resolutions under way.
    pub(crate) fn pending_len(&self) -> usize {
        self.lock_pending().len()
    }
}
