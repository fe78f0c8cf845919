//! What `/proc` says about this process and its threads: the resident set and a thread's CPU
//! time, read there because `std` has neither.

use std::time::Duration;

use crate::taskstat::schedstat;

/// The process's resident set (`VmRSS`), when `/proc` has it.
pub fn rss_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time the calling thread has run (`/proc/thread-self/schedstat`), when available.
pub fn thread_cpu() -> Option<Duration> {
    schedstat("/proc/thread-self/schedstat")
}

/// The `schedstat` file of this process's relay receive thread (`etherconn-rx0`), for
/// [`schedstat`]: the relay's CPU time per frame is the figure that says where the time goes.
pub fn relay_thread_stat() -> Option<String> {
    for t in std::fs::read_dir("/proc/self/task").ok()? {
        let p = t.ok()?.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim() == "etherconn-rx0" {
            return Some(p.join("schedstat").to_string_lossy().into_owned());
        }
    }
    None
}
