//! [`PacketRelay`]: what every backend implements.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::dispatch::Dispatcher;
use crate::stats::RelayStats;

/// A forwarding engine bound to one interface.
///
/// Implementations are shared (`Arc`) by every conn on the interface; all methods take `&self`
/// and may be called from any thread.
pub trait PacketRelay: Send + Sync + core::fmt::Debug {
    /// The dispatch table received frames go through.
    fn dispatcher(&self) -> &Arc<Dispatcher>;

    /// Sends one whole frame (from the destination MAC), waiting at most `timeout` for room in
    /// the transmit path (`None`: as long as needed). Errors are `io::Error`s; `TimedOut` or
    /// `WouldBlock` when the wait expired.
    fn send(&self, frame: &[u8], timeout: Option<Duration>) -> io::Result<()>;

    /// Sends several frames; returns how many were sent before the first failure (an error
    /// only when none was sent). The default sends them one by one.
    fn send_batch(&self, frames: &[&[u8]], timeout: Option<Duration>) -> io::Result<usize> {
        for (i, f) in frames.iter().enumerate() {
            if let Err(e) = self.send(f, timeout) {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(frames.len())
    }

    /// The largest frame the relay sends or receives, VLAN tags included.
    fn max_frame_len(&self) -> usize {
        self.dispatcher().config().buf_len
    }

    /// A snapshot of the counters.
    fn stats(&self) -> RelayStats {
        self.dispatcher().stats()
    }

    /// Stops the relay: joins its threads, releases the interface, wakes every blocked
    /// reader with an error and, once its threads have ended, closes the capture
    /// ([`Dispatcher::close_capture`]) so that the file is complete. Idempotent.
    ///
    /// A relay with a capture ([`Dispatcher::capture`]) hands it every frame it receives and
    /// every frame it sent ([`Capture::record`](crate::Capture::record)).
    fn stop(&self);
}
