//! A counting global allocator that counts only the threads a test is about.
//!
//! A test binary runs more than the test: libtest's main thread, after it has started a test's
//! thread, records the test (a map entry, a timeout entry) and sets itself up to wait for the
//! result (a channel context, a waiter entry), four allocations that land inside whatever the
//! test is measuring when the main thread is scheduled late; tests running in parallel allocate
//! too. Counting every thread made exact checks flaky, so a thread counts only once it has
//! called [`count_this_thread`]: a test calls it on its own thread and on every thread it starts
//! that runs the code under test.
//!
//! A test binary installs it with
//! `#[global_allocator] static GLOBAL: common::alloc::Counting = common::alloc::Counting;`.
#![allow(dead_code)] // Each test binary uses its own part.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// Forwards to the system allocator, counting what counted threads allocate.
pub struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated minus bytes freed by counted threads (a counted thread may free what another
/// allocated, so only differences between two readings mean something).
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

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

/// Allocations (and reallocations) made so far by counted threads.
pub fn allocations() -> usize {
    ALLOCS.load(Ordering::Relaxed)
}

/// Allocations counted while `f` runs.
pub fn allocations_during(f: impl FnOnce()) -> usize {
    let before = allocations();
    f();
    allocations() - before
}

/// Bytes counted threads have allocated and not freed; compare two readings.
pub fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

fn counted() -> bool {
    COUNTED.with(Cell::get)
}

fn grew(bytes: usize) {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    LIVE_BYTES.fetch_add(bytes as isize, Ordering::Relaxed);
}

// SAFETY: every method forwards to the system allocator unchanged; counting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            grew(layout.size());
        }
        // SAFETY: the caller's obligations for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counted() {
            grew(layout.size());
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counted() {
            LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `System` with this layout, via the methods above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            grew(new_size);
            LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: as for `dealloc`, and `new_size` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
