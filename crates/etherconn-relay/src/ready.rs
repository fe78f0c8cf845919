//! Waiting on many conns at once: [`ReadySet`], the `epoll` of this library.
//!
//! A thread serving thousands of conns cannot block in each one's `recv_from`, and polling them
//! all touches every conn's queue whether it has a frame or not (100,000 cache misses per sweep
//! with 100,000 endpoints). A `ReadySet` is told by the relay which conns have frames: each
//! watched queue holds a hook that, when a frame arrives while the queue is armed, appends the
//! conn's token to the set's ready list and disarms the queue. [`ReadySet::wait`] hands the
//! ready tokens over; the thread reads those conns (non-blocking) and calls `wait` again, which
//! re-arms them.
//!
//! It is level-triggered: a conn returned by `wait` and not drained is returned again by the
//! next `wait`. Readiness can be spurious (a frame another thread read first), so read
//! non-blocking and expect `WouldBlock`. A closed conn (relay stopped, conn dropped) is
//! reported ready, so its reader sees the error.
//!
//! The relay's cost: nothing while a conn is not watched or not armed; when a frame arrives for
//! an armed queue, one atomic swap on the queue's own line and a read lock of its hook; the
//! batch's tokens go on the set's lock-free list when the delivery batch ends, with at most one
//! wake-up of the waiting thread. No allocation once a relay thread has delivered its first
//! batch.

use std::io;
use std::sync::Arc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use std::vec::Vec;

use crate::locks::lock;
use crate::queue::hooks::ReadyHook;
use crate::queue::RxQueue;
use crate::wake::ReadyList;

/// The receive queue of a conn, as a [`ReadySet`] holds it (see [`Watchable`]).
#[derive(Clone)]
pub struct WatchedQueue(Arc<dyn AsRef<RxQueue> + Send + Sync>);

impl WatchedQueue {
    /// Wraps anything that owns an [`RxQueue`] (a conn entry, or the queue itself).
    pub fn new(owner: Arc<dyn AsRef<RxQueue> + Send + Sync>) -> WatchedQueue {
        WatchedQueue(owner)
    }

    fn queue(&self) -> &RxQueue {
        (*self.0).as_ref()
    }
}

impl core::fmt::Debug for WatchedQueue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WatchedQueue")
            .field("queued", &self.queue().len())
            .finish()
    }
}

/// A conn a [`ReadySet`] can watch: `EtherConn`, and in `etherconn-udp` `RUdpConn` and
/// `SharingRUdpConn`.
pub trait Watchable {
    /// The conn's receive queue, for a set to hold.
    fn watched_queue(&self) -> WatchedQueue;

    /// The conn's receive queue, borrowed (for [`ReadySet::read_ahead`]).
    fn rx_queue(&self) -> &RxQueue;
}

/// How many tokens ahead [`ReadySet::read_ahead`] reads a conn's lines: far enough that its
/// misses are over by the time the conn is read, near enough that the lines are still in L1.
/// Over veth with 100,000 endpoints, 4 and 8 gave the same, 2 half the gain (docs/scale.md).
pub const READ_AHEAD: usize = 4;

/// The iterator of [`ReadySet::read_ahead`].
pub struct ReadAhead<'a, C: ?Sized, F> {
    tokens: &'a [usize],
    conn: F,
    at: usize,
    _conns: core::marker::PhantomData<&'a C>,
}

impl<'a, C, F> Iterator for ReadAhead<'a, C, F>
where
    C: Watchable + ?Sized + 'a,
    F: Fn(usize) -> &'a C,
{
    type Item = (usize, &'a C);

    fn next(&mut self) -> Option<(usize, &'a C)> {
        let t = *self.tokens.get(self.at)?;
        if let Some(&later) = self.tokens.get(self.at + READ_AHEAD) {
            (self.conn)(later).rx_queue().prefetch();
        }
        self.at += 1;
        Some((t, (self.conn)(t)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.tokens.len() - self.at;
        (left, Some(left))
    }
}

impl<'a, C, F> ExactSizeIterator for ReadAhead<'a, C, F>
where
    C: Watchable + ?Sized + 'a,
    F: Fn(usize) -> &'a C,
{
}

impl<C: ?Sized, F> core::fmt::Debug for ReadAhead<'_, C, F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReadAhead")
            .field("tokens", &self.tokens.len())
            .field("at", &self.at)
            .finish()
    }
}

impl AsRef<RxQueue> for RxQueue {
    fn as_ref(&self) -> &RxQueue {
        self
    }
}

/// Default capacity of a set's ready list (tokens listed and not yet taken by `wait`).
pub const DEFAULT_READY_CAPACITY: usize = 65_536;

/// A set of conns one thread waits on together, the `epoll` of this library.
///
/// The relay lists a watched conn's token when a frame arrives for it; [`wait`](Self::wait)
/// hands the listed tokens over and, on the next call, re-arms them. Level-triggered: a conn
/// not drained is reported again. Readiness can be spurious (a frame another thread read
/// first), so read non-blocking and expect `WouldBlock`; a closed conn (relay stopped, conn
/// dropped) is reported ready, so its reader sees the error. The relay side costs one atomic
/// swap per listing and never blocks on the waiting thread.
///
/// ```
/// use std::time::Duration;
/// use etherconn_relay::{DispatcherConfig, LoopbackRelay, ReadySet};
/// use etherconn_core::wire::{EtherType, MacAddr};
/// use etherconn_relay::{EtherConn, EtherConnConfig};
///
/// let relay = LoopbackRelay::new(DispatcherConfig::default());
/// let cfg = EtherConnConfig::default().ethertypes(&[EtherType(0x88b5)]);
/// let conns: Vec<EtherConn> = (1..=100u64)
///     .map(|i| EtherConn::new(relay.clone(), MacAddr([2, 0, 0, 0, 0, 0]).offset(i), &[], cfg.clone()))
///     .collect::<Result<_, _>>()?;
/// let set = ReadySet::new();
/// let tokens: Vec<usize> = conns.iter().map(|c| set.add(c)).collect();
/// for c in &conns {
///     c.set_nonblocking(true)?;
/// }
///
/// // Conn 0 sends to conns 7 and 42.
/// for to in [7, 42] {
///     conns[0].send_to(b"hello", EtherType(0x88b5), conns[to].local_mac())?;
/// }
/// let mut ready = Vec::new();
/// set.wait(&mut ready, Some(Duration::from_secs(1)))?;
/// ready.sort();
/// assert_eq!(ready, [tokens[7], tokens[42]]);
/// let mut buf = [0u8; 1500];
/// for &t in &ready {
///     let (n, _) = conns[t].recv_from(&mut buf)?; // the token is the index here
///     assert_eq!(&buf[..5], b"hello");
/// }
/// // Everything was read: nothing is ready now.
/// assert_eq!(set.wait(&mut ready, Some(Duration::ZERO))?, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ReadySet {
    list: Arc<ReadyList>,
    /// Members by token (`None`: removed; the slot is reused).
    members: Mutex<Members>,
}

#[derive(Default)]
struct Members {
    slots: Vec<Option<WatchedQueue>>,
    free: Vec<usize>,
    /// Tokens handed out by the last `wait`, re-armed by the next.
    handed_out: Vec<usize>,
}

impl Default for ReadySet {
    fn default() -> ReadySet {
        ReadySet::new()
    }
}

impl core::fmt::Debug for ReadySet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReadySet")
            .field("members", &self.len())
            .finish()
    }
}

impl ReadySet {
    /// An empty set whose ready list holds [`DEFAULT_READY_CAPACITY`] tokens.
    pub fn new() -> ReadySet {
        ReadySet::with_capacity(DEFAULT_READY_CAPACITY)
    }

    /// An empty set whose ready list holds `capacity` tokens (at least 1). A set with more
    /// conns ready at once than that still reports every one of them: the next `wait` then
    /// looks at all its conns instead of the list (slower, never lossy).
    pub fn with_capacity(capacity: usize) -> ReadySet {
        ReadySet {
            list: Arc::new(ReadyList::new(capacity)),
            members: Mutex::default(),
        }
    }

    /// Watches `conn`; returns its token, the number [`wait`](Self::wait) reports it by.
    /// Tokens are small integers, reused after [`remove`](Self::remove).
    ///
    /// A conn is watched by one set at a time: adding it to another set (or again to this one)
    /// moves it to the new token (the old one stops hearing of it). Watching does not interfere
    /// with async reads of the conn.
    pub fn add(&self, conn: &impl Watchable) -> usize {
        self.add_queue(conn.watched_queue())
    }

    /// [`add`](Self::add) for a bare queue.
    pub fn add_queue(&self, queue: WatchedQueue) -> usize {
        let mut members = lock(&self.members);
        let token = members.free.pop().unwrap_or(members.slots.len());
        queue
            .queue()
            .set_ready_hook(ReadyHook::new(Arc::clone(&self.list), token));
        if token == members.slots.len() {
            members.slots.push(None);
        }
        members.slots[token] = Some(queue.clone());
        // Room for every member on the handed-out list, so that `wait` never allocates.
        let n = members.slots.len();
        let handed = members.handed_out.len();
        members.handed_out.reserve(n.saturating_sub(handed));
        drop(members);
        queue.queue().arm();
        token
    }

    /// Stops watching the conn of `token`; `false` if no conn has it. A wake-up already under
    /// way may still report the token once.
    pub fn remove(&self, token: usize) -> bool {
        let mut members = lock(&self.members);
        match members.slots.get_mut(token).and_then(Option::take) {
            Some(q) => {
                self.unhook(&q, token);
                members.free.push(token);
                true
            }
            None => false,
        }
    }

    /// Number of conns watched.
    pub fn len(&self) -> usize {
        let members = lock(&self.members);
        members.slots.len() - members.free.len()
    }

    /// Whether no conn is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits up to `timeout` (`None`: forever; zero: not at all) until some watched conn has a
    /// frame (or is closed), and replaces the contents of `ready` with the tokens of every such
    /// conn; returns how many (0 when the timeout expired).
    ///
    /// The conns returned by the previous call are re-armed first: read what you want from
    /// them before calling again; any still holding frames are returned again. With many
    /// tokens, walk them with [`read_ahead`](Self::read_ahead).
    pub fn wait(&self, ready: &mut Vec<usize>, timeout: Option<Duration>) -> io::Result<usize> {
        self.rearm();
        ready.clear();
        // A timeout too long to add to the clock is no timeout.
        let deadline = crate::timeouts::deadline(timeout);
        let list = &*self.list;
        loop {
            while let Some(t) = list.pop() {
                ready.push(t);
            }
            if list.take_overflow() {
                self.scan(ready);
            }
            if !ready.is_empty() {
                // A token can come twice (listed, then found by an overflow's scan; or a
                // removed conn's token reused): once is enough, and keeps `handed_out` within
                // the room `add` reserved. Tokens of conns removed meanwhile are dropped.
                ready.sort_unstable();
                ready.dedup();
                let mut members = lock(&self.members);
                ready.retain(|&t| members.slots.get(t).is_some_and(Option::is_some));
                if !ready.is_empty() {
                    members.handed_out.extend_from_slice(ready);
                    return Ok(ready.len());
                }
            }
            if !list.sleep_until(deadline) {
                return Ok(0);
            }
        }
    }

    /// The tokens `wait` returned, each with its conn (`conn(token)`, however the caller maps
    /// tokens to conns), in order; while handing one over it reads the queue lines of the conn
    /// [`READ_AHEAD`] tokens later.
    ///
    /// Reading conns one after another, each read waits for its conn's cache misses (the conn,
    /// its queue) behind the atomic operations of the read before, so with thousands of conns
    /// receiving the reader spends most of its time waiting for memory; read ahead, those
    /// misses overlap with the reads before. Over veth with 100,000 endpoints receiving, this
    /// raised a one-thread reader's throughput by about 20% (docs/scale.md); with a few conns it
    /// changes nothing. It only reads: a conn's frames and readiness are untouched.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use etherconn_relay::{DispatcherConfig, LoopbackRelay, ReadySet};
    /// # use etherconn_core::wire::{EtherType, MacAddr};
    /// # use etherconn_relay::{EtherConn, EtherConnConfig};
    /// # let relay = LoopbackRelay::new(DispatcherConfig::default());
    /// # let cfg = EtherConnConfig::default().ethertypes(&[EtherType(0x88b5)]);
    /// # let conns: Vec<EtherConn> = (1..=100u64)
    /// #     .map(|i| EtherConn::new(relay.clone(), MacAddr([2, 0, 0, 0, 0, 0]).offset(i), &[], cfg.clone()))
    /// #     .collect::<Result<_, _>>()?;
    /// let set = ReadySet::new();
    /// for c in &conns {
    ///     set.add(c); // tokens 0, 1, 2...: the index into `conns`
    ///     c.set_nonblocking(true)?;
    /// }
    /// for to in [3, 30, 60, 90] {
    ///     conns[0].send_to(b"hi", EtherType(0x88b5), conns[to].local_mac())?;
    /// }
    /// let (mut ready, mut buf, mut got) = (Vec::new(), [0u8; 1500], 0);
    /// set.wait(&mut ready, Some(Duration::from_secs(1)))?;
    /// for (_token, conn) in ReadySet::read_ahead(&ready, |t| &conns[t]) {
    ///     while conn.recv_from(&mut buf).is_ok() {
    ///         got += 1;
    ///     }
    /// }
    /// assert_eq!(got, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_ahead<'a, C, F>(tokens: &'a [usize], conn: F) -> ReadAhead<'a, C, F>
    where
        C: Watchable + ?Sized + 'a,
        F: Fn(usize) -> &'a C,
    {
        // The first few are read ahead before the first is handed over.
        for &t in tokens.iter().take(READ_AHEAD) {
            conn(t).rx_queue().prefetch();
        }
        ReadAhead {
            tokens,
            conn,
            at: 0,
            _conns: core::marker::PhantomData,
        }
    }

    /// After a ready-list overflow (whose lost listings disarmed their queues): the token of
    /// every member with a frame waiting or closed, disarmed as a listing would have left it;
    /// every other member is armed again, so that none stays disarmed unreported. Members
    /// that moved to another set are left to it.
    fn scan(&self, ready: &mut Vec<usize>) {
        let members = lock(&self.members);
        for (t, q) in members.slots.iter().enumerate() {
            let Some(q) = q else { continue };
            let q = q.queue();
            if !q.hooked_to(|h| self.owns(h, t)) {
                continue;
            }
            if !q.is_empty() || q.is_closed() {
                q.disarm();
                ready.push(t);
            } else {
                // Lists it at once should a frame have arrived since the look above.
                q.arm();
            }
        }
    }

    /// Unhooks `q` if it is still this set's under `token` (not moved to another set or
    /// added again under another token).
    fn unhook(&self, q: &WatchedQueue, token: usize) {
        q.queue().clear_ready_hook(|h| self.owns(h, token));
    }

    fn owns(&self, hook: &ReadyHook, token: usize) -> bool {
        hook.is(&self.list, token)
    }

    fn rearm(&self) {
        let mut members = lock(&self.members);
        let members = &mut *members;
        for t in members.handed_out.drain(..) {
            if let Some(Some(q)) = members.slots.get(t) {
                q.queue().arm();
            }
        }
    }
}

impl Drop for ReadySet {
    fn drop(&mut self) {
        let members = self
            .members
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for (t, q) in members.slots.iter().enumerate() {
            if let Some(q) = q {
                q.queue().clear_ready_hook(|h| h.is(&self.list, t));
            }
        }
    }
}
