//! How a thread that found nothing to read sleeps until a relay thread has news for it, without
//! the relay taking a lock per frame.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

use crate::locks::lock;

/// A sleeping place for readers and a bell for the relay threads that feed them.
///
/// The relay side makes its news visible with a `SeqCst` operation (crossbeam's push is a
/// `SeqCst` compare-exchange; a flag store must be `SeqCst` too) and then calls
/// [`ring`](Self::ring), which costs one load while nobody sleeps. A reader announces itself
/// in `sleeping` before its last look for news, with the lock held until it waits: either the
/// look sees the news, or the ringer sees the sleeper and its notification (which needs the
/// lock) finds it waiting.
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    /// Readers about to sleep or asleep.
    sleeping: AtomicUsize,
    /// Rung since the last reader went to sleep: further news before it wakes need no
    /// notification (a busy relay would otherwise make a system call per frame until the
    /// reader runs).
    rung: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Doorbell {
    /// Whether a reader sleeps, or is about to, and has not been rung for since: a relay thread
    /// checks it (one load) before deferring a [`ring`](Self::ring).
    #[inline]
    pub(crate) fn wanted(&self) -> bool {
        self.sleeping.load(Ordering::SeqCst) > 0 && !self.rung.load(Ordering::Relaxed)
    }

    /// Wakes the sleeping readers, after news was made visible.
    #[inline]
    pub(crate) fn ring(&self) {
        if self.sleeping.load(Ordering::SeqCst) > 0 && !self.rung.swap(true, Ordering::SeqCst) {
            // Taking the lock waits out a sleeper between its last look and its wait (it holds
            // the lock until it waits). The notification comes after the lock is released: a
            // sleeper woken while the ringer still held it would wake only to block on the lock,
            // costing a second futex call and two more context switches per wake-up.
            drop(lock(&self.lock));
            self.cv.notify_all();
        }
    }

    /// Sleeps until rung or until `deadline` (`None`: no limit), unless `has_news` (which must
    /// read the news with `SeqCst` loads) finds some first; `false`, without sleeping, when the
    /// deadline has passed. Wakes may be spurious: look again.
    pub(crate) fn sleep_until(
        &self,
        has_news: impl FnOnce() -> bool,
        deadline: Option<Instant>,
    ) -> bool {
        let timeout = match deadline {
            None => None,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return false,
            },
        };
        let guard = lock(&self.lock);
        // Cleared before the sleep is announced: a ringer that sees the announcement (its
        // SeqCst load reads our increment, a release) then sees the cleared flag too, so a
        // stale `rung` from an earlier ring cannot make it skip us.
        self.rung.store(false, Ordering::SeqCst);
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        if !has_news() {
            drop(match timeout {
                None => self.cv.wait(guard).unwrap_or_else(PoisonError::into_inner),
                Some(t) => {
                    self.cv
                        .wait_timeout(guard, t)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            });
        }
        self.sleeping.fetch_sub(1, Ordering::SeqCst);
        true
    }
}
