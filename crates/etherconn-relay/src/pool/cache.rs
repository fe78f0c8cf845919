//! Each thread's magazines of free buffers, one per pool it uses (at most [`ENTRIES`]).
//!
//! A buffer dropped on a thread goes on that thread's magazine of its pool; a buffer taken
//! comes from it, the one freed last first (still in this core's cache: the relay copies the
//! next frame into it). A thread that returns more than it takes (a reader) ships each full
//! magazine to the pool's depot, and one that takes more (a relay) fetches full magazines from
//! there: one queue operation per [`MAGAZINE`] buffers instead of one per buffer, and no
//! reference count changes hands. A thread keeps a magazine of a pool only while the pool
//! allows it ([`PoolShared::cache_room`]), which bounds the buffers that can sit idle in the
//! magazines of threads that stopped.

use core::cell::RefCell;
use core::mem;
use core::sync::atomic::Ordering;
use std::boxed::Box;
use std::sync::Arc;
use std::vec::Vec;

use super::slot::{FrameSlot, Magazine, PoolShared};

/// Buffers per magazine.
pub(crate) const MAGAZINE: usize = 32;

/// Pools a thread keeps magazines of (a relay's receive and send pools, say).
const ENTRIES: usize = 2;

/// One pool's magazine on this thread.
struct Entry {
    pool: Arc<PoolShared>,
    mag: Magazine,
}

impl Drop for Entry {
    fn drop(&mut self) {
        // The thread ends or gives the entry up: its buffers go back to the pool (or are freed
        // with the magazine when the pool is gone), and another thread may keep a magazine.
        let mag = mem::take(&mut self.mag);
        if !self.pool.is_gone() {
            if mag.is_empty() {
                let _ = self.pool.empty.push(mag);
            } else {
                ship(&self.pool, mag);
            }
        }
        self.pool.cache_room.fetch_add(1, Ordering::Relaxed);
    }
}

thread_local! {
    static CACHE: RefCell<[Option<Entry>; ENTRIES]> = const { RefCell::new([None, None]) };
}

/// Puts a magazine on the pool's depot (its buffers on the loose free lists if the depot is
/// somehow full).
fn ship(pool: &PoolShared, mag: Magazine) {
    match pool.full.push(mag) {
        Ok(()) => pool.drain_if_gone(),
        Err(mag) => {
            for s in mag {
                pool.put_loose(s);
            }
        }
    }
}

/// This thread's entry for `pool`, made if there is room on both sides.
fn entry<'c>(c: &'c mut [Option<Entry>; ENTRIES], pool: &Arc<PoolShared>) -> Option<&'c mut Entry> {
    let at = c
        .iter()
        .position(|e| e.as_ref().is_some_and(|e| Arc::ptr_eq(&e.pool, pool)));
    if let Some(at) = at {
        return c[at].as_mut();
    }
    for e in c.iter_mut() {
        if e.as_ref().is_some_and(|e| e.pool.is_gone()) {
            *e = None;
        }
    }
    let at = c.iter().position(Option::is_none)?;
    if pool.is_gone() {
        return None;
    }
    let mut room = pool.cache_room.load(Ordering::Relaxed);
    loop {
        if room == 0 {
            return None;
        }
        match pool.cache_room.compare_exchange_weak(
            room,
            room - 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(now) => room = now,
        }
    }
    let mag = pool
        .empty
        .pop()
        .unwrap_or_else(|| Vec::with_capacity(MAGAZINE));
    c[at] = Some(Entry {
        pool: Arc::clone(pool),
        mag,
    });
    c[at].as_mut()
}

/// A free buffer of `pool` from this thread's magazine, or a full magazine from the depot;
/// `None` when neither has one (or this thread keeps no magazine of `pool`).
#[inline]
pub(super) fn take(pool: &Arc<PoolShared>) -> Option<Box<FrameSlot>> {
    CACHE
        .try_with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            let e = entry(&mut c, pool)?;
            if let Some(s) = e.mag.pop() {
                return Some(s);
            }
            let full = pool.full.pop()?;
            let spent = mem::replace(&mut e.mag, full);
            let _ = pool.empty.push(spent);
            e.mag.pop()
        })
        .ok()
        .flatten()
}

/// Keeps `slot` on this thread's magazine of its pool, shipping the magazine when full; gives
/// it back when this thread keeps no magazine of that pool.
#[inline]
pub(super) fn put(slot: Box<FrameSlot>) -> Option<Box<FrameSlot>> {
    let mut slot = Some(slot);
    let _ = CACHE.try_with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return;
        };
        let Some(home) = slot.as_ref().map(|s| &s.home) else {
            return;
        };
        let Some(e) = entry(&mut c, home) else { return };
        if e.mag.len() >= MAGAZINE {
            let fresh = e
                .pool
                .empty
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(MAGAZINE));
            let full = mem::replace(&mut e.mag, fresh);
            ship(&e.pool, full);
        }
        if let Some(s) = slot.take() {
            e.mag.push(s);
        }
    });
    slot
}

/// Drops this thread's magazine of `pool` (whose `BufferPool` is going).
pub(super) fn forget(pool: &Arc<PoolShared>) {
    let _ = CACHE.try_with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            for e in c.iter_mut() {
                if e.as_ref().is_some_and(|e| Arc::ptr_eq(&e.pool, pool)) {
                    *e = None;
                }
            }
        }
    });
}
