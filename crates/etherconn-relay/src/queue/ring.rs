//! [`SmallRing`]: the frames of a receive queue of at most [`SMALL_DEPTH`] frames, on one
//! cache line; the ring's tail is on the queue's line before it.
//!
//! crossbeam's `ArrayQueue` pads its head and its tail to 128 bytes each and keeps its slots
//! in an allocation of their own: a push or a pop touches three lines (head, tail, slot) on top
//! of the queue's flags, and the slot allocation (16-byte aligned, from the general heap) shares
//! its lines with whatever was allocated beside it, typically a neighbouring endpoint's. With
//! 100,000 endpoints receiving each of those lines is a cache miss; with two relay threads
//! delivering to neighbouring endpoints, the shared slot lines pass between the cores.
//!
//! A small ring keeps the same algorithm (Dmitry Vyukov's bounded queue, as `ArrayQueue`
//! implements it: a stamp per slot says whether it holds a frame of this lap, and head and tail
//! are claimed with a compare-exchange), with 32-bit counters and stamps and the frames as
//! thin pointers in atomic cells, so that head, stamps and four frames fit in one line. The
//! tail is kept by the owner (`RxQueue`) on the line of flags every push reads anyway: a push
//! then touches two lines, a pop two (one only to see whether the ring is empty). Every access
//! to a frame is an atomic swap: no `unsafe` here, and a frame can never be read twice, nor
//! lost to its pool, even if the stamps were wrong (it would only be seen as missing).
//!
//! 32-bit counters wrap (every comparison is by equality of wrapped values, and a lap divides
//! 2^32). What they give up against `ArrayQueue`'s word-sized ones: a compare-exchange could
//! succeed on a counter that went all the way round, but only for a thread held off its CPU
//! for 2^29 laps of one ring (about 2 billion frames to one endpoint, half an hour at the
//! fastest rate a relay thread reaches) between reading the counter and claiming it.

use core::fmt;
use core::sync::atomic::{fence, AtomicU32, Ordering};
use std::boxed::Box;

use crossbeam_utils::atomic::AtomicCell;
use crossbeam_utils::Backoff;

use super::frame::RxFrame;
use crate::pool::FrameSlot;

/// Deepest queue kept in a [`SmallRing`] (a power of two: an index is masked to it).
pub(crate) const SMALL_DEPTH: usize = 4;
const _: () = assert!(SMALL_DEPTH.is_power_of_two());

/// Counter value of one lap around the ring: a power of two above every small depth, so that
/// the low bits are the index and the high bits the lap.
const ONE_LAP: u32 = 2 * SMALL_DEPTH as u32;

type Cell = AtomicCell<Option<Box<FrameSlot>>>;

// A slot's frame is one pointer, swapped with one atomic instruction: no lock behind the cell.
const _: () = assert!(Cell::is_lock_free());

/// A bounded multi-producer multi-consumer ring of at most [`SMALL_DEPTH`] frames. Its
/// capacity and its tail are the owner's, passed to every call: the owner keeps them on the
/// line its pushes read anyway, apart from the head and the slots, so that a pusher claiming
/// the tail does not take the line a reader is taking frames from.
#[repr(C)]
pub(crate) struct SmallRing {
    head: AtomicU32,
    stamps: [AtomicU32; SMALL_DEPTH],
    slots: [Cell; SMALL_DEPTH],
}

impl fmt::Debug for SmallRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmallRing")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl SmallRing {
    /// An empty ring.
    pub(crate) fn new() -> SmallRing {
        SmallRing {
            head: AtomicU32::new(0),
            // Slot `i` first takes the frame of counter value `i` (lap 0).
            stamps: core::array::from_fn(|i| AtomicU32::new(i as u32)),
            slots: core::array::from_fn(|_| AtomicCell::new(None)),
        }
    }

    /// The slot of counter value `at` (masked: `at`'s index is below `cap`, at most
    /// [`SMALL_DEPTH`], so the mask changes nothing and no bounds check can fail).
    #[inline]
    fn slot(&self, at: u32) -> (&AtomicU32, &Cell) {
        let i = (at & (ONE_LAP - 1)) as usize & (SMALL_DEPTH - 1);
        (&self.stamps[i], &self.slots[i])
    }

    /// The counter value after `at` in a ring of `cap` frames.
    #[inline]
    fn next(at: u32, cap: u32) -> u32 {
        if (at & (ONE_LAP - 1)) + 1 < cap {
            at.wrapping_add(1)
        } else {
            (at & !(ONE_LAP - 1)).wrapping_add(ONE_LAP)
        }
    }

    /// Adds `frame` without blocking; a full ring hands it back.
    pub(crate) fn push(
        &self,
        tail_of: &AtomicU32,
        cap: u32,
        frame: RxFrame,
    ) -> Result<(), RxFrame> {
        let Some(slot) = frame.into_slot() else {
            return Ok(());
        };
        let backoff = Backoff::new();
        let mut tail = tail_of.load(Ordering::Relaxed);
        loop {
            let (stamp_of, cell) = self.slot(tail);
            let stamp = stamp_of.load(Ordering::Acquire);
            if stamp == tail {
                // The slot is free for this lap: claim it. (SeqCst: the queue's wake-up
                // protocol pairs this with readers' SeqCst stores, as with `ArrayQueue`.)
                match tail_of.compare_exchange_weak(
                    tail,
                    Self::next(tail, cap),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // The claim makes the cell ours: it is empty (a frame found there
                        // would be returned to its pool, not lost).
                        drop(cell.swap(Some(slot)).map(RxFrame::from_slot));
                        stamp_of.store(tail.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(t) => {
                        tail = t;
                        backoff.spin();
                    }
                }
            } else if stamp.wrapping_add(ONE_LAP) == tail.wrapping_add(1) {
                // The slot still holds the previous lap's frame: full, unless a pop is under way.
                fence(Ordering::SeqCst);
                let head = self.head.load(Ordering::Relaxed);
                if head.wrapping_add(ONE_LAP) == tail {
                    return Err(RxFrame::from_slot(slot));
                }
                backoff.spin();
                tail = tail_of.load(Ordering::Relaxed);
            } else {
                // Another push claimed the slot and has not stored its stamp yet.
                backoff.snooze();
                tail = tail_of.load(Ordering::Relaxed);
            }
        }
    }

    /// Takes the oldest frame, if any.
    pub(crate) fn pop(&self, tail_of: &AtomicU32, cap: u32) -> Option<RxFrame> {
        let backoff = Backoff::new();
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            let (stamp_of, cell) = self.slot(head);
            let stamp = stamp_of.load(Ordering::Acquire);
            if stamp == head.wrapping_add(1) {
                // A frame of this lap waits: claim it.
                match self.head.compare_exchange_weak(
                    head,
                    Self::next(head, cap),
                    Ordering::SeqCst,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let frame = cell.take();
                        stamp_of.store(head.wrapping_add(ONE_LAP), Ordering::Release);
                        return frame.map(RxFrame::from_slot);
                    }
                    Err(h) => {
                        head = h;
                        backoff.spin();
                    }
                }
            } else if stamp == head {
                // Nothing pushed into the slot this lap: empty, unless a push is under way.
                fence(Ordering::SeqCst);
                let tail = tail_of.load(Ordering::Relaxed);
                if tail == head {
                    return None;
                }
                backoff.spin();
                head = self.head.load(Ordering::Relaxed);
            } else {
                // Another pop claimed the slot and has not stored its stamp yet.
                backoff.snooze();
                head = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// Frames waiting in a ring of `cap` frames (a snapshot of head and tail seen together).
    pub(crate) fn len(&self, tail_of: &AtomicU32, cap: u32) -> usize {
        loop {
            let tail = tail_of.load(Ordering::SeqCst);
            let head = self.head.load(Ordering::SeqCst);
            if tail_of.load(Ordering::SeqCst) == tail {
                let hix = head & (ONE_LAP - 1);
                let tix = tail & (ONE_LAP - 1);
                let n = if hix < tix {
                    tix - hix
                } else if hix > tix {
                    cap - hix + tix
                } else if tail == head {
                    0
                } else {
                    cap
                };
                return n as usize;
            }
        }
    }

    /// Whether no frame waits.
    pub(crate) fn is_empty(&self, tail_of: &AtomicU32) -> bool {
        let head = self.head.load(Ordering::SeqCst);
        let tail = tail_of.load(Ordering::SeqCst);
        head == tail
    }
}

impl Drop for SmallRing {
    /// Frames still queued go back to their pool (a dropped box would leave the pool short).
    fn drop(&mut self) {
        for cell in &self.slots {
            drop(cell.take().map(RxFrame::from_slot));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::BufferPool;
    use std::sync::Arc;
    use std::vec::Vec;

    fn frame(pool: &Arc<BufferPool>, tag: u32) -> RxFrame {
        let mut b = pool.get().expect("buffer");
        b[..4].copy_from_slice(&tag.to_le_bytes());
        b.slot_mut().len = 4;
        RxFrame::new(b)
    }

    fn tag(f: &RxFrame) -> u32 {
        u32::from_le_bytes(f.frame().try_into().expect("4 bytes"))
    }

    #[test]
    fn fits_a_line_with_room_for_the_wake_up_state() {
        assert_eq!(core::mem::size_of::<SmallRing>(), 56);
    }

    #[test]
    fn fifo_bounds_and_counter_wrap() {
        let pool = BufferPool::new(16, 16);
        for cap in 1..=SMALL_DEPTH as u32 {
            let r = SmallRing::new();
            let tail = AtomicU32::new(0);
            // Start near the counters' wrap-around, at the start of a lap, to cross it.
            let start = 0u32.wrapping_sub(4 * ONE_LAP);
            r.head.store(start, Ordering::Relaxed);
            tail.store(start, Ordering::Relaxed);
            for (i, s) in r.stamps.iter().enumerate() {
                s.store(start.wrapping_add(i as u32), Ordering::Relaxed);
            }
            let (mut next_in, mut next_out) = (0u32, 0u32);
            for round in 0..40 {
                let fill = 1 + round % cap;
                for _ in 0..fill {
                    assert!(r.push(&tail, cap, frame(&pool, next_in)).is_ok());
                    next_in += 1;
                }
                assert_eq!(r.len(&tail, cap), fill as usize);
                if fill == cap {
                    let back = r.push(&tail, cap, frame(&pool, 999)).expect_err("full");
                    assert_eq!(tag(&back), 999);
                }
                for _ in 0..fill {
                    let f = r.pop(&tail, cap).expect("queued");
                    assert_eq!(tag(&f), next_out);
                    next_out += 1;
                }
                assert!(r.is_empty(&tail));
                assert!(r.pop(&tail, cap).is_none());
            }
            assert!(tail.load(Ordering::Relaxed) < start, "the counters wrapped");
        }
        assert_eq!(
            pool.allocated(),
            pool.loose(),
            "every buffer back in the pool"
        );
    }

    #[test]
    fn dropping_a_ring_returns_its_frames() {
        let pool = BufferPool::new(8, 16);
        let r = SmallRing::new();
        let tail = AtomicU32::new(0);
        for i in 0..3 {
            assert!(r.push(&tail, 4, frame(&pool, i)).is_ok());
        }
        drop(r);
        assert_eq!(pool.allocated(), 3);
        assert_eq!(pool.loose(), 3);
    }

    /// Producers and consumers on one ring: every frame comes out exactly once, and each
    /// producer's frames in the order it pushed them.
    fn stress(cap: u32, producers: u32, consumers: usize, per: u32) {
        let pool = BufferPool::new(64, 16);
        let r = Arc::new((SmallRing::new(), AtomicU32::new(0)));
        let done = Arc::new(core::sync::atomic::AtomicU32::new(0));
        let pushers: Vec<_> = (0..producers)
            .map(|p| {
                let (r, pool, done) = (Arc::clone(&r), Arc::clone(&pool), Arc::clone(&done));
                std::thread::spawn(move || {
                    for i in 0..per {
                        let mut f = frame(&pool, p << 24 | i);
                        loop {
                            match r.0.push(&r.1, cap, f) {
                                Ok(()) => break,
                                Err(back) => {
                                    f = back;
                                    std::thread::yield_now();
                                }
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        let poppers: Vec<_> = (0..consumers)
            .map(|_| {
                let (r, done) = (Arc::clone(&r), Arc::clone(&done));
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        match r.0.pop(&r.1, cap) {
                            Some(f) => got.push(tag(&f)),
                            None if done.load(Ordering::SeqCst) == producers => {
                                // Every push finished before this look: what is left is seen.
                                match r.0.pop(&r.1, cap) {
                                    Some(f) => got.push(tag(&f)),
                                    None => break,
                                }
                            }
                            None => std::thread::yield_now(),
                        }
                    }
                    got
                })
            })
            .collect();
        for p in pushers {
            p.join().unwrap();
        }
        let mut seen = vec![Vec::new(); producers as usize];
        for c in poppers {
            let got = c.join().unwrap();
            // Per consumer, each producer's frames come in order.
            let mut last = vec![None::<u32>; producers as usize];
            for t in got {
                let (p, i) = ((t >> 24) as usize, t & 0xff_ffff);
                assert!(
                    last[p].is_none_or(|l| l < i),
                    "producer {p}: {i} after {last:?}"
                );
                last[p] = Some(i);
                seen[p].push(i);
            }
        }
        for (p, mut s) in seen.into_iter().enumerate() {
            s.sort_unstable();
            assert_eq!(
                s.len(),
                per as usize,
                "producer {p}: frames lost or doubled"
            );
            assert!(
                s.iter().enumerate().all(|(k, &i)| k as u32 == i),
                "producer {p}"
            );
        }
        assert!(r.0.is_empty(&r.1));
        assert_eq!(
            pool.allocated(),
            pool.loose(),
            "every buffer back in the pool"
        );
    }

    #[test]
    fn one_producer_one_consumer_under_contention() {
        for cap in 1..=SMALL_DEPTH as u32 {
            stress(cap, 1, 1, 20_000);
        }
    }

    #[test]
    fn many_producers_many_consumers_under_contention() {
        for cap in [1, 3, 4] {
            stress(cap, 3, 2, 10_000);
        }
    }
}
