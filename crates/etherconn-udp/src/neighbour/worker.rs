//! The responder's one thread: answers the frames its queue receives and sends the requests
//! that are due, for every endpoint of the relay.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::shared::Shared;

/// Longest sleep between two looks at the resolutions due (and ticks of the send path's
/// clock).
const TICK: Duration = Duration::from_millis(20);

/// Most frames handled in a row before the retries due are sent.
const DRAIN: usize = 1024;

/// Runs until the relay stops or the handle is dropped (the queue is closed either way).
pub(crate) fn run(shared: Arc<Shared>) {
    let mut resend = Vec::new();
    let mut failed = Vec::new();
    let mut next_retry = 0u64;
    loop {
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        match shared.entry.queue.pop(Some(TICK)) {
            Ok(rx) => {
                shared.handle(&rx);
                // The frames already queued before any retry is judged due: an answer that
                // waits in the queue must not count as missing.
                for _ in 0..DRAIN {
                    match shared.entry.queue.pop(Some(Duration::ZERO)) {
                        Ok(rx) => shared.handle(&rx),
                        Err(_) => break,
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) => {}
            Err(_) => return,
        }
        let now = shared.cache.clock.tick();
        if now >= next_retry {
            shared.retry(now, &mut resend, &mut failed);
            next_retry = now + 10;
        }
    }
}
