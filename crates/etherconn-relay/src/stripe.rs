//! Per-thread stripes: state that every relay thread and reader updates per frame (counters,
//! the free-buffer lists) is split so that two threads rarely write the same cache line.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Number of stripes; threads are spread over them round robin, in the order they first touch
/// a striped structure.
pub(crate) const STRIPES: usize = 8;

/// A value aligned to its own pair of cache lines (adjacent-line prefetch pulls lines in pairs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// This thread's stripe.
#[inline]
pub(crate) fn index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(i);
        }
        i
    })
}
