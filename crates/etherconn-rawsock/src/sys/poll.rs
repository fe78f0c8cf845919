//! Waiting: `poll` over borrowed descriptors, and the `eventfd` that wakes a poller.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;
use std::time::Duration;

use super::cvt::{cvt, cvt_size};

/// `POLLIN`.
pub const POLLIN: i16 = libc::POLLIN;
/// `POLLOUT`.
pub const POLLOUT: i16 = libc::POLLOUT;
/// `POLLERR`.
pub const POLLERR: i16 = libc::POLLERR;

/// Milliseconds for `poll`, rounded up so that a short non-zero wait never becomes a busy poll,
/// and clamped to what `poll` accepts.
fn poll_timeout_ms(timeout: Duration) -> libc::c_int {
    if timeout.is_zero() {
        return 0;
    }
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    ms.min(libc::c_int::MAX as u128) as libc::c_int
}

/// One entry of a [`poll`] set, borrowing its descriptor for as long as it lives.
#[repr(transparent)]
#[derive(Debug)]
pub struct PollFd<'fd> {
    raw: libc::pollfd,
    _fd: PhantomData<BorrowedFd<'fd>>,
}

impl<'fd> PollFd<'fd> {
    /// Waits on `fd` for `events` ([`POLLIN`], [`POLLOUT`], ...).
    pub fn new(fd: BorrowedFd<'fd>, events: i16) -> Self {
        PollFd {
            raw: libc::pollfd {
                fd: fd.as_raw_fd(),
                events,
                revents: 0,
            },
            _fd: PhantomData,
        }
    }

    /// The events that were ready after the last [`poll`].
    pub fn revents(&self) -> i16 {
        self.raw.revents
    }
}

/// `poll(2)`: waits until one of `fds` is ready or `timeout` passes (sub-millisecond timeouts
/// round up to 1 ms; zero does not wait). Returns how many entries are ready.
pub fn poll(fds: &mut [PollFd<'_>], timeout: Duration) -> io::Result<usize> {
    let nfds = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: PollFd is repr(transparent) over pollfd, so `fds` is `nfds` valid pollfds, all
    // of whose descriptors are borrowed (open) for the call; the kernel writes only `revents`.
    let n = cvt(unsafe {
        libc::poll(
            fds.as_mut_ptr().cast::<libc::pollfd>(),
            nfds,
            poll_timeout_ms(timeout),
        )
    })?;
    Ok(n as usize)
}

/// A non-blocking `eventfd` used to wake a thread blocked in [`poll`]; closed on drop.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd() takes only integers and returns a new descriptor or -1.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` was just returned by eventfd(), is open and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd { fd })
    }

    /// Adds 1 to the counter, making the descriptor readable.
    pub fn notify(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: the pointer and length describe `one`, 8 readable bytes as eventfd requires.
        let n = cvt_size(unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                ptr::addr_of!(one).cast::<libc::c_void>(),
                8,
            )
        });
        match n {
            Ok(_) => Ok(()),
            // The counter is saturated: it is readable already, which is all a wake needs.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Resets the counter to zero; returns what it held (0 if it was not readable).
    pub fn drain(&self) -> io::Result<u64> {
        let mut value: u64 = 0;
        // SAFETY: the pointer and length describe `value`, 8 writable bytes as eventfd requires.
        let n = cvt_size(unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                ptr::addr_of_mut!(value).cast::<libc::c_void>(),
                8,
            )
        });
        match n {
            Ok(_) => Ok(value),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_and_clamp() {
        assert_eq!(poll_timeout_ms(Duration::ZERO), 0);
        assert_eq!(poll_timeout_ms(Duration::from_nanos(1)), 1);
        assert_eq!(poll_timeout_ms(Duration::from_micros(1500)), 2);
        assert_eq!(poll_timeout_ms(Duration::from_millis(5)), 5);
        assert_eq!(poll_timeout_ms(Duration::MAX), libc::c_int::MAX);
    }

    #[test]
    fn eventfd_wakes_poll_until_drained() {
        let e = EventFd::new().unwrap();
        let mut fds = [PollFd::new(e.as_fd(), POLLIN)];
        assert_eq!(poll(&mut fds, Duration::ZERO).unwrap(), 0);
        e.notify().unwrap();
        e.notify().unwrap();
        let mut fds = [PollFd::new(e.as_fd(), POLLIN)];
        assert_eq!(poll(&mut fds, Duration::from_secs(1)).unwrap(), 1);
        assert_ne!(fds[0].revents() & POLLIN, 0);
        assert_eq!(e.drain().unwrap(), 2);
        assert_eq!(e.drain().unwrap(), 0);
    }
}
