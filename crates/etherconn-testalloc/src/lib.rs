//! A counting global allocator for tests that check a hot path allocates nothing.
//!
//! [`Counting`] forwards every call to the system allocator and counts the allocations (and
//! reallocations) of the threads it is told to count, in one of two ways:
//!
//! - **per thread**: a thread counts once it has called [`count_this_thread`]. A test binary
//!   runs more than the test: libtest's main thread, after it has started a test's thread,
//!   records the test (a map entry, a timeout entry) and sets itself up to wait for the result
//!   (a channel context, a waiter entry), four allocations that land inside whatever the test
//!   is measuring when the main thread is scheduled late; tests running in parallel allocate
//!   too. Counting every thread made exact checks flaky, so a test calls it on its own thread
//!   and on every thread it starts that runs the code under test.
//! - **every thread**: while [`count_every_thread`] is on, every thread counts, for code whose
//!   threads a test does not start (a relay's receive thread). Such a binary should hold one
//!   test, so that only libtest's main thread allocates besides it.
//!
//! A test binary installs it with
//! `#[global_allocator] static GLOBAL: etherconn_testalloc::Counting = etherconn_testalloc::Counting;`
//! and reads [`allocations`] (or [`live_bytes`]) before and after the code it measures.
#![deny(unsafe_code)]

// Module order: counter, then sys (the allocator, which reports to counter).
mod counter;
#[allow(unsafe_code)]
mod sys;

pub use counter::{
    allocations, allocations_during, allocations_of_every_thread_during, count_every_thread,
    count_this_thread, live_bytes,
};
pub use sys::Counting;
