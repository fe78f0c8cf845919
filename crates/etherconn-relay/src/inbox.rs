//! One receive queue for many conns: the relay queues every frame of an attached conn on the
//! inbox, tagged with the conn's token, instead of on the conn's own queue.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::error::RelayError;
use crate::locks::lock;
use crate::queue::hooks::{InboxHook, InboxShared};
use crate::queue::RxFrame;
use crate::ready::Watchable;

/// Default capacity of an [`Inbox`], in frames.
pub const DEFAULT_INBOX_CAPACITY: usize = 4096;

/// What [`Inbox::recv`] hands over.
#[derive(Debug)]
pub enum Mail {
    /// A frame for the conn attached under `token`.
    Frame {
        /// The conn's token.
        token: usize,
        /// The frame, classified (`frame.info`); for a UDP datagram, `frame.info.udp()` has the
        /// addresses and the payload's span.
        frame: RxFrame,
    },
    /// The conn attached under `token` closed (dropped, or its relay stopped): it gets no more
    /// frames. Comes after every frame the conn got before it closed.
    Closed {
        /// The conn's token.
        token: usize,
    },
}

impl Mail {
    /// The token of the conn this is about.
    pub fn token(&self) -> usize {
        match self {
            Mail::Frame { token, .. } | Mail::Closed { token } => *token,
        }
    }
}

/// One receive queue that many conns deliver into, each frame tagged with the token its conn
/// was attached under: the completion queue of this library.
///
/// A [`ReadySet`](crate::ReadySet) tells a thread which conns have frames, and the thread then
/// reads each conn's own queue; with thousands of conns receiving, that is several cache misses
/// per frame on each side (the conn, its queue's head, tail and slot), on lines the relay and
/// the reader pass back and forth. An inbox is one ring both sides keep hot: the relay looks up
/// the conn and queues the frame here; the reader takes frames of every conn in arrival order.
/// Over veth with 100,000 UDP endpoints receiving, see docs/scale.md for what that changes.
///
/// A conn attached to an inbox stays attached for its life (until dropped). Its frames,
/// classified once by the relay, come out of [`recv`](Self::recv) as they arrived, including
/// frames a conn's own read would filter: an `RUdpConn`'s `recv_from` passes only UDP
/// datagrams for its address (unless `accept_any`), an inbox hands over everything its
/// `EtherConn` receives. Reading the conn itself fails with `InvalidInput` (what was queued on
/// it moves to the inbox at the attach). A full inbox drops the frame, and the relay counts it
/// in `rx_queue_full` ([`dropped`](Self::dropped) counts them too). Once the inbox is dropped,
/// its conns' frames are dropped and counted by the relay as `rx_miss`.
///
/// ```
/// use std::time::Duration;
/// use etherconn_relay::{DispatcherConfig, Inbox, LoopbackRelay, Mail};
/// use etherconn_core::wire::{EtherType, MacAddr};
/// use etherconn_relay::{EtherConn, EtherConnConfig};
///
/// let relay = LoopbackRelay::new(DispatcherConfig::default());
/// let cfg = EtherConnConfig::default().ethertypes(&[EtherType(0x88b5)]);
/// let conns: Vec<EtherConn> = (1..=100u64)
///     .map(|i| EtherConn::new(relay.clone(), MacAddr([2, 0, 0, 0, 0, 0]).offset(i), &[], cfg.clone()))
///     .collect::<Result<_, _>>()?;
/// let inbox = Inbox::new();
/// for (i, c) in conns.iter().enumerate() {
///     inbox.attach(c, i)?; // the token is the index here
/// }
///
/// // Conn 0 sends to conns 7 and 42.
/// for to in [7, 42] {
///     conns[0].send_to(b"hello", EtherType(0x88b5), conns[to].local_mac())?;
/// }
/// let mut mail = Vec::with_capacity(64);
/// let n = inbox.recv(&mut mail, 64, Some(Duration::from_secs(1)))?;
/// assert_eq!(n, 2);
/// let mut got = Vec::new();
/// for m in &mail {
///     if let Mail::Frame { token, frame } = m {
///         assert_eq!(&frame.payload()[..5], b"hello");
///         got.push(*token);
///     }
/// }
/// assert_eq!(got, [7, 42]);
///
/// // Dropping a conn is reported after its frames.
/// conns[0].send_to(b"bye", EtherType(0x88b5), conns[9].local_mac())?;
/// drop(conns);
/// inbox.recv(&mut mail, 64, Some(Duration::from_secs(1)))?;
/// assert!(matches!(mail[0], Mail::Frame { token: 9, .. }));
/// assert!(mail[1..].iter().all(|m| matches!(m, Mail::Closed { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Inbox {
    shared: Arc<InboxShared>,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        // Attached conns keep the shared part alive: refuse their frames from now on and give
        // back the buffers of those waiting.
        self.shared.gone.store(true, Ordering::SeqCst);
        while self.shared.frames.pop().is_some() {}
    }
}

impl Default for Inbox {
    fn default() -> Inbox {
        Inbox::new()
    }
}

impl Inbox {
    /// An inbox holding up to [`DEFAULT_INBOX_CAPACITY`] frames.
    pub fn new() -> Inbox {
        Inbox::with_capacity(DEFAULT_INBOX_CAPACITY)
    }

    /// An inbox holding up to `capacity` frames (at least 1), allocated now.
    pub fn with_capacity(capacity: usize) -> Inbox {
        Inbox {
            shared: Arc::new(InboxShared::new(capacity)),
        }
    }

    /// How many frames it holds at most.
    pub fn capacity(&self) -> usize {
        self.shared.frames.capacity()
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.shared.frames.len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.shared.frames.is_empty()
    }

    /// Frames dropped because the inbox was full, since it was made. (The relay also counts
    /// those it was delivering in `rx_queue_full`; this count includes the frames a conn had
    /// queued that found no room when they were moved here at `attach`.)
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// From now on, queues `conn`'s frames here under `token` (any number the caller picks;
    /// several conns may share one), starting with those already queued on the conn, which
    /// are moved here. Fails with [`RelayError::InInbox`] when the conn is already attached to
    /// an inbox. A conn that is already closed is reported closed at once.
    ///
    /// The frames moved at the attach may come after a few the relay delivered while they were
    /// being moved; from then on, a conn's frames come in the order the relay received them.
    pub fn attach(&self, conn: &(impl Watchable + ?Sized), token: usize) -> Result<(), RelayError> {
        let hook = InboxHook::new(Arc::clone(&self.shared), token);
        conn.rx_queue().set_inbox(hook)
    }

    /// Replaces the contents of `mail` with up to `max` frames and close reports, waiting up to
    /// `timeout` (`None`: forever; zero: not at all) for the first; returns how many (0 when
    /// the timeout expired or `max` is 0). Frames come in the order the relay queued them; a
    /// conn's close report comes after its frames.
    ///
    /// Several threads may read one inbox; each frame goes to one of them. The order above then
    /// holds for what each one gets, not across them: one may return a conn's close report
    /// while another still holds that conn's last frames.
    ///
    /// `mail` only grows up to `max`: give it that capacity once and receiving allocates
    /// nothing.
    pub fn recv(
        &self,
        mail: &mut Vec<Mail>,
        max: usize,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        mail.clear();
        if max == 0 {
            return Ok(0);
        }
        // A timeout too long to add to the clock is no timeout.
        let deadline = crate::timeouts::deadline(timeout);
        let shared = &*self.shared;
        loop {
            // The close reports made before the frames are taken: a conn's frames queued
            // before its report are then in the ring, and handed over first. (Reports made
            // while the ring is read wait for the next round: their conns' last frames may
            // come after the point we read to.) The flag is looked at before it is swapped, so
            // that a round with no report writes nothing the relay reads.
            let reported = if shared.has_closed.load(Ordering::SeqCst)
                && shared.has_closed.swap(false, Ordering::SeqCst)
            {
                lock(&shared.closed).len()
            } else {
                0
            };
            while mail.len() < max {
                match shared.frames.pop() {
                    Some((token, frame)) => mail.push(Mail::Frame { token, frame }),
                    None => break,
                }
            }
            if reported > 0 {
                let mut closed = lock(&shared.closed);
                // Only once the ring ran dry (room left in `mail`).
                // (Another reader may have taken some of them meanwhile.)
                let take = reported.min(max - mail.len()).min(closed.len());
                mail.extend(closed.drain(..take).map(|token| Mail::Closed { token }));
                if !closed.is_empty() {
                    shared.has_closed.store(true, Ordering::SeqCst);
                }
            }
            if !mail.is_empty() {
                return Ok(mail.len());
            }
            if !shared.bell.sleep_until(|| shared.has_news(), deadline) {
                return Ok(0);
            }
        }
    }
}
