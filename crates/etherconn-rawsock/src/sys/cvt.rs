//! `-1` plus `errno` into `io::Error`: the one conversion every call wrapper shares.

use std::io;

/// The result of a call that returns -1 and sets `errno` on failure.
pub(super) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// [`cvt`] for calls that return a byte count.
pub(super) fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}
