//! One queue of the relay: its counters, the send half of its socket (shared by senders
//! behind a mutex of its own) and the thread that owns the receive half.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use etherconn_relay::{Direction, Dispatcher};

use crate::sys::{XskRx, XskTx};

/// Counters of one queue, since the relay started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// The interface queue.
    pub queue: u32,
    /// Frames taken from the receive ring.
    pub rx_frames: u64,
    /// Frames the kernel dropped on their way to the receive ring (ring full, no fill
    /// frame, invalid descriptor), as the socket's `XDP_STATISTICS` report them.
    pub rx_kernel_dropped: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_empty: u64,
    /// Frames put on the send ring.
    pub tx_frames: u64,
}

/// What the relay and the queue's thread share.
#[derive(Debug)]
pub(crate) struct QueueShared {
    pub queue: u32,
    pub rx_frames: AtomicU64,
    pub rx_kernel_dropped: AtomicU64,
    pub rx_fill_empty: AtomicU64,
    pub tx_frames: AtomicU64,
    /// The send half: senders on any thread take this queue's lock for one batch.
    pub tx: Mutex<XskTx>,
}

impl QueueShared {
    pub(crate) fn new(queue: u32, tx: XskTx) -> QueueShared {
        QueueShared {
            queue,
            rx_frames: AtomicU64::new(0),
            rx_kernel_dropped: AtomicU64::new(0),
            rx_fill_empty: AtomicU64::new(0),
            tx_frames: AtomicU64::new(0),
            tx: Mutex::new(tx),
        }
    }

    pub(crate) fn stats(&self) -> QueueStats {
        QueueStats {
            queue: self.queue,
            rx_frames: self.rx_frames.load(Ordering::Relaxed),
            rx_kernel_dropped: self.rx_kernel_dropped.load(Ordering::Relaxed),
            rx_fill_empty: self.rx_fill_empty.load(Ordering::Relaxed),
            tx_frames: self.tx_frames.load(Ordering::Relaxed),
        }
    }
}

/// How a queue thread takes its frames.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    /// Frames taken from the receive ring at a time.
    pub batch: usize,
    /// Yields before sleeping in `poll` on an empty ring.
    pub idle_spins: u32,
    /// Longest sleep in `poll` before the stop check, in milliseconds.
    pub idle_poll_ms: i32,
}

/// How often the kernel's socket counters are folded into the relay's.
const STATS_EVERY: Duration = Duration::from_millis(200);

/// The queue's thread: takes received frames in batches of up to `pace.batch` and delivers them
/// through the dispatcher, until `stopped`. Frames are copied into the dispatcher's buffers,
/// so each UMEM frame goes straight back to the fill ring. An empty ring is looked at again
/// after a `yield` up to `pace.idle_spins` times before the thread sleeps in `poll`. `ifname`
/// names the relay in its drop summaries.
pub(crate) fn engine(
    mut rx: XskRx,
    q: &QueueShared,
    d: &Dispatcher,
    stopped: &AtomicBool,
    pace: Pace,
    ifname: &str,
) {
    let Pace {
        batch,
        idle_spins,
        idle_poll_ms,
    } = pace;
    let mut delivery = d.delivery();
    let mut empty = 0u32;
    let mut last_stats = Instant::now();
    let mut reported = (0u64, 0u64);
    loop {
        if stopped.load(Ordering::Relaxed) || d.is_stopped() {
            break;
        }
        // No metadata travels with an AF_XDP frame: the UDP checksum is verified (unless the
        // dispatcher is configured not to), whoever sent it.
        // Looked up once per batch: without a capture, one untaken branch per frame. An
        // AF_XDP frame carries no time of its own: the batch's is taken once, when there is
        // a capture.
        let capture = d.capture();
        let now = capture.and_then(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
        });
        let n = rx.receive(batch, |frame| {
            if let Some(cap) = capture {
                cap.record(Direction::Inbound, frame, None, now);
            }
            delivery.push(frame, None, false);
        });
        delivery.flush();
        if n > 0 {
            q.rx_frames.fetch_add(n as u64, Ordering::Relaxed);
            empty = 0;
        } else if empty < idle_spins {
            // Briefly idle: give the CPU to whoever wants it (a reader of this relay's conns,
            // often) and look again, rather than sleep in poll at once: each sleep costs a
            // wake-up from the kernel's receive path (on the sending CPU, in a veth's case)
            // and two context switches here.
            empty += 1;
            std::thread::yield_now();
        } else {
            empty = 0;
            // Idle: sleep in poll until frames come or the stop check is due.
            let _ = rx.wait(idle_poll_ms);
        }
        if last_stats.elapsed() >= STATS_EVERY {
            last_stats = Instant::now();
            if let Ok((dropped, fill_empty)) = rx.kernel_drops() {
                let new = dropped.saturating_sub(reported.0);
                q.rx_kernel_dropped.store(dropped, Ordering::Relaxed);
                q.rx_fill_empty.store(fill_empty, Ordering::Relaxed);
                d.counters()
                    .rx_backend_dropped
                    .fetch_add(new, Ordering::Relaxed);
                reported = (dropped, fill_empty);
            }
            // At most once a second (whichever queue thread comes first), and only for a
            // subscriber that listens.
            d.summarise_drops(ifname);
        }
    }
}
