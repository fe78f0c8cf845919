//! Read/write timeouts and non-blocking mode, as atomics so that every call takes `&self`:
//! the `UdpSocket`-shaped settings that `EtherConn` and the UDP conns share.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The moment a wait of `timeout` ends (`None`: it never does). A timeout too long to add to
/// the clock is no timeout.
pub fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Stored for "no timeout".
const NONE: u64 = u64::MAX;

fn encode(t: Option<Duration>) -> io::Result<u64> {
    match t {
        Some(d) if d.is_zero() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        )),
        Some(d) => Ok(u64::try_from(d.as_nanos())
            .unwrap_or(NONE - 1)
            .min(NONE - 1)),
        None => Ok(NONE),
    }
}

fn decode(v: u64) -> Option<Duration> {
    (v != NONE).then(|| Duration::from_nanos(v))
}

/// The `UdpSocket`-shaped settings of one conn.
#[derive(Debug)]
pub struct Timeouts {
    read: AtomicU64,
    write: AtomicU64,
    nonblocking: AtomicBool,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            read: AtomicU64::new(NONE),
            write: AtomicU64::new(NONE),
            nonblocking: AtomicBool::new(false),
        }
    }
}

impl Timeouts {
    /// Sets the read timeout; `Some(0)` is an error, as for `UdpSocket`.
    pub fn set_read(&self, t: Option<Duration>) -> io::Result<()> {
        self.read.store(encode(t)?, Ordering::Relaxed);
        Ok(())
    }

    /// Sets the write timeout; `Some(0)` is an error.
    pub fn set_write(&self, t: Option<Duration>) -> io::Result<()> {
        self.write.store(encode(t)?, Ordering::Relaxed);
        Ok(())
    }

    /// The read timeout.
    pub fn read(&self) -> Option<Duration> {
        decode(self.read.load(Ordering::Relaxed))
    }

    /// The write timeout.
    pub fn write(&self) -> Option<Duration> {
        decode(self.write.load(Ordering::Relaxed))
    }

    /// Sets non-blocking mode.
    pub fn set_nonblocking(&self, on: bool) {
        self.nonblocking.store(on, Ordering::Relaxed);
    }

    /// Whether non-blocking mode is on.
    pub fn nonblocking(&self) -> bool {
        self.nonblocking.load(Ordering::Relaxed)
    }

    /// How long a receive may wait: zero when non-blocking, else the read timeout.
    pub fn read_wait(&self) -> Option<Duration> {
        if self.nonblocking() {
            Some(Duration::ZERO)
        } else {
            self.read()
        }
    }

    /// How long a send may wait for room in the transmit path.
    pub fn write_wait(&self) -> Option<Duration> {
        if self.nonblocking() {
            Some(Duration::ZERO)
        } else {
            self.write()
        }
    }
}
