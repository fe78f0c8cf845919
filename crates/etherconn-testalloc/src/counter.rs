//! The counters and which threads count.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated minus bytes freed by counted threads (a counted thread may free what another
/// allocated, so only differences between two readings mean something).
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static EVERY_THREAD: AtomicBool = AtomicBool::new(false);

thread_local! {
    // A `const` initializer and a type without a destructor: reading the flag never allocates
    // (which would re-enter the allocator) and never registers a destructor, so it works from
    // the first allocation of a thread to its last, during the teardown of other thread-locals.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

/// Counts the calling thread's allocations from now until it ends.
pub fn count_this_thread() {
    COUNTED.with(|c| c.set(true));
}

/// Counts every thread's allocations while `on`, whether or not it called
/// [`count_this_thread`].
pub fn count_every_thread(on: bool) {
    EVERY_THREAD.store(on, Ordering::SeqCst);
}

/// Allocations (and reallocations) made so far by counted threads.
pub fn allocations() -> usize {
    ALLOCS.load(Ordering::SeqCst)
}

/// Allocations counted while `f` runs.
pub fn allocations_during(f: impl FnOnce()) -> usize {
    let before = allocations();
    f();
    allocations() - before
}

/// Allocations of every thread while `f` runs ([`count_every_thread`] on for its duration).
pub fn allocations_of_every_thread_during(f: impl FnOnce()) -> usize {
    count_every_thread(true);
    let n = allocations_during(f);
    count_every_thread(false);
    n
}

/// Bytes counted threads have allocated and not freed; compare two readings.
pub fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Whether the calling thread's allocations count now.
pub(crate) fn counted() -> bool {
    EVERY_THREAD.load(Ordering::Relaxed) || COUNTED.with(Cell::get)
}

/// Counts one allocation of `bytes` (when the calling thread counts).
pub(crate) fn grew(bytes: usize) {
    if counted() {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(bytes as isize, Ordering::Relaxed);
    }
}

/// Counts `bytes` freed (when the calling thread counts).
pub(crate) fn shrank(bytes: usize) {
    if counted() {
        LIVE_BYTES.fetch_sub(bytes as isize, Ordering::Relaxed);
    }
}
