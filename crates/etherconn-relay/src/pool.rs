//! Pooled frame buffers, so that steady-state receive and send allocate nothing.
//!
//! A buffer knows its pool (its [`FrameSlot`] holds a reference made once, when the buffer is
//! allocated), so a [`PooledBuf`] is one pointer and taking or returning one changes no
//! reference count. Each thread keeps a magazine of free buffers per pool ([`cache`]): a
//! thread that delivers and reads on its own reuses the buffers it freed last, still in its
//! cache, with no atomic operation; between a relay thread and a reader thread buffers travel
//! in magazines of [`cache::MAGAZINE`], one queue operation per magazine.

pub(crate) mod cache;
pub(crate) mod slot;

use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::boxed::Box;
use std::sync::Arc;
use std::vec;

use crossbeam_queue::ArrayQueue;

use crate::stripe::{self, Padded, STRIPES};
use etherconn_core::classify::Classified;
pub use slot::FrameSlot;
use slot::PoolShared;

/// A bounded pool of equal-sized frame buffers.
///
/// Buffers are allocated on first use, up to `capacity`, and come back to the pool when the
/// [`PooledBuf`] holding them drops; after warm-up, taking and returning a buffer allocates
/// nothing and, on a thread that does both, is a push or pop on that thread's own magazine.
/// Each buffer carries, beside its bytes, the frame's length and classification, so that a
/// queued frame is one pointer: queues stay small and a push or pop touches one cache line of
/// the queue.
///
/// Up to an eighth of the buffers (in magazines of 32) may sit in the caches of threads that
/// returned them and have not taken any since; pools of fewer than 256 buffers keep no
/// per-thread caches, so every buffer is always available to every thread.
pub struct BufferPool {
    shared: Arc<PoolShared>,
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("buf_len", &self.shared.buf_len)
            .field("capacity", &self.shared.capacity)
            .field("allocated", &self.allocated())
            .finish()
    }
}

impl BufferPool {
    /// A pool of at most `capacity` buffers of `buf_len` bytes each (capacity at least 1).
    pub fn new(capacity: usize, buf_len: usize) -> Arc<BufferPool> {
        let capacity = capacity.max(1);
        // Every stripe together can hold every buffer the pool may allocate, so a returned
        // buffer always finds room in some stripe; the depots hold every magazine there can be.
        let per_stripe = capacity.div_ceil(STRIPES);
        let magazines = capacity / cache::MAGAZINE + 2;
        Arc::new(BufferPool {
            shared: Arc::new(PoolShared {
                free: (0..STRIPES)
                    .map(|_| Padded(ArrayQueue::new(per_stripe)))
                    .collect(),
                full: ArrayQueue::new(magazines),
                empty: ArrayQueue::new(magazines),
                capacity,
                buf_len,
                allocated: AtomicUsize::new(0),
                cache_room: AtomicUsize::new(capacity / (8 * cache::MAGAZINE)),
                gone: AtomicBool::new(false),
            }),
        })
    }

    /// Length of every buffer.
    pub fn buf_len(&self) -> usize {
        self.shared.buf_len
    }

    /// Buffers allocated so far (in use or free).
    pub fn allocated(&self) -> usize {
        self.shared.allocated.load(Ordering::Relaxed)
    }

    /// Takes a buffer, allocating one if fewer than `capacity` exist; `None` when all are in use.
    pub fn get(self: &Arc<Self>) -> Option<PooledBuf> {
        self.take().map(|slot| PooledBuf { slot: Some(slot) })
    }

    fn take(&self) -> Option<Box<FrameSlot>> {
        let shared = &self.shared;
        if let Some(slot) = cache::take(shared) {
            return Some(slot);
        }
        let home = stripe::index();
        if let Some(slot) = (0..STRIPES).find_map(|i| shared.free[(home + i) % STRIPES].0.pop()) {
            return Some(slot);
        }
        // A thread without a magazine of its own (the pool's allowance spent) unpacks a shipped
        // one: one buffer for now, the rest onto the free lists.
        if let Some(mut mag) = shared.full.pop() {
            let slot = mag.pop();
            for s in mag.drain(..) {
                shared.put_loose(s);
            }
            let _ = shared.empty.push(mag);
            if slot.is_some() {
                return slot;
            }
        }
        let cap = shared.capacity;
        let mut n = shared.allocated.load(Ordering::Relaxed);
        loop {
            if n >= cap {
                return None;
            }
            match shared.allocated.compare_exchange_weak(
                n,
                n + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => n = actual,
            }
        }
        Some(Box::new(FrameSlot {
            data: vec![0u8; shared.buf_len].into_boxed_slice(),
            len: 0,
            info: Classified::default(),
            home: Arc::clone(shared),
        }))
    }

    /// Free buffers outside the threads' magazines (for tests).
    #[cfg(test)]
    pub(crate) fn loose(&self) -> usize {
        self.shared.free.iter().map(|q| q.0.len()).sum()
    }
}

impl Drop for BufferPool {
    fn drop(&mut self) {
        // Buffers still out (queued, or held by readers) are freed as they come back; the free
        // ones go now, which also ends the cycle between the pool and its free buffers.
        self.shared.gone.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        cache::forget(&self.shared);
        self.shared.drain();
    }
}

/// A buffer on loan from a [`BufferPool`]; it goes back when dropped. One pointer wide.
///
/// It dereferences to its bytes; [`PooledBuf::slot`] gives the frame length and
/// classification stored with them.
pub struct PooledBuf {
    slot: Option<Box<FrameSlot>>,
}

impl fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf")
            .field("len", &self.len())
            .finish()
    }
}

impl PooledBuf {
    /// The buffer with its frame length and classification.
    ///
    /// # Panics
    /// Never: a `PooledBuf` holds its slot until it drops.
    pub fn slot(&self) -> &FrameSlot {
        self.slot
            .as_deref()
            .expect("a PooledBuf holds its slot until dropped")
    }

    /// The slot, mutably.
    pub fn slot_mut(&mut self) -> &mut FrameSlot {
        self.slot
            .as_deref_mut()
            .expect("a PooledBuf holds its slot until dropped")
    }

    /// The boxed slot itself, for a store that needs a thin pointer (a small receive ring's
    /// atomic cells); it goes back to its pool only once [`PooledBuf::from_slot`] wraps it again.
    pub(crate) fn into_slot(mut self) -> Option<Box<FrameSlot>> {
        self.slot.take()
    }

    /// Wraps a slot that [`PooledBuf::into_slot`] took out.
    pub(crate) fn from_slot(slot: Box<FrameSlot>) -> PooledBuf {
        PooledBuf { slot: Some(slot) }
    }
}

impl Deref for PooledBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.slot.as_deref().map_or(&[], |s| &s.data)
    }
}

impl DerefMut for PooledBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self.slot.as_deref_mut() {
            Some(s) => &mut s.data,
            None => &mut [],
        }
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        if slot.home.is_gone() {
            return;
        }
        if let Some(slot) = cache::put(slot) {
            // No magazine of this pool on this thread: the shared free lists, through a
            // reference of our own (the slot moves into the list its reference leads to).
            let home = Arc::clone(&slot.home);
            home.put_loose(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn reuses_and_bounds() {
        let pool = BufferPool::new(2, 64);
        let a = pool.get().unwrap();
        let b = pool.get().unwrap();
        assert!(pool.get().is_none(), "capacity reached");
        assert_eq!(a.len(), 64);
        drop(a);
        let c = pool.get().unwrap();
        assert_eq!(pool.allocated(), 2, "reused, not reallocated");
        drop((b, c));
        assert_eq!(pool.loose(), 2);
    }

    #[test]
    fn buffers_out_when_the_pool_goes_are_freed_with_it() {
        // A pool large enough for per-thread magazines; buffers still out (on this thread and
        // on another that keeps a magazine of them) when the pool is dropped.
        let pool = BufferPool::new(4096, 64);
        let shared = Arc::downgrade(&pool.shared);
        let mut out: Vec<PooledBuf> = (0..200).map(|_| pool.get().unwrap()).collect();
        let theirs: Vec<PooledBuf> = out.drain(100..).collect();
        drop(out.drain(..50));
        let other = std::thread::spawn(move || {
            drop(theirs);
            // Still alive when the pool goes, with a magazine of its buffers.
            std::thread::sleep(std::time::Duration::from_millis(100));
        });
        std::thread::sleep(std::time::Duration::from_millis(30));
        drop(pool);
        drop(out);
        other.join().unwrap();
        assert!(
            shared.upgrade().is_none(),
            "the pool's buffers keep it alive"
        );
    }

    #[test]
    fn buffers_freed_on_a_reading_thread_come_back_to_the_relay_thread() {
        let pool = BufferPool::new(4096, 64);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<PooledBuf>>(4);
        let reader = std::thread::spawn(move || {
            for batch in rx {
                drop(batch);
            }
        });
        for _ in 0..2_000 {
            let batch: Vec<PooledBuf> = (0..50).map(|_| pool.get().expect("a buffer")).collect();
            tx.send(batch).unwrap();
        }
        drop(tx);
        reader.join().unwrap();
        // 100,000 buffers taken; the reader's magazines came back whole.
        assert!(pool.allocated() < 1_000, "{} allocated", pool.allocated());
    }

    #[test]
    fn idle_magazines_hold_at_most_an_eighth_of_the_pool() {
        // Capacity 512: magazines for two threads. Six threads each free 40 buffers and stay
        // alive; the relay thread must still find 512 - 2 x 32 buffers.
        let pool = BufferPool::new(512, 64);
        let all: Vec<PooledBuf> = (0..512).map(|_| pool.get().unwrap()).collect();
        let mut all = all.into_iter();
        let stop = Arc::new(std::sync::Barrier::new(7));
        let freed = Arc::new(std::sync::Barrier::new(7));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let mine: Vec<PooledBuf> = all.by_ref().take(40).collect();
                let (stop, freed) = (Arc::clone(&stop), Arc::clone(&freed));
                std::thread::spawn(move || {
                    drop(mine);
                    freed.wait();
                    stop.wait();
                })
            })
            .collect();
        freed.wait();
        let rest: Vec<PooledBuf> = all.collect();
        let mut got = Vec::new();
        while let Some(b) = pool.get() {
            got.push(b);
        }
        assert!(
            got.len() >= 240 - 2 * cache::MAGAZINE,
            "only {} found",
            got.len()
        );
        stop.wait();
        for t in threads {
            t.join().unwrap();
        }
        drop((rest, got));
    }

    #[test]
    fn a_buffer_on_loan_is_one_pointer() {
        // What a queue slot holds (with its stamp): the budget's `SLOT_BYTES` and
        // `frame_bytes` follow from these.
        assert_eq!(size_of::<PooledBuf>(), size_of::<usize>());
        assert_eq!(size_of::<crate::queue::RxFrame>(), size_of::<usize>());
        assert_eq!(size_of::<FrameSlot>(), 128);
    }

    #[test]
    fn small_pools_keep_no_buffers_on_threads() {
        let pool = BufferPool::new(8, 64);
        for _ in 0..3 {
            let bufs: Vec<PooledBuf> = (0..8).map(|_| pool.get().unwrap()).collect();
            std::thread::spawn(move || drop(bufs)).join().unwrap();
        }
        assert_eq!(pool.loose(), 8);
        assert_eq!(pool.allocated(), 8);
    }
}
