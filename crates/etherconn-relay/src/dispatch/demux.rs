//! [`L4Demux`]: the UDP endpoints of one shared L2 endpoint, each with its own queue.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use ahash::RandomState;

use crate::error::RelayError;
use crate::locks::{read, write};
use crate::queue::{PushError, RxFrame, RxQueue};
use etherconn_core::key::L4RecvKey;

/// The UDP endpoints of one shared L2 endpoint, keyed by [`L4RecvKey`].
///
/// A lookup tries the exact (local IP, protocol, port) first, then the wildcard IP of the same
/// family, then the default queue if one is set ([`set_default`](Self::set_default)). The lock is this endpoint's own: lookups in different shared endpoints never
/// contend, and within one they only share a read lock.
#[derive(Debug, Default)]
pub struct L4Demux {
    map: RwLock<L4Map>,
    closed: AtomicBool,
}

pub(super) type L4Map = HashMap<L4RecvKey, Arc<RxQueue>, RandomState>;

/// Where the default queue is kept in the map: protocol 0 is no UDP datagram's, so no lookup
/// of one matches it by accident. Kept in the map rather than beside it so that the
/// demultiplexer (inside every shared endpoint's table entry) does not grow, and so that a
/// lookup sees keys and default as of one moment, under the one read lock.
const DEFAULT_KEY: L4RecvKey = L4RecvKey {
    ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    protocol: 0,
    port: 0,
};

/// The queue of the UDP endpoint `dst`: the exact key, else the wildcard IP's, else the
/// default queue (a third lookup, made only for datagrams no key matches).
#[inline]
pub(super) fn l4_lookup(map: &L4Map, dst: SocketAddr) -> Option<&RxQueue> {
    let key = L4RecvKey::udp(dst.ip(), dst.port());
    map.get(&key)
        .or_else(|| map.get(&key.wildcard()))
        .or_else(|| map.get(&DEFAULT_KEY))
        .map(|q| &**q)
}

impl L4Demux {
    /// Registers `queue` for `key`; a key held by another queue is refused with
    /// [`RelayError::L4KeyInUse`] unless `replace` is set. (Protocol 0 on `0.0.0.0` port 0 is
    /// where the default queue is kept: use [`set_default`](Self::set_default) for it.)
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

    /// Makes `queue` the default: it receives the datagrams no key matches, which are
    /// otherwise counted in `RelayStats::rx_l4_miss`. Returns `false`, and changes nothing,
    /// when another queue is the default and `replace` is not set.
    pub fn set_default(&self, queue: &Arc<RxQueue>, replace: bool) -> bool {
        let mut map = write(&self.map);
        if let Some(other) = map.get(&DEFAULT_KEY) {
            if !replace && !Arc::ptr_eq(other, queue) {
                return false;
            }
        }
        map.insert(DEFAULT_KEY, Arc::clone(queue));
        true
    }

    /// Removes the default queue if `queue` still is it.
    pub fn clear_default(&self, queue: &Arc<RxQueue>) {
        self.deregister(&DEFAULT_KEY, queue);
    }

    /// Whether a default queue is set.
    pub fn has_default(&self) -> bool {
        read(&self.map).contains_key(&DEFAULT_KEY)
    }

    /// Removes `key` if `queue` still holds it.
    pub fn deregister(&self, key: &L4RecvKey, queue: &Arc<RxQueue>) {
        let mut map = write(&self.map);
        if map.get(key).is_some_and(|q| Arc::ptr_eq(q, queue)) {
            map.remove(key);
        }
    }

    /// Number of registered UDP endpoints (the default queue not counted).
    pub fn len(&self) -> usize {
        let map = read(&self.map);
        map.len() - usize::from(map.contains_key(&DEFAULT_KEY))
    }

    /// Whether no UDP endpoint is registered (the default queue not counted).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    pub(super) fn push(&self, dst: SocketAddr, rx: RxFrame) -> Option<Result<(), PushError>> {
        l4_lookup(&read(&self.map), dst).map(|q| q.push(rx))
    }

    /// The table, read-locked: a batch looks up all its datagrams for this endpoint under one
    /// lock.
    #[inline]
    pub(super) fn read_map(&self) -> RwLockReadGuard<'_, L4Map> {
        read(&self.map)
    }

    /// Reads the line a push to this demultiplexer starts from without writing it; see
    /// `Delivery`.
    #[inline]
    pub(super) fn prefetch(&self) {
        core::hint::black_box(self.closed.load(Ordering::Relaxed));
    }
}
