//! The bounded handoff between relay threads and a capture's writer thread: a fixed set of
//! frame slots, allocated once, that circulate between a free list and a queue of filled ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::doorbell::Doorbell;

/// Which way a captured frame went, as the pcapng `epb_flags` option records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received from the wire.
    Inbound,
    /// Sent to the wire.
    Outbound,
}

impl Direction {
    /// The direction bits of `epb_flags` (01 inbound, 10 outbound).
    pub(crate) fn epb_flags(self) -> u32 {
        match self {
            Direction::Inbound => 0b01,
            Direction::Outbound => 0b10,
        }
    }
}

/// One captured frame on its way to the file.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) data: Box<[u8]>,
    /// Bytes of `data` holding the frame (less than `orig_len` when it was cut to fit).
    pub(crate) len: usize,
    /// Length of the frame on the wire (VLAN tags included).
    pub(crate) orig_len: u32,
    /// Since the Unix epoch.
    pub(crate) timestamp: Duration,
    pub(crate) direction: Direction,
}

/// The slots, the writer's bell and the closing flag, shared by the relay threads (which fill
/// slots) and the writer (which empties them).
///
/// Every slot exists from the start: a relay thread that finds no free slot drops the frame
/// (and counts it) instead of waiting or allocating, and `filled` has room for every slot, so
/// a push there cannot fail.
#[derive(Debug)]
pub(crate) struct Handoff {
    pub(crate) free: ArrayQueue<Box<Slot>>,
    pub(crate) filled: ArrayQueue<Box<Slot>>,
    pub(crate) bell: Doorbell,
    /// Set when the capture is being closed: the writer drains `filled` and exits, and relay
    /// threads stop handing frames over.
    pub(crate) closed: AtomicBool,
}

impl Handoff {
    /// `slots` slots (at least 1) of `slot_len` bytes each.
    pub(crate) fn new(slots: usize, slot_len: usize) -> Handoff {
        let slots = slots.max(1);
        let free = ArrayQueue::new(slots);
        for _ in 0..slots {
            let slot = Box::new(Slot {
                data: vec![0; slot_len].into_boxed_slice(),
                len: 0,
                orig_len: 0,
                timestamp: Duration::ZERO,
                direction: Direction::Inbound,
            });
            // `free` was made with room for every slot.
            let _ = free.push(slot);
        }
        Handoff {
            free,
            filled: ArrayQueue::new(slots),
            bell: Doorbell::default(),
            closed: AtomicBool::new(false),
        }
    }

    /// Whether the capture is closing or closed.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Hands a filled slot to the writer and rings it if it sleeps.
    #[inline]
    pub(crate) fn hand_over(&self, slot: Box<Slot>) {
        // Room for every slot: this cannot fail, but a slot is never lost if it did.
        if let Err(slot) = self.filled.push(slot) {
            let _ = self.free.push(slot);
        }
        self.bell.ring();
    }
}
