//! CPU time of this process's threads, from `/proc`: which thread used the CPUs during a
//! measurement window (the sender, the reader, each receive thread of the relay).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// One thread's CPU clock (its `schedstat` file) under the name a report gives it.
#[derive(Debug, Clone)]
pub struct ThreadClock {
    /// `sender`, `reader`, `etherconn-rx0`, ...
    pub name: String,
    path: PathBuf,
}

impl ThreadClock {
    /// The CPU time the thread has run so far; `None` once it has ended.
    pub fn read(&self) -> Option<Duration> {
        schedstat(&self.path)
    }
}

/// CPU time of the thread whose `schedstat` file is `path` (its first field, in ns).
pub fn schedstat(path: impl AsRef<Path>) -> Option<Duration> {
    let s = std::fs::read_to_string(path).ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

/// The calling thread's clock, named `name`.
pub fn this_thread(name: &str) -> Option<ThreadClock> {
    // `/proc/thread-self` is a link to `<pid>/task/<tid>`: resolve it, or the clock would
    // follow whichever thread reads it.
    let task = std::fs::read_link("/proc/thread-self").ok()?;
    Some(ThreadClock {
        name: name.to_owned(),
        path: Path::new("/proc").join(task).join("schedstat"),
    })
}

/// The clocks of this process's relay receive threads (`etherconn-rx*`) in the calling
/// thread's network namespace, by thread name: the receiving relay's threads, not the
/// sending relay's (which run in the other namespace). A new thread names itself once it
/// runs, so this waits (up to 200 ms) until `expected` of them have their names.
pub fn relay_threads_here(expected: usize) -> Vec<ThreadClock> {
    let deadline = std::time::Instant::now() + Duration::from_millis(200);
    loop {
        let found = named_relay_threads_here();
        if found.len() >= expected || std::time::Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn named_relay_threads_here() -> Vec<ThreadClock> {
    let Ok(own_ns) = std::fs::read_link("/proc/thread-self/ns/net") else {
        return Vec::new();
    };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut clocks: Vec<ThreadClock> = tasks
        .filter_map(|t| {
            let p = t.ok()?.path();
            let comm = std::fs::read_to_string(p.join("comm")).ok()?;
            let comm = comm.trim();
            let same_ns = std::fs::read_link(p.join("ns/net")).ok()? == own_ns;
            (comm.starts_with("etherconn-rx") && same_ns).then(|| ThreadClock {
                name: comm.to_owned(),
                path: p.join("schedstat"),
            })
        })
        .collect();
    clocks.sort_by(|a, b| a.name.cmp(&b.name));
    clocks
}

/// The clocks of the kernel threads that do receive work: the NAPI threads `napi_pids` (the
/// testbed's, in threaded mode: `Testbed::napi_threads`) and each CPU's `ksoftirqd/N`
/// (softirq work deferred from interrupt exit, whoever it is for). Softirq work done on the
/// way out of a system call is not here: it counts as the calling thread's time (the
/// sender's, in default mode).
pub fn kernel_rx_threads(napi_pids: &[u32]) -> Vec<ThreadClock> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut clocks: Vec<ThreadClock> = procs
        .filter_map(|e| {
            let p = e.ok()?.path();
            let pid = p.file_name()?.to_str()?.parse::<u32>().ok()?;
            let comm = std::fs::read_to_string(p.join("comm")).ok()?;
            let comm = comm.trim();
            (napi_pids.contains(&pid) || comm.starts_with("ksoftirqd/")).then(|| ThreadClock {
                name: comm.to_owned(),
                path: p.join("schedstat"),
            })
        })
        .collect();
    clocks.sort_by(|a, b| a.name.cmp(&b.name));
    clocks
}

/// Each clock's share of one CPU between two readings `window` apart, in percent (rounded to
/// one decimal); clocks that could not be read twice are left out.
pub fn usage_pct(
    clocks: &[ThreadClock],
    before: &[Option<Duration>],
    after: &[Option<Duration>],
    window: Duration,
) -> Vec<(String, f64)> {
    let secs = window.as_secs_f64().max(1e-9);
    clocks
        .iter()
        .zip(before.iter().zip(after))
        .filter_map(|(c, (b, a))| {
            let used = a.as_ref()?.checked_sub(*b.as_ref()?)?.as_secs_f64();
            Some((c.name.clone(), (1000.0 * used / secs).round() / 10.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_threads_clock_advances_with_work() {
        let clock = this_thread("me").expect("schedstat");
        let before = clock.read().expect("read");
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let after = clock.read().expect("read");
        let pct = usage_pct(&[clock], &[Some(before)], &[Some(after)], t.elapsed());
        assert!(pct[0].1 > 10.0, "{pct:?}");
    }
}
