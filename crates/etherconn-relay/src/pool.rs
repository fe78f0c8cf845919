//! Pooled frame buffers, so that steady-state receive and send allocate nothing.

use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};
use std::boxed::Box;
use std::sync::Arc;
use std::vec;

use crossbeam_queue::ArrayQueue;

use super::stripe::{self, Padded, STRIPES};
use etherconn_core::classify::Classified;

/// A bounded pool of equal-sized frame buffers.
///
/// Buffers are allocated on first use, up to `capacity`, and come back to the pool when the
/// [`PooledBuf`] holding them drops; after warm-up, taking and returning a buffer is a lock-free
/// queue operation and no allocation. Each buffer carries, beside its bytes, the frame's length
/// and classification, so that a queued frame is one pointer: queues stay small and a push or
/// pop touches one cache line of the queue.
pub struct BufferPool {
    /// Free buffers, striped per thread: a thread takes from and returns to its own stripe
    /// first, so two threads recycling buffers do not fight over one queue's head and tail.
    free: Box<[Padded<ArrayQueue<Box<FrameSlot>>>]>,
    capacity: usize,
    buf_len: usize,
    allocated: AtomicUsize,
}

/// A pooled buffer's contents: the bytes, and what the relay found in them.
pub struct FrameSlot {
    data: Box<[u8]>,
    /// Length of the frame in the buffer.
    pub len: usize,
    /// The relay's classification of the frame (spans index into the buffer).
    pub info: Classified,
}

impl fmt::Debug for FrameSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameSlot")
            .field("len", &self.len)
            .field("info", &self.info)
            .finish()
    }
}

impl FrameSlot {
    /// The whole buffer.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The whole buffer, mutably.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("buf_len", &self.buf_len)
            .field("capacity", &self.capacity)
            .field("allocated", &self.allocated.load(Ordering::Relaxed))
            .finish()
    }
}

impl BufferPool {
    /// A pool of at most `capacity` buffers of `buf_len` bytes each (capacity at least 1).
    pub fn new(capacity: usize, buf_len: usize) -> Arc<BufferPool> {
        let capacity = capacity.max(1);
        // Every stripe together can hold every buffer the pool may allocate, so a returned
        // buffer always finds room in some stripe.
        let per_stripe = capacity.div_ceil(STRIPES);
        Arc::new(BufferPool {
            free: (0..STRIPES)
                .map(|_| Padded(ArrayQueue::new(per_stripe)))
                .collect(),
            capacity,
            buf_len,
            allocated: AtomicUsize::new(0),
        })
    }

    /// Length of every buffer.
    pub fn buf_len(&self) -> usize {
        self.buf_len
    }

    /// Buffers allocated so far (in use or free).
    pub fn allocated(&self) -> usize {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Takes a buffer, allocating one if fewer than `capacity` exist; `None` when all are in use.
    pub fn get(self: &Arc<Self>) -> Option<PooledBuf> {
        let home = stripe::index();
        let reused = (0..STRIPES).find_map(|i| self.free[(home + i) % STRIPES].0.pop());
        let slot = match reused {
            Some(b) => b,
            None => {
                let cap = self.capacity;
                let mut n = self.allocated.load(Ordering::Relaxed);
                loop {
                    if n >= cap {
                        return None;
                    }
                    match self.allocated.compare_exchange_weak(
                        n,
                        n + 1,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => break,
                        Err(actual) => n = actual,
                    }
                }
                Box::new(FrameSlot {
                    data: vec![0u8; self.buf_len].into_boxed_slice(),
                    len: 0,
                    info: Classified::default(),
                })
            }
        };
        Some(PooledBuf {
            slot: Some(slot),
            pool: Arc::clone(self),
        })
    }
}

/// A buffer on loan from a [`BufferPool`]; it goes back when dropped. Two pointers wide.
///
/// It dereferences to its bytes; [`PooledBuf::slot`] gives the frame length and
/// classification stored with them.
pub struct PooledBuf {
    slot: Option<Box<FrameSlot>>,
    // Held here rather than in the slot, so that free slots do not keep their pool alive.
    pool: Arc<BufferPool>,
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
        if let Some(mut slot) = self.slot.take() {
            // The stripes together have room for every buffer the pool ever allocated, so one
            // of them takes it; if somehow none did, the buffer is simply freed.
            let home = stripe::index();
            for i in 0..STRIPES {
                match self.pool.free[(home + i) % STRIPES].0.push(slot) {
                    Ok(()) => return,
                    Err(back) => slot = back,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(pool.free.iter().map(|s| s.0.len()).sum::<usize>(), 2);
    }
}
