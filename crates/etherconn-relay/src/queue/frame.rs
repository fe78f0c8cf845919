//! [`RxFrame`], what a receive queue holds, and why a push to a queue can fail.

use std::boxed::Box;

use crate::pool::{FrameSlot, PooledBuf};

/// A received frame, as it waits on a conn's queue: a pooled buffer holding the bytes and the
/// classification the relay made once for every consumer. Two pointers wide, so queues are
/// small; it dereferences to its [`FrameSlot`] (`rx.len`, `rx.info`).
#[derive(Debug)]
pub struct RxFrame {
    buf: PooledBuf,
}

impl RxFrame {
    /// Wraps a buffer whose slot holds a frame's length and classification.
    pub fn new(buf: PooledBuf) -> RxFrame {
        RxFrame { buf }
    }

    /// The whole frame, from the destination MAC.
    pub fn frame(&self) -> &[u8] {
        let s = self.buf.slot();
        &s.data()[..s.len]
    }

    /// The Ethernet payload after the last VLAN tag.
    pub fn payload(&self) -> &[u8] {
        let s = self.buf.slot();
        &s.data()[s.info.payload().range()]
    }

    /// Gives the buffer back (to reuse it, say).
    pub fn into_buf(self) -> PooledBuf {
        self.buf
    }

    /// The boxed slot, for a small ring's atomic cell (see `ring`).
    pub(crate) fn into_slot(self) -> Option<Box<FrameSlot>> {
        self.buf.into_slot()
    }

    /// A frame from a slot [`RxFrame::into_slot`] took out.
    pub(crate) fn from_slot(slot: Box<FrameSlot>) -> RxFrame {
        RxFrame::new(PooledBuf::from_slot(slot))
    }
}

impl core::ops::Deref for RxFrame {
    type Target = FrameSlot;
    fn deref(&self) -> &FrameSlot {
        self.buf.slot()
    }
}

/// Why a receive queue push failed.
#[derive(Debug)]
pub(crate) enum PushError {
    /// The queue is full; the frame was dropped.
    Full,
    /// The conn is closed.
    Closed,
    /// The queue takes only what a host would take and the frame is a martian UDP datagram
    /// (see [`RxQueue::set_drop_martians`](crate::RxQueue::set_drop_martians)); it was dropped.
    Martian,
}
