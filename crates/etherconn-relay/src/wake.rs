//! How relay threads tell waiting readers that frames came: a [`ReadySet`](crate::ReadySet)'s
//! ready list, and the per-thread record that holds listings and doorbell rings back until the
//! delivery batch under way ends.
//!
//! Below the queues: a queue's hooks call into this module, and `ReadySet`, `Inbox` and the
//! dispatcher's batches use it, so none of them needs another.

use core::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use std::vec::Vec;

use crossbeam_queue::ArrayQueue;

use crate::doorbell::Doorbell;

/// The ready list of a `ReadySet`, shared by the set and every watched queue's hook.
///
/// Lock-free on the relay's side: a relay thread should not wait for the thread that waits on the
/// set (which may be preempted while holding a lock, on a CPU it shares with the relay and the
/// NIC's receive work). The one exception: to wake a sleeping waiter the relay rings `bell`,
/// whose lock the waiter holds only for the few instructions around going to sleep. When the list
/// is full a token is not lost: `overflow` makes the next `wait` look at every member.
#[derive(Debug)]
pub(crate) struct ReadyList {
    tokens: ArrayQueue<usize>,
    overflow: AtomicBool,
    /// Where `wait` sleeps.
    bell: Doorbell,
}

impl ReadyList {
    /// A list of `capacity` tokens (at least 1).
    pub(crate) fn new(capacity: usize) -> ReadyList {
        ReadyList {
            tokens: ArrayQueue::new(capacity.max(1)),
            overflow: AtomicBool::new(false),
            bell: Doorbell::default(),
        }
    }

    /// Lists `token` (a full list sets `overflow` instead: nothing is lost). Call
    /// [`wake`](Self::wake) after listing.
    pub(crate) fn list(&self, token: usize) {
        if self.tokens.push(token).is_err() {
            self.overflow.store(true, Ordering::SeqCst);
        }
    }

    /// Wakes a sleeping waiter, after tokens were listed.
    pub(crate) fn wake(&self) {
        // The listings before are SeqCst (crossbeam's compare-exchange, or the overflow
        // store), as the bell needs.
        self.bell.ring();
    }

    /// Takes the oldest token listed.
    pub(crate) fn pop(&self) -> Option<usize> {
        self.tokens.pop()
    }

    /// Whether tokens were lost to a full list since the last call (which clears it).
    pub(crate) fn take_overflow(&self) -> bool {
        self.overflow.swap(false, Ordering::SeqCst)
    }

    /// Sleeps until a token is listed (or the list overflowed) or until `deadline`; see
    /// [`Doorbell::sleep_until`].
    pub(crate) fn sleep_until(&self, deadline: Option<Instant>) -> bool {
        self.bell.sleep_until(|| self.has_news(), deadline)
    }

    fn has_news(&self) -> bool {
        !self.tokens.is_empty() || self.overflow.load(Ordering::SeqCst)
    }
}

/// Tokens a relay thread lists, and inboxes' doorbells it rings, held back while it delivers
/// a batch: waking the waiting thread costs a system call (and, on a CPU it shares with the
/// relay, two context switches), so a burst of frames for many conns of one set, or for one
/// inbox, wakes it once, not once per frame.
struct Deferred {
    /// A batch is being delivered on this thread.
    active: bool,
    /// The ready lists of this batch.
    sets: Vec<Arc<ReadyList>>,
    /// (index in `sets`, token).
    tokens: Vec<(usize, usize)>,
    /// Doorbells to ring (of inboxes).
    bells: Vec<Arc<Doorbell>>,
}

/// Sets and tokens a thread holds back (a `Delivery` holds up to 4 batches of 32 frames' worth,
/// so tokens have room twice over; `Delivery` checks that at compile time); beyond them it lists
/// at once. Reserved on the thread's first batch, so no allocation after that.
const DEFERRED_SETS: usize = 16;
pub(crate) const DEFERRED_TOKENS: usize = 256;

std::thread_local! {
    static DEFERRED: RefCell<Deferred> = const {
        RefCell::new(Deferred {
            active: false,
            sets: Vec::new(),
            tokens: Vec::new(),
            bells: Vec::new(),
        })
    };
}

/// Holds back this thread's `ReadySet` wake-ups until it drops (see [`Deferred`]). Not `Send`:
/// it must drop on the thread whose record it ends.
#[derive(Debug)]
pub(crate) struct DeferWakeups(core::marker::PhantomData<*const ()>);

/// Starts holding back wake-ups; nested calls are harmless (the outermost guard notifies).
pub(crate) fn defer_wakeups() -> Option<DeferWakeups> {
    DEFERRED
        .try_with(|d| {
            let mut d = d.borrow_mut();
            if d.active {
                return None;
            }
            d.active = true;
            if d.sets.capacity() == 0 {
                d.sets.reserve_exact(DEFERRED_SETS);
                d.tokens.reserve_exact(DEFERRED_TOKENS);
                d.bells.reserve_exact(DEFERRED_SETS);
            }
            Some(DeferWakeups(core::marker::PhantomData))
        })
        .ok()
        .flatten()
}

impl Drop for DeferWakeups {
    fn drop(&mut self) {
        let _ = DEFERRED.try_with(|d| {
            let mut d = d.borrow_mut();
            let d = &mut *d;
            d.active = false;
            // Every token onto its set's list, then one wake-up per set.
            for &(set, t) in &d.tokens {
                d.sets[set].list(t);
            }
            for list in &d.sets {
                list.wake();
            }
            for bell in &d.bells {
                bell.ring();
            }
            d.sets.clear();
            d.tokens.clear();
            d.bells.clear();
        });
    }
}

/// Holds `token` back for `list` until this thread's batch ends; `false` when no batch is
/// under way (or the record is full): list it now.
pub(crate) fn defer_listing(list: &Arc<ReadyList>, token: usize) -> bool {
    in_batch(|d| {
        if d.tokens.len() >= DEFERRED_TOKENS {
            return false;
        }
        let Some(set) = index_in(&mut d.sets, list) else {
            return false;
        };
        d.tokens.push((set, token));
        true
    })
}

/// Holds back ringing `bell` until this thread's batch ends; `false` when no batch is under
/// way (or the record is full): ring it now.
pub(crate) fn defer_ring(bell: &Arc<Doorbell>) -> bool {
    in_batch(|d| index_in(&mut d.bells, bell).is_some())
}

/// `record` applied to this thread's record of held-back wake-ups, if a batch is under way;
/// `false` otherwise.
fn in_batch(record: impl FnOnce(&mut Deferred) -> bool) -> bool {
    DEFERRED
        .try_with(|d| match d.try_borrow_mut() {
            Ok(mut d) if d.active => record(&mut d),
            _ => false,
        })
        .unwrap_or(false)
}

/// The index of `item` in `list`, added if it is not there and the list (reserved for
/// [`DEFERRED_SETS`]) has room; `None` when it is full.
fn index_in<T>(list: &mut Vec<Arc<T>>, item: &Arc<T>) -> Option<usize> {
    if let Some(i) = list.iter().position(|x| Arc::ptr_eq(x, item)) {
        return Some(i);
    }
    if list.len() >= DEFERRED_SETS {
        return None;
    }
    list.push(Arc::clone(item));
    Some(list.len() - 1)
}
