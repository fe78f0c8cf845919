//! [`DropSummary`]: what a relay lost and discarded, told through `tracing` at most once per
//! interval, from counters the relay keeps anyway.
//!
//! Relay threads call [`DropSummary::tick`] now and then (the AF_PACKET and libpcap relays
//! after each poll, a few times a second at most); nothing is done per frame. With no
//! subscriber interested, a tick is one `tracing` interest check (a load and a compare) and
//! nothing else: no clock read, no counter snapshot, no allocation. With one, the first tick
//! after the interval takes a snapshot of the counters (one pass over their stripes) and emits
//! at most two events:
//!
//! - `WARN` "relay dropped frames", with the frames lost for want of room since the last
//!   summary: full conn queues (`rx_queue_full`), no free buffer (`rx_no_buffer`), the
//!   backend's own drops (`rx_backend_dropped`), send errors (`tx_errors`) and frames the
//!   capture had no room for (`capture_dropped`);
//! - `DEBUG` "relay discarded frames": frames dropped by rule (`rx_invalid`, `rx_miss`,
//!   `rx_l4_miss`, `rx_martian`, `rx_group_source`), which a busy link produces all the time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::stats::RelayStats;

/// How often at most a relay summarises its drops.
pub const DROP_SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// Rate-limited drop summaries for one relay; see the module docs.
#[derive(Debug)]
pub struct DropSummary {
    /// When the summary was made, so that intervals are measured from it.
    epoch: Instant,
    /// Milliseconds after `epoch` when the next summary is due.
    next_ms: AtomicU64,
    /// The counters as of the last summary (locked by the one thread that won the interval).
    last: Mutex<RelayStats>,
}

impl Default for DropSummary {
    fn default() -> Self {
        DropSummary {
            epoch: Instant::now(),
            next_ms: AtomicU64::new(0),
            last: Mutex::new(RelayStats::default()),
        }
    }
}

impl DropSummary {
    /// Emits the summary if a subscriber wants it and the interval has passed since the last
    /// one; `stats` is called only then. Several threads may tick: one of them reports.
    #[inline]
    pub fn tick(&self, relay: &str, stats: impl FnOnce() -> RelayStats) {
        if !tracing::enabled!(tracing::Level::WARN) {
            return;
        }
        self.tick_enabled(relay, stats);
    }

    #[cold]
    fn tick_enabled(&self, relay: &str, stats: impl FnOnce() -> RelayStats) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let due = self.next_ms.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let next = now + DROP_SUMMARY_INTERVAL.as_millis() as u64;
        if self
            .next_ms
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return; // another relay thread reports this interval
        }
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        let s = stats();
        let d = |f: fn(&RelayStats) -> u64| f(&s).saturating_sub(f(&last));
        let (queue_full, no_buffer, backend, tx_errors, capture) = (
            d(|s| s.rx_queue_full),
            d(|s| s.rx_no_buffer),
            d(|s| s.rx_backend_dropped),
            d(|s| s.tx_errors),
            d(|s| s.capture_dropped),
        );
        if queue_full + no_buffer + backend + tx_errors + capture > 0 {
            tracing::warn!(
                relay,
                rx_queue_full = queue_full,
                rx_no_buffer = no_buffer,
                rx_backend_dropped = backend,
                tx_errors,
                capture_dropped = capture,
                "relay dropped frames"
            );
        }
        let (invalid, miss, l4_miss, martian, group) = (
            d(|s| s.rx_invalid),
            d(|s| s.rx_miss),
            d(|s| s.rx_l4_miss),
            d(|s| s.rx_martian),
            d(|s| s.rx_group_source),
        );
        if invalid + miss + l4_miss + martian + group > 0 {
            tracing::debug!(
                relay,
                rx_invalid = invalid,
                rx_miss = miss,
                rx_l4_miss = l4_miss,
                rx_martian = martian,
                rx_group_source = group,
                "relay discarded frames"
            );
        }
        *last = s;
    }
}
