//! A conn's bounded receive queue: the relay thread pushes without ever blocking, readers wait
//! with a timeout and are woken when the relay stops.
//!
//! Why not crossbeam's `ArrayQueue` (which the buffer pool uses): with 100,000 endpoints the
//! queues are what a relay touches most, and an `ArrayQueue` pads its head and tail to 128
//! bytes each and keeps its slots in a separate allocation, so a push touched four cold cache
//! lines (tail, slot, stamp, and the reader-wake state beside it) and an idle queue cost about
//! 600 bytes. Here a queue is one 128-byte block: the lock word, indices, wake-up state and,
//! for the default depth of the UDP conns (4), the slots themselves, so a push or pop touches
//! that block and nothing else. The lock is the queue's own (never shared between conns) and
//! is held for a few instructions; a reader and the relay meet on it only when both use the
//! same queue at the same instant.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::pool::{FrameSlot, PooledBuf};

/// A received frame, as it waits on a conn's queue: a pooled buffer holding the bytes and the
/// classification the relay made once for every consumer. Two pointers wide, so queues are
/// small; it dereferences to its [`FrameSlot`] (`rx.len`, `rx.info`).
#[derive(Debug)]
pub struct RxFrame {
    buf: PooledBuf,
}

impl RxFrame {
    /// Wraps a buffer whose slot holds a frame's length and classification.
    pub fn new(buf: PooledBuf) -> RxFrame {
        RxFrame { buf }
    }

    /// The whole frame, from the destination MAC.
    pub fn frame(&self) -> &[u8] {
        let s = self.buf.slot();
        &s.data()[..s.len]
    }

    /// The Ethernet payload after the last VLAN tag.
    pub fn payload(&self) -> &[u8] {
        let s = self.buf.slot();
        &s.data()[s.info.payload.range()]
    }

    /// Gives the buffer back (to reuse it, say).
    pub fn into_buf(self) -> PooledBuf {
        self.buf
    }
}

impl core::ops::Deref for RxFrame {
    type Target = FrameSlot;
    fn deref(&self) -> &FrameSlot {
        self.buf.slot()
    }
}

/// Why a receive queue push failed.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The queue is full; the frame was dropped.
    Full,
    /// The conn is closed.
    Closed,
}

/// Slots kept inside the queue itself; deeper queues keep theirs in one separate allocation.
const INLINE_SLOTS: usize = 4;

/// A bounded multi-producer, multi-consumer queue of received frames with a blocking, timed
/// pop and an async poll.
///
/// Aligned to 128 bytes (the pair of lines Intel's spatial prefetcher fetches together) so
/// that a queue never straddles more lines than it must and two queues never share one.
#[derive(Debug)]
#[repr(C, align(128))]
pub struct RxQueue {
    /// Frames waiting: a copy of `Ring::len` that can be read without the lock (`len()`,
    /// and the dispatcher's prefetch of the queue's line before a batch of pushes).
    len: AtomicU32,
    readable: Condvar,
    ring: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    /// Index of the oldest frame.
    head: u32,
    /// Frames waiting.
    len: u32,
    /// Readers blocked in `pop`: a push notifies only when one sleeps.
    sleepers: u32,
    closed: bool,
    /// The task of an async reader waiting in [`RxQueue::poll_pop`].
    waker: Option<Waker>,
    slots: SmallVec<[Option<RxFrame>; INLINE_SLOTS]>,
}

impl Ring {
    fn pop(&mut self) -> Option<RxFrame> {
        if self.len == 0 {
            return None;
        }
        let frame = self.slots[self.head as usize].take();
        self.head += 1;
        if self.head as usize == self.slots.len() {
            self.head = 0;
        }
        self.len -= 1;
        frame
    }
}

fn lock(m: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RxQueue {
    /// A queue of `depth` frames (at least 1, at most `u32::MAX`).
    pub fn new(depth: usize) -> RxQueue {
        let depth = depth.clamp(1, u32::MAX as usize);
        RxQueue {
            len: AtomicU32::new(0),
            readable: Condvar::new(),
            ring: Mutex::new(Ring {
                head: 0,
                len: 0,
                sleepers: 0,
                closed: false,
                waker: None,
                slots: (0..depth).map(|_| None).collect(),
            }),
        }
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed) as usize
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.ring).closed
    }

    /// Reads the queue's first line without writing it, so that a batch of pushes can bring
    /// every destination queue into the cache at once (independent plain loads overlap; the
    /// lock's atomic read-modify-write would wait for each line in turn).
    #[inline]
    pub(crate) fn prefetch(&self) {
        core::hint::black_box(self.len.load(Ordering::Relaxed));
    }

    /// Adds a frame without blocking; a full queue drops it (the caller counts that).
    pub(crate) fn push(&self, frame: RxFrame) -> Result<(), PushError> {
        let mut ring = lock(&self.ring);
        if ring.closed {
            return Err(PushError::Closed);
        }
        let depth = ring.slots.len();
        if ring.len as usize == depth {
            return Err(PushError::Full);
        }
        let mut at = ring.head as usize + ring.len as usize;
        if at >= depth {
            at -= depth;
        }
        ring.slots[at] = Some(frame);
        ring.len += 1;
        self.len.store(ring.len, Ordering::Relaxed);
        let sleeping = ring.sleepers > 0;
        let waker = ring.waker.take();
        drop(ring);
        if sleeping {
            self.readable.notify_one();
        }
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    fn take(&self, ring: &mut Ring) -> Option<RxFrame> {
        let frame = ring.pop()?;
        self.len.store(ring.len, Ordering::Relaxed);
        Some(frame)
    }

    /// Takes a frame if one waits, or registers the task to be woken when one arrives (or the
    /// queue closes): the async counterpart of [`pop`](Self::pop), with no thread per reader.
    ///
    /// One task waits at a time: a second task polling the same queue replaces the first's
    /// registration, as with a single-reader socket.
    pub fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<io::Result<RxFrame>> {
        let mut ring = lock(&self.ring);
        if let Some(f) = self.take(&mut ring) {
            return Poll::Ready(Ok(f));
        }
        if ring.closed {
            return Poll::Ready(Err(closed_error()));
        }
        // Registered under the lock a pusher takes, so no frame can slip in unnoticed.
        match &ring.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => ring.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Closes the queue: pushes fail and blocked readers return an error once it is drained.
    pub fn close(&self) {
        let waker = {
            let mut ring = lock(&self.ring);
            ring.closed = true;
            ring.waker.take()
        };
        self.readable.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes a frame, waiting up to `timeout` (`None`: forever; zero: not at all).
    ///
    /// Errors: `WouldBlock` when non-blocking and empty, `TimedOut` when the timeout expires,
    /// `NotConnected` when the queue is closed (the relay stopped or the conn was dropped).
    pub fn pop(&self, timeout: Option<Duration>) -> io::Result<RxFrame> {
        let mut ring = lock(&self.ring);
        if let Some(f) = self.take(&mut ring) {
            return Ok(f);
        }
        if ring.closed {
            return Err(closed_error());
        }
        if timeout == Some(Duration::ZERO) {
            // A bare kind: no allocation for a non-blocking poller that finds nothing.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            ring.sleepers += 1;
            ring = match deadline {
                None => self
                    .readable
                    .wait(ring)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        ring.sleepers -= 1;
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    self.readable
                        .wait_timeout(ring, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            ring.sleepers -= 1;
            if let Some(f) = self.take(&mut ring) {
                return Ok(f);
            }
            if ring.closed {
                return Err(closed_error());
            }
        }
    }
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection closed: the relay stopped or the conn was dropped",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::pool::BufferPool;
    use std::sync::Arc;

    fn frame(pool: &Arc<BufferPool>, tag: u8) -> RxFrame {
        let mut b = pool.get().expect("buffer");
        b[0] = tag;
        b.slot_mut().len = 1;
        RxFrame::new(b)
    }

    #[test]
    fn fifo_wraps_and_bounds() {
        let pool = BufferPool::new(64, 16);
        for depth in [1, 3, INLINE_SLOTS, 9] {
            let q = RxQueue::new(depth);
            let mut next_in = 0u8;
            let mut next_out = 0u8;
            // Several laps around the ring, at varying fill levels.
            for round in 0..5 {
                let fill = 1 + round % depth;
                for _ in 0..fill {
                    q.push(frame(&pool, next_in)).expect("room");
                    next_in += 1;
                }
                assert_eq!(q.len(), fill);
                if fill == depth {
                    assert!(matches!(q.push(frame(&pool, 99)), Err(PushError::Full)));
                }
                for _ in 0..fill {
                    let f = q.pop(Some(Duration::ZERO)).expect("queued");
                    assert_eq!(f.frame(), [next_out]);
                    next_out += 1;
                }
                assert!(q.is_empty());
            }
            let e = q.pop(Some(Duration::ZERO)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
    }

    #[test]
    fn close_drains_then_errors() {
        let pool = BufferPool::new(8, 16);
        let q = RxQueue::new(2);
        q.push(frame(&pool, 7)).unwrap();
        q.close();
        assert!(matches!(q.push(frame(&pool, 8)), Err(PushError::Closed)));
        assert_eq!(q.pop(None).unwrap().frame(), [7]);
        let e = q.pop(None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
    }

    #[test]
    fn blocked_reader_is_woken_by_push_and_by_close() {
        let pool = BufferPool::new(8, 16);
        let q = Arc::new(RxQueue::new(2));
        let reader = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.pop(Some(Duration::from_secs(10))).map(|f| f.frame()[0]))
        };
        std::thread::sleep(Duration::from_millis(50));
        q.push(frame(&pool, 5)).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), 5);

        let reader = {
            let q = Arc::clone(&q);
            std::thread::spawn(move || q.pop(None).map(|_| ()))
        };
        std::thread::sleep(Duration::from_millis(50));
        q.close();
        let e = reader.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);

        let q = RxQueue::new(1);
        let t = Instant::now();
        let e = q.pop(Some(Duration::from_millis(30))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn queue_is_one_block() {
        assert_eq!(core::mem::size_of::<RxQueue>(), 128);
    }
}
