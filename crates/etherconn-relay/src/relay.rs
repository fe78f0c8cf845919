//! [`PacketRelay`]: what every backend implements.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::wire::{EtherType, VlanTag};

use crate::dispatch::Dispatcher;
use crate::link::{SizeLimit, DEFAULT_MTU};
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

    /// The largest frame the relay's buffers hold, VLAN tags included
    /// (`DispatcherConfig::buf_len`). The link may take less: see [`mtu`](Self::mtu) and
    /// [`size_limit`](Self::size_limit).
    fn max_frame_len(&self) -> usize {
        self.dispatcher().config().buf_len
    }

    /// The MTU of the relay's link: the largest packet after the Ethernet header (one VLAN tag
    /// rides on top of it). The AF_PACKET relay reads its interface's MTU when it is made; the
    /// default is [`DEFAULT_MTU`], standard Ethernet's 1500 bytes.
    fn mtu(&self) -> usize {
        DEFAULT_MTU
    }

    /// The largest payload one frame with the VLAN stack `vlans` (outermost first) carries on
    /// this relay, bounded by the link's MTU and the relay's buffers: what senders check a
    /// payload against before building a frame.
    fn size_limit(&self, vlans: &[VlanTag]) -> SizeLimit {
        SizeLimit::new(self.mtu(), vlans, self.max_frame_len())
    }

    /// Whether frames of `ethertype` can reach the dispatcher at all (a backend's kernel filter
    /// may drop them first). `EtherConn::new` refuses to register an EtherType the relay does
    /// not receive. The default, for relays that filter nothing, is `true`.
    fn receives(&self, ethertype: EtherType) -> bool {
        let _ = ethertype;
        true
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
