//! The two system calls `std` does not offer: all of the crate's `unsafe` is here.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Moves the calling thread (only it: network namespace membership is per thread) into the
/// network namespace that `ns` (an open `/run/netns/<name>` file) refers to.
pub(crate) fn setns_net(ns: &File) -> io::Result<()> {
    // SAFETY: `ns` is borrowed for the whole call, so its descriptor is open and ours; setns
    // reads only the descriptor and the flag and touches no memory of this process. The kernel
    // rejects a descriptor that is not a network namespace with EINVAL.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends SIGKILL to `pid`; a process that is already gone is not an error.
pub(crate) fn kill(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill takes two integers and touches no memory; `pid` is positive, so it names one
    // process, never a process group or "every process we may signal".
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    let err = io::Error::last_os_error();
    if rc == 0 || err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}
