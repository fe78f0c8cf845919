//! What every backend's send path shares: the refusal once the relay has stopped, the deadline
//! and the wait on a full transmit path, the counting and capture of what was sent, and a frame
//! past the link's MTU said in the link's terms. For the crates that implement
//! [`PacketRelay`](crate::PacketRelay); an application has no use for it.

use std::fmt::Display;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::capture::{Capture, Direction};
use crate::dispatch::Dispatcher;
use crate::stats::RelayCounters;

/// The longest a sender sleeps between two tries on a full transmit path: a full device queue
/// (`ENOBUFS`) does not make a socket unwritable, so there is nothing better to wait on.
pub const RETRY_WAIT: Duration = Duration::from_millis(1);

/// The error of a send on a stopped relay (`NotConnected`).
pub fn stopped_error() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the relay has stopped")
}

/// Refuses a send once `stopped` is set, counting it as a send error.
pub fn refuse_if_stopped(stopped: &AtomicBool, dispatcher: &Dispatcher) -> io::Result<()> {
    if stopped.load(Ordering::Relaxed) {
        RelayCounters::bump(&dispatcher.counters().tx_errors);
        return Err(stopped_error());
    }
    Ok(())
}

/// How long to sleep before trying again a send that found no room: at most [`RETRY_WAIT`],
/// never past `deadline`, and `WouldBlock` ("transmit queue full") once it has passed.
pub fn retry_wait(deadline: Option<Instant>) -> io::Result<Duration> {
    let Some(d) = deadline else {
        return Ok(RETRY_WAIT);
    };
    let now = Instant::now();
    if now >= d {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "transmit queue full",
        ));
    }
    Ok((d - now).min(RETRY_WAIT))
}

/// Counts the outcome of sending `frame` (`tx` or `tx_errors`) and hands a sent frame to the
/// relay's capture, if it has one; returns `sent`.
pub fn account_send(dispatcher: &Dispatcher, frame: &[u8], sent: io::Result<()>) -> io::Result<()> {
    let c = dispatcher.counters();
    match &sent {
        Ok(()) => {
            RelayCounters::bump(&c.tx);
            if let Some(cap) = dispatcher.capture() {
                cap.record(Direction::Outbound, frame, None, None);
            }
        }
        Err(_) => RelayCounters::bump(&c.tx_errors),
    }
    sent
}

/// Hands frames just sent to the capture, with one time for them all.
pub fn record_sent(capture: &Capture, frames: &[&[u8]]) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok();
    for f in frames {
        capture.record(Direction::Outbound, f, None, now);
    }
}

/// A frame of `len` bytes past the MTU of `ifname`, said in the link's terms (`InvalidInput`),
/// with `cause` (the kernel's words, where it refused the frame) at the end.
pub fn frame_too_large(
    len: usize,
    mtu: usize,
    ifname: &str,
    cause: Option<&dyn Display>,
) -> io::Error {
    let cause = cause.map(|c| format!(": {c}")).unwrap_or_default();
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "a {len}-byte frame does not fit the {mtu}-byte MTU of {ifname} (at most {} bytes, {} \
             behind an outer 802.1Q tag; the MTU as read when the relay was made){cause}",
            mtu + 14,
            mtu + 18
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_wait_is_bounded_by_the_deadline() {
        assert_eq!(retry_wait(None).unwrap(), RETRY_WAIT);
        let far = Instant::now() + Duration::from_secs(60);
        assert_eq!(retry_wait(Some(far)).unwrap(), RETRY_WAIT);
        let near = Instant::now() + Duration::from_micros(300);
        assert!(retry_wait(Some(near)).unwrap() <= Duration::from_micros(300));
        let e = retry_wait(Some(Instant::now())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(e.to_string(), "transmit queue full");
    }

    #[test]
    fn a_frame_past_the_mtu_is_said_in_the_links_terms() {
        let e = frame_too_large(1419, 1400, "veth0", None);
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            e.to_string(),
            "a 1419-byte frame does not fit the 1400-byte MTU of veth0 (at most 1414 bytes, 1418 \
             behind an outer 802.1Q tag; the MTU as read when the relay was made)"
        );
        let e = frame_too_large(1419, 1400, "veth0", Some(&"Message too long"));
        assert!(
            e.to_string().ends_with("was made): Message too long"),
            "{e}"
        );
        assert_eq!(stopped_error().kind(), io::ErrorKind::NotConnected);
    }
}
