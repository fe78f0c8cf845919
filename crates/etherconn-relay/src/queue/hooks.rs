//! What a [`ReadySet`](crate::ReadySet) and an [`Inbox`](crate::Inbox) leave on a receive
//! queue for its pushes to call: the queue owns these, and the set and the inbox build on them,
//! so the queue needs neither of them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use crossbeam_queue::ArrayQueue;

use super::frame::{PushError, RxFrame};
use crate::doorbell::Doorbell;
use crate::locks::lock;
use crate::wake::{defer_listing, defer_ring, ReadyList};

/// What a watched queue holds of its set: where to list its token. Listing happens at most
/// once per arming (the queue's `armed` flag is swapped off by whoever lists).
#[derive(Debug)]
pub(crate) struct ReadyHook {
    list: Arc<ReadyList>,
    token: usize,
}

impl ReadyHook {
    /// A hook listing `token` on `list`.
    pub(crate) fn new(list: Arc<ReadyList>, token: usize) -> ReadyHook {
        ReadyHook { list, token }
    }

    /// Lists the token: at the end of the delivery batch under way on this thread, if any, or
    /// now.
    pub(crate) fn list(&self) {
        if !defer_listing(&self.list, self.token) {
            self.list.list(self.token);
            self.list.wake();
        }
    }

    /// Whether this hook lists `token` on `list`.
    pub(crate) fn is(&self, list: &Arc<ReadyList>, token: usize) -> bool {
        Arc::ptr_eq(&self.list, list) && self.token == token
    }
}

/// What an `Inbox` and the queues attached to it share.
#[derive(Debug)]
pub(crate) struct InboxShared {
    pub(crate) frames: ArrayQueue<(usize, RxFrame)>,
    /// Tokens of attached conns that closed, not yet handed over.
    pub(crate) closed: Mutex<Vec<usize>>,
    pub(crate) has_closed: AtomicBool,
    /// Shared with the relay threads that defer ringing it to the end of their batch.
    pub(crate) bell: Arc<Doorbell>,
    /// Frames refused for want of room.
    pub(crate) dropped: AtomicU64,
    /// The `Inbox` was dropped: attached conns' frames are refused (counted by the relay as
    /// misses), not kept for nobody.
    pub(crate) gone: AtomicBool,
}

impl InboxShared {
    /// The shared part of an inbox holding up to `capacity` frames (at least 1).
    pub(crate) fn new(capacity: usize) -> InboxShared {
        InboxShared {
            frames: ArrayQueue::new(capacity.max(1)),
            closed: Mutex::new(Vec::new()),
            has_closed: AtomicBool::new(false),
            bell: Arc::new(Doorbell::default()),
            dropped: AtomicU64::new(0),
            gone: AtomicBool::new(false),
        }
    }

    /// Whether a frame or a close report waits (`SeqCst` loads, as the bell needs).
    pub(crate) fn has_news(&self) -> bool {
        !self.frames.is_empty() || self.has_closed.load(Ordering::SeqCst)
    }
}

/// What an attached queue holds of its inbox.
#[derive(Debug)]
pub(crate) struct InboxHook {
    shared: Arc<InboxShared>,
    token: usize,
    /// The conn's close was reported (a close and an attach racing may both try).
    close_reported: AtomicBool,
}

impl InboxHook {
    /// A hook queueing frames on `shared` under `token`.
    pub(crate) fn new(shared: Arc<InboxShared>, token: usize) -> InboxHook {
        InboxHook {
            shared,
            token,
            close_reported: AtomicBool::new(false),
        }
    }

    /// Queues `frame` under the conn's token; a full inbox drops it.
    #[inline]
    pub(crate) fn push(&self, frame: RxFrame) -> Result<(), PushError> {
        let shared = &*self.shared;
        if shared.gone.load(Ordering::Relaxed) {
            return Err(PushError::Closed);
        }
        if shared.frames.push((self.token, frame)).is_err() {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(PushError::Full);
        }
        if shared.gone.load(Ordering::SeqCst) {
            // Dropped meanwhile: free what its drain may have missed.
            while shared.frames.pop().is_some() {}
        }
        // Rung at the end of the relay's batch (like a `ReadySet`'s listing), so that a reader
        // gets a batch's frames at once rather than being woken for the first.
        let bell = &self.shared.bell;
        if bell.wanted() && !defer_ring(bell) {
            bell.ring();
        }
        Ok(())
    }

    /// Reports that the conn closed, once.
    pub(crate) fn report_close(&self) {
        if self.close_reported.swap(true, Ordering::SeqCst) {
            return;
        }
        lock(&self.shared.closed).push(self.token);
        self.shared.has_closed.store(true, Ordering::SeqCst);
        self.shared.bell.ring();
    }
}
