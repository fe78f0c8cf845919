//! The allocator counts what it is told to: a counted thread's allocations and live bytes, no
//! other thread's, and every thread's while `count_every_thread` is on.

use etherconn_testalloc as alloc;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

#[test]
fn counts_the_threads_it_is_told_to() {
    // A thread that did not opt in is not counted.
    let quiet = std::thread::spawn(|| {
        alloc::allocations_during(|| drop(std::hint::black_box(vec![1u8; 64])))
    });
    assert_eq!(quiet.join().unwrap(), 0);

    alloc::count_this_thread();
    let live = alloc::live_bytes();
    let mut kept = None;
    let n = alloc::allocations_during(|| kept = Some(std::hint::black_box(vec![1u8; 100])));
    assert_eq!(n, 1);
    assert_eq!(alloc::live_bytes() - live, 100);
    drop(kept);
    assert_eq!(alloc::live_bytes(), live);

    // While every thread counts, another thread's allocation is counted too (at least its
    // one box: the spawn itself allocates on this thread).
    let n = alloc::allocations_of_every_thread_during(|| {
        std::thread::spawn(|| drop(std::hint::black_box(Box::new(7u64))))
            .join()
            .unwrap();
    });
    assert!(n >= 2, "{n}");
    let other = std::thread::spawn(|| {
        alloc::allocations_during(|| drop(std::hint::black_box(Box::new(7u64))))
    });
    assert_eq!(other.join().unwrap(), 0, "off again");
}
