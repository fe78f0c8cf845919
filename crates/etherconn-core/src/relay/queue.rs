//! A conn's bounded receive queue: the relay thread pushes without ever blocking, readers wait
//! with a timeout and are woken when the relay stops.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

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

/// A bounded multi-producer queue with a blocking, timed pop.
#[derive(Debug)]
pub struct RxQueue {
    q: ArrayQueue<RxFrame>,
    waiters: AtomicUsize,
    closed: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
    /// The task of an async reader waiting in [`RxQueue::poll_pop`]; `has_waker` lets the
    /// relay thread skip the lock when there is none.
    waker: Mutex<Option<Waker>>,
    has_waker: AtomicBool,
}

impl RxQueue {
    /// A queue of `depth` frames (at least 1).
    pub fn new(depth: usize) -> RxQueue {
        RxQueue {
            q: ArrayQueue::new(depth.max(1)),
            waiters: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            waker: Mutex::new(None),
            has_waker: AtomicBool::new(false),
        }
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Adds a frame without blocking; a full queue drops it (the caller counts that).
    pub(crate) fn push(&self, frame: RxFrame) -> Result<(), PushError> {
        if self.q.push(frame).is_err() {
            return Err(PushError::Full);
        }
        // Checked after the push, not before, so the common case touches one line less; a
        // frame that lands in a closed queue is freed with the queue.
        if self.is_closed() {
            return Err(PushError::Closed);
        }
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        // Only take the (per-conn) lock when a reader sleeps: a reader increments `waiters`
        // before checking the queue under the lock, so either it sees our frame, or we see it
        // waiting and its wait releases the lock before our notify can run.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.cv.notify_one();
        }
        // crossbeam's ArrayQueue publishes a push with a SeqCst compare-exchange, so this SeqCst
        // load and the reader's SeqCst store of `has_waker` (made before it looks at the queue
        // again) cannot both miss each other.
        if self.has_waker.load(Ordering::SeqCst) {
            let waker = {
                let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
                // Cleared under the lock, so a registration racing with us is never erased.
                self.has_waker.store(false, Ordering::SeqCst);
                slot.take()
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// Takes a frame if one waits, or registers the task to be woken when one arrives (or the
    /// queue closes): the async counterpart of [`pop`](Self::pop), with no thread per reader.
    ///
    /// One task waits at a time: a second task polling the same queue replaces the first's
    /// registration, as with a single-reader socket.
    pub fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<io::Result<RxFrame>> {
        if let Some(f) = self.q.pop() {
            return Poll::Ready(Ok(f));
        }
        if self.is_closed() {
            return Poll::Ready(Err(closed_error()));
        }
        {
            let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
            self.has_waker.store(true, Ordering::SeqCst);
        }
        // A frame pushed (or a close) between the first check and the registration found no
        // waker to wake: look again now that the registration is visible.
        if let Some(f) = self.q.pop() {
            return Poll::Ready(Ok(f));
        }
        if self.is_closed() {
            return Poll::Ready(Err(closed_error()));
        }
        Poll::Pending
    }

    /// Closes the queue: pushes fail and blocked readers return an error once it is drained.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        {
            let _g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.cv.notify_all();
        }
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Takes a frame, waiting up to `timeout` (`None`: forever; zero: not at all).
    ///
    /// Errors: `WouldBlock` when non-blocking and empty, `TimedOut` when the timeout expires,
    /// `NotConnected` when the queue is closed (the relay stopped or the conn was dropped).
    pub fn pop(&self, timeout: Option<Duration>) -> io::Result<RxFrame> {
        if let Some(f) = self.q.pop() {
            return Ok(f);
        }
        if self.is_closed() {
            return Err(closed_error());
        }
        if timeout == Some(Duration::ZERO) {
            // A bare kind: no allocation for a non-blocking poller that finds nothing.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.wait(timeout.map(|t| Instant::now() + t))
    }

    fn wait(&self, deadline: Option<Instant>) -> io::Result<RxFrame> {
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            // Counted as a sleeper only from here to the end of the wait, so a pusher takes the
            // lock and notifies only while a reader really sleeps, not on every frame it reads.
            // The count is raised before the queue is looked at: a pusher either sees it (and
            // notifies once we wait, since it needs the lock we hold) or pushed before our pop
            // (crossbeam publishes pushes with a SeqCst compare-exchange), which then finds it.
            self.waiters.fetch_add(1, Ordering::SeqCst);
            if let Some(f) = self.q.pop() {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return Ok(f);
            }
            if self.is_closed() {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return Err(closed_error());
            }
            let woken = match deadline {
                None => self.cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        self.waiters.fetch_sub(1, Ordering::SeqCst);
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    self.cv
                        .wait_timeout(guard, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            guard = woken;
        }
    }
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection closed: the relay stopped or the conn was dropped",
    )
}
