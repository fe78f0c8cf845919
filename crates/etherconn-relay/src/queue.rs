//! A conn's bounded receive queue: the relay thread pushes without ever blocking, readers wait
//! with a timeout and are woken when the relay stops.
//!
//! What it holds is in [`frame`]; what a `ReadySet` or an `Inbox` leaves on it for its pushes
//! to call is in [`hooks`], below the queue, so the queue needs neither of them. A queue of at
//! most [`ring::SMALL_DEPTH`] frames keeps them in a [`ring::SmallRing`] on one cache line of
//! its own; a deeper one in crossbeam's `ArrayQueue`.

pub(crate) mod frame;
pub(crate) mod hooks;
pub(crate) mod ring;

use std::boxed::Box;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

pub(crate) use frame::PushError;
pub use frame::RxFrame;
use hooks::{InboxHook, ReadyHook};
use ring::{SmallRing, SMALL_DEPTH};

use crate::error::RelayError;

/// A bounded multi-producer queue with a blocking, timed pop.
///
/// Laid out by hand (`repr(C)`, aligned to a pair of cache lines, which the adjacent-line
/// prefetcher fetches together, so that no neighbour shares them): the first line holds what
/// every push reads (`closed`, the wake-up flags, the inbox hook: a push to an attached queue
/// touches only that line) and the tail of a small queue, the second the head and the frames
/// of a small queue (a ring of its own: a push or pop of a queue of up to four frames
/// touches only these two lines; the tail is apart from the head so that with one busy queue
/// the relay's push and its reader's pop do not fight over one line). A deeper
/// queue's `ArrayQueue` is boxed beside them. The locks and the `ReadySet` hook, used only by
/// sleepers and on arming, come last.
#[derive(Debug)]
#[repr(C, align(128))]
pub struct RxQueue {
    closed: AtomicBool,
    /// Refuse martian UDP datagrams ([`RxQueue::set_drop_martians`]); beside `closed`, which
    /// every push reads anyway.
    drop_martians: AtomicBool,
    /// Set by a [`ReadySet`](crate::ReadySet) watching this queue when it wants to hear of the
    /// next frame; the push (or close) that clears it lists `ready`'s token.
    armed: AtomicBool,
    has_waker: AtomicBool,
    waiters: AtomicU32,
    /// The depth of `small`, or 0 when the frames are in `big`.
    small_depth: u32,
    /// `small`'s tail, which only pushes write (see `SmallRing`).
    small_tail: AtomicU32,
    big: Option<Box<ArrayQueue<RxFrame>>>,
    /// Set once, by [`Inbox::attach`](crate::Inbox::attach): pushes go there instead.
    inbox: OnceLock<InboxHook>,
    small: Line<SmallRing>,
    lock: Mutex<()>,
    cv: Condvar,
    /// The task of an async reader waiting in [`RxQueue::poll_pop`]; `has_waker` lets the
    /// relay thread skip the lock when there is none.
    waker: Mutex<Option<Waker>>,
    ready: RwLock<Option<ReadyHook>>,
}

/// A cache line of its own.
#[derive(Debug)]
#[repr(C, align(64))]
struct Line<T>(T);

impl RxQueue {
    /// Checks a conn's queue depth: 0 is refused ([`RelayError::InvalidConfig`]), as a queue
    /// holds at least one frame. What `EtherConn::new` and every layer that makes a conn's
    /// queue call before anything is reserved.
    pub fn check_depth(depth: usize) -> Result<(), RelayError> {
        if depth == 0 {
            return Err(RelayError::InvalidConfig(
                "queue depth 0: a conn's receive queue holds at least one frame",
            ));
        }
        Ok(())
    }

    /// A queue of `depth` frames (at least 1; conns refuse 0, see [`RxQueue::check_depth`]).
    pub fn new(depth: usize) -> RxQueue {
        let depth = depth.max(1);
        let (small_depth, big) = match u32::try_from(depth) {
            Ok(d) if depth <= SMALL_DEPTH => (d, None),
            _ => (0, Some(Box::new(ArrayQueue::new(depth)))),
        };
        RxQueue {
            small_depth,
            big,
            small: Line(SmallRing::new()),
            small_tail: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            drop_martians: AtomicBool::new(false),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            waker: Mutex::new(None),
            has_waker: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            ready: RwLock::new(None),
            inbox: OnceLock::new(),
        }
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        match &self.big {
            Some(q) => q.len(),
            None => self.small.0.len(&self.small_tail, self.small_depth),
        }
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        match &self.big {
            Some(q) => q.is_empty(),
            None => self.small.0.is_empty(&self.small_tail),
        }
    }

    /// How many frames the queue holds at most.
    fn capacity(&self) -> usize {
        match &self.big {
            Some(q) => q.capacity(),
            None => self.small_depth as usize,
        }
    }

    /// Adds a frame to the ring; a full one hands it back. (A SeqCst compare-exchange
    /// publishes it in either kind of ring: see `wake`.)
    #[inline]
    fn ring_push(&self, frame: RxFrame) -> Result<(), RxFrame> {
        match &self.big {
            Some(q) => q.push(frame),
            None => self.small.0.push(&self.small_tail, self.small_depth, frame),
        }
    }

    /// Takes the ring's oldest frame, if any.
    #[inline]
    fn ring_pop(&self) -> Option<RxFrame> {
        match &self.big {
            Some(q) => q.pop(),
            None => self.small.0.pop(&self.small_tail, self.small_depth),
        }
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Reads the lines a push touches (the ring's head and tail, the wake-up state) without
    /// writing them, so that a batch of pushes can bring every destination queue into the
    /// cache at once: independent plain loads overlap, whereas the push's atomic
    /// read-modify-write would wait for each line in turn. See `Delivery`.
    #[inline]
    pub(crate) fn prefetch(&self) {
        if self.inbox.get().is_some() {
            // A push then reads only `closed`, on the hook's line.
            core::hint::black_box(self.closed.load(Ordering::Relaxed));
            return;
        }
        // `closed` and the wake-up flags share the first line, the small ring the second.
        core::hint::black_box(self.len());
        core::hint::black_box(self.waiters.load(Ordering::Relaxed));
    }

    /// Whether this queue could fill up while its reader's wake-up is held back for up to
    /// `held` more frames (see `Delivery`): fed by the relay (not moved to an inbox), no deeper
    /// than `2 * held` frames, and at least half full. Reads only what a push just touched:
    /// the depth sits on the line of `closed`, the ring's counters were just read.
    #[inline]
    pub(crate) fn fills_while_held(&self, held: usize) -> bool {
        let depth = self.capacity();
        depth <= 2 * held && self.inbox.get().is_none() && 2 * self.len() >= depth
    }

    /// Makes the queue refuse the UDP datagrams a host drops before any socket sees them:
    /// those whose source or destination address is martian, or whose source or destination
    /// port is 0 (the rules: [`etherconn_core::martian`]). The relay counts each one in
    /// `RelayStats::rx_martian`; other frames (ARP, fragments, non-UDP IP) are unaffected.
    ///
    /// Off for a new queue: an `EtherConn` sees every frame for its keys. `RUdpConn` and
    /// `SharingRUdpConn` turn it on unless their config's `accept_martians` is set.
    pub fn set_drop_martians(&self, on: bool) {
        self.drop_martians.store(on, Ordering::Relaxed);
    }

    /// Whether the queue refuses martian UDP datagrams ([`set_drop_martians`](Self::set_drop_martians)).
    pub fn drops_martians(&self) -> bool {
        self.drop_martians.load(Ordering::Relaxed)
    }

    /// Adds a frame without blocking; a full queue drops it (the caller counts that).
    pub(crate) fn push(&self, frame: RxFrame) -> Result<(), PushError> {
        // Checked before the push, so that a closed queue's reader never sees a frame counted
        // as undeliverable. (A batch's pushes find this line already read by `prefetch`.) A
        // close racing with the push may still let one frame in; the reader drains it first.
        if self.closed.load(Ordering::Acquire) {
            return Err(PushError::Closed);
        }
        // Before the inbox too: an attached conn's reader never sees the frame either.
        if self.drop_martians.load(Ordering::Relaxed) && frame.info.udp_martian().is_some() {
            return Err(PushError::Martian);
        }
        if let Some(inbox) = self.inbox.get() {
            return inbox.push(frame);
        }
        if self.ring_push(frame).is_err() {
            return Err(PushError::Full);
        }
        // An attach between the look above and the push: the frame (and any others queued)
        // must not stay where nobody reads any more.
        if let Some(inbox) = self.inbox.get() {
            self.forward_to(inbox);
            return Ok(());
        }
        self.wake();
        Ok(())
    }

    fn wake(&self) {
        // Only take the (per-conn) lock when a reader sleeps: a reader increments `waiters`
        // before checking the queue under the lock, so either it sees our frame, or we see it
        // waiting and its wait releases the lock before our notify can run.
        // (The lock only waits out a reader between its look and its wait; notifying after
        // releasing it spares the woken reader from blocking on it: see `Doorbell::ring`.)
        if self.waiters.load(Ordering::SeqCst) > 0 {
            drop(self.lock.lock().unwrap_or_else(PoisonError::into_inner));
            self.cv.notify_one();
        }
        // Either ring publishes a push with a SeqCst compare-exchange, so this SeqCst
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
        // The same pairing with `arm`: its SeqCst store of `armed` before it looks at the queue.
        if self.armed.load(Ordering::SeqCst) {
            self.disarm_and_list();
        }
    }

    /// Lists this queue's token in its `ReadySet`, if it is still armed (exactly one caller
    /// wins the swap per arming).
    fn disarm_and_list(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            if let Some(hook) = &*self.ready.read().unwrap_or_else(PoisonError::into_inner) {
                hook.list();
            }
        }
    }

    /// Joins a `ReadySet` (replacing any earlier one) under `hook`, not yet armed.
    pub(crate) fn set_ready_hook(&self, hook: ReadyHook) {
        self.armed.store(false, Ordering::SeqCst);
        *self.ready.write().unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }

    /// Leaves the `ReadySet` whose hook `is_ours` recognises (a queue since moved to another
    /// set stays there).
    pub(crate) fn clear_ready_hook(&self, is_ours: impl FnOnce(&ReadyHook) -> bool) {
        let mut hook = self.ready.write().unwrap_or_else(PoisonError::into_inner);
        if hook.as_ref().is_some_and(is_ours) {
            self.armed.store(false, Ordering::SeqCst);
            *hook = None;
        }
    }

    /// Whether this queue's `ReadySet` hook is the one `is_ours` recognises.
    pub(crate) fn hooked_to(&self, is_ours: impl FnOnce(&ReadyHook) -> bool) -> bool {
        self.ready
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(is_ours)
    }

    /// Sends every later push to `hook`'s inbox, and moves the frames already queued there; a
    /// queue already attached is refused. A closed queue reports its close at once.
    pub(crate) fn set_inbox(&self, hook: InboxHook) -> Result<(), RelayError> {
        self.inbox.set(hook).map_err(|_| RelayError::InInbox)?;
        if let Some(inbox) = self.inbox.get() {
            self.forward_to(inbox);
        }
        // Paired with `close`: its SeqCst store of `closed`, then its look at the inbox. One
        // of the two sees the other (a fence on each side); both may, and the hook reports
        // once.
        core::sync::atomic::fence(Ordering::SeqCst);
        if self.is_closed() {
            self.report_close_to_inbox();
        }
        // Readers waiting for frames that will not come now get the error.
        self.wake_every_reader();
        Ok(())
    }

    /// Moves every frame queued here to `inbox` (one that finds it full is dropped, as a push
    /// would be, and counted in [`Inbox::dropped`](crate::Inbox::dropped), not by the relay).
    fn forward_to(&self, inbox: &InboxHook) {
        while let Some(f) = self.ring_pop() {
            let _ = inbox.push(f);
        }
    }

    fn report_close_to_inbox(&self) {
        if let Some(inbox) = self.inbox.get() {
            inbox.report_close();
        }
    }

    /// The error of a read that finds nothing because the frames go to an inbox.
    fn in_inbox(&self) -> Option<io::Error> {
        self.inbox.get().map(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "this conn's frames go to an Inbox: read them there",
            )
        })
    }

    /// Stops waiting to have the token listed (the set found the queue ready by itself).
    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::SeqCst);
    }

    /// Asks to have the token listed when a frame arrives or the queue closes, or lists it at
    /// once when a frame already waits or the queue is closed.
    pub(crate) fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
        if !self.is_empty() || self.is_closed() {
            self.disarm_and_list();
        }
    }

    /// Takes a frame if one waits, or registers the task to be woken when one arrives (or the
    /// queue closes): the async counterpart of [`pop`](Self::pop), with no thread per reader.
    ///
    /// One task waits at a time: a second task polling the same queue replaces the first's
    /// registration, as with a single-reader socket. Errors as [`pop`](Self::pop)'s.
    pub fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<io::Result<RxFrame>> {
        if let Some(f) = self.ring_pop() {
            return Poll::Ready(Ok(f));
        }
        if self.is_closed() {
            return Poll::Ready(Err(closed_error()));
        }
        if let Some(e) = self.in_inbox() {
            return Poll::Ready(Err(e));
        }
        {
            let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.as_ref() {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
            self.has_waker.store(true, Ordering::SeqCst);
        }
        // A frame pushed (or a close, or an attach to an inbox) between the first check and the
        // registration found no waker to wake: look again now that the registration is visible.
        if let Some(f) = self.ring_pop() {
            return Poll::Ready(Ok(f));
        }
        if self.is_closed() {
            return Poll::Ready(Err(closed_error()));
        }
        if let Some(e) = self.in_inbox() {
            return Poll::Ready(Err(e));
        }
        Poll::Pending
    }

    /// Closes the queue: pushes fail and blocked readers return an error once it is drained.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        core::sync::atomic::fence(Ordering::SeqCst);
        self.report_close_to_inbox();
        self.wake_every_reader();
    }

    /// Wakes every reader (blocked, async, or a `ReadySet`'s) to look again.
    fn wake_every_reader(&self) {
        self.disarm_and_list();
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
    /// `NotConnected` when the queue is closed (the relay stopped or the conn was dropped),
    /// `InvalidInput` when its frames go to an [`Inbox`](crate::Inbox).
    pub fn pop(&self, timeout: Option<Duration>) -> io::Result<RxFrame> {
        // A non-blocking poll looks first: a pop that finds the ring empty issues a full
        // fence (crossbeam's check against a racing push), which waits for every store in
        // flight, and a poller reading until `WouldBlock` ends every round on an empty queue.
        // (Not for every pop: the look reads the tail's line too, which costs a transfer
        // when other threads push and pop the same queue at once; a reader that may wait
        // has no use for it.)
        if timeout != Some(Duration::ZERO) || !self.is_empty() {
            if let Some(f) = self.ring_pop() {
                return Ok(f);
            }
        }
        if self.is_closed() {
            return Err(closed_error());
        }
        if let Some(e) = self.in_inbox() {
            return Err(e);
        }
        if timeout == Some(Duration::ZERO) {
            // A bare kind: no allocation for a non-blocking poller that finds nothing.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.wait(crate::timeouts::deadline(timeout))
    }

    fn wait(&self, deadline: Option<Instant>) -> io::Result<RxFrame> {
        let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            // Counted as a sleeper only from here to the end of the wait, so a pusher takes the
            // lock and notifies only while a reader really sleeps, not on every frame it reads.
            // The count is raised before the queue is looked at: a pusher either sees it (and
            // notifies once we wait, since it needs the lock we hold) or pushed before our pop
            // (either ring publishes pushes with a SeqCst compare-exchange), which then finds it.
            self.waiters.fetch_add(1, Ordering::SeqCst);
            if let Some(f) = self.ring_pop() {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return Ok(f);
            }
            if self.is_closed() {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return Err(closed_error());
            }
            if let Some(e) = self.in_inbox() {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return Err(e);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::BufferPool;
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
        for depth in [1, 2, 3, 4, 5, 9] {
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
    fn nonblocking_poller_gets_every_frame_of_a_racing_pusher_in_order() {
        // The poller looks at the ring before popping: a push it races with must still be
        // found by a later poll, never lost or reordered.
        let pool = BufferPool::new(64, 16);
        let q = Arc::new(RxQueue::new(4));
        const FRAMES: u32 = 20_000;
        let pusher = {
            let (q, pool) = (Arc::clone(&q), Arc::clone(&pool));
            std::thread::spawn(move || {
                for i in 0..FRAMES {
                    let mut f = frame(&pool, i as u8);
                    while let Err(PushError::Full) = q.push(f) {
                        std::thread::yield_now();
                        f = frame(&pool, i as u8);
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut next = 0u32;
        while next < FRAMES {
            match q.pop(Some(Duration::ZERO)) {
                Ok(f) => {
                    assert_eq!(f.frame(), [next as u8], "frame {next}");
                    next += 1;
                }
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    // A lost frame shows as a pusher that is done while the queue looks empty
                    // (a finished push is visible), not as a hang.
                    let done = pusher.is_finished();
                    assert!(
                        !(done && q.is_empty()),
                        "pusher done, {next} of {FRAMES} frames read"
                    );
                    assert!(Instant::now() < deadline, "{next} of {FRAMES} frames read");
                    std::thread::yield_now();
                }
            }
        }
        pusher.join().unwrap();
        assert!(q.is_empty());
    }

    #[test]
    fn push_reads_one_line_and_a_small_ring_one_more() {
        use core::mem::{offset_of, size_of};
        let end_of_first = offset_of!(RxQueue, inbox) + size_of::<OnceLock<InboxHook>>();
        assert!(end_of_first <= 64, "closed .. inbox end at {end_of_first}");
        assert_eq!(offset_of!(RxQueue, small), 64);
        assert_eq!(core::mem::align_of::<RxQueue>(), 128);
        assert_eq!(RxQueue::new(4).capacity(), 4);
        assert_eq!(RxQueue::new(5).capacity(), 5);
        assert!(RxQueue::new(4).big.is_none() && RxQueue::new(5).big.is_some());
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
}
