//! What a pool's buffers are and share: [`FrameSlot`] and the pool's free lists.

use core::fmt;
use core::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::boxed::Box;
use std::sync::Arc;
use std::vec::Vec;

use crossbeam_queue::ArrayQueue;

use crate::stripe::{self, Padded, STRIPES};
use etherconn_core::classify::Classified;

/// Free buffers moved between threads together (see `cache`). The buffers stay boxed: a
/// buffer moves between magazines, free lists and the handles lent out without being copied.
#[allow(clippy::vec_box)]
pub(crate) type Magazine = Vec<Box<FrameSlot>>;

/// What a pool's buffers share: the free lists, and the limits.
pub(crate) struct PoolShared {
    /// Free buffers outside any magazine, striped per thread: a thread takes from and returns
    /// to its own stripe first, so two threads recycling buffers do not fight over one queue's
    /// head and tail.
    pub(super) free: Box<[Padded<ArrayQueue<Box<FrameSlot>>>]>,
    /// Full magazines, shipped by threads that returned more buffers than they took.
    pub(super) full: ArrayQueue<Magazine>,
    /// Empty magazines (their storage only), so that shipping a full one allocates nothing.
    pub(super) empty: ArrayQueue<Magazine>,
    pub(super) capacity: usize,
    pub(super) buf_len: usize,
    pub(super) allocated: AtomicUsize,
    /// How many more threads may keep a magazine of this pool's buffers.
    pub(super) cache_room: AtomicUsize,
    /// The [`BufferPool`] was dropped: buffers coming back are freed, not kept.
    pub(super) gone: AtomicBool,
}

/// A pooled buffer's contents: the bytes, and what the relay found in them.
pub struct FrameSlot {
    pub(super) data: Box<[u8]>,
    /// Length of the frame in the buffer.
    pub len: usize,
    /// The relay's classification of the frame (spans index into the buffer).
    pub info: Classified,
    /// The pool the buffer goes back to.
    pub(super) home: Arc<PoolShared>,
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

impl PoolShared {
    /// Puts a buffer on the free lists outside any magazine.
    pub(super) fn put_loose(&self, mut slot: Box<FrameSlot>) {
        // The stripes together have room for every buffer the pool ever allocated, so one
        // of them takes it; if somehow none did, the buffer is simply freed.
        let home = stripe::index();
        for i in 0..STRIPES {
            match self.free[(home + i) % STRIPES].0.push(slot) {
                Ok(()) => {
                    self.drain_if_gone();
                    return;
                }
                Err(back) => slot = back,
            }
        }
    }

    /// After putting something on a free list: if the pool went meanwhile, its drop may have
    /// drained the lists before our push, so drain them again (one of the two sees the other:
    /// a `SeqCst` fence on each side).
    pub(super) fn drain_if_gone(&self) {
        fence(Ordering::SeqCst);
        if self.gone.load(Ordering::Relaxed) {
            self.drain();
        }
    }

    /// Frees every buffer on the free lists and in the depots.
    pub(super) fn drain(&self) {
        for q in self.free.iter() {
            while q.0.pop().is_some() {}
        }
        while self.full.pop().is_some() {}
        while self.empty.pop().is_some() {}
    }

    pub(super) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }
}
