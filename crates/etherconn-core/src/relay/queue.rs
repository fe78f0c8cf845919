//! A conn's bounded receive queue: the relay thread pushes without ever blocking, readers wait
//! with a timeout and are woken when the relay stops.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use super::pool::PooledBuf;
use crate::classify::Classified;

/// A received frame, as it waits on a conn's queue: the bytes in a pooled buffer and the
/// classification the relay made once for every consumer.
#[derive(Debug)]
pub struct RxFrame {
    /// The buffer; the frame is `buf[..len]`.
    pub buf: PooledBuf,
    /// Frame length.
    pub len: usize,
    /// What the relay's classifier found (spans index into `buf`).
    pub info: Classified,
}

impl RxFrame {
    /// The whole frame, from the destination MAC.
    pub fn frame(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The Ethernet payload after the last VLAN tag.
    pub fn payload(&self) -> &[u8] {
        &self.buf[self.info.payload.range()]
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
        if self.is_closed() {
            return Err(PushError::Closed);
        }
        if self.q.push(frame).is_err() {
            return Err(PushError::Full);
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
            self.cv.notify_all();
        }
    }

    /// Closes the queue: pushes fail and blocked readers return an error once it is drained.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.cv.notify_all();
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
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "no frame waiting",
            ));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let result = self.wait(deadline);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        result
    }

    fn wait(&self, deadline: Option<Instant>) -> io::Result<RxFrame> {
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(f) = self.q.pop() {
                return Ok(f);
            }
            if self.is_closed() {
                return Err(closed_error());
            }
            guard = match deadline {
                None => self.cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    self.cv
                        .wait_timeout(guard, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection closed: the relay stopped or the conn was dropped",
    )
}
