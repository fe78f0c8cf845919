//! Named network namespaces (`ip netns`) that remove themselves when dropped.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::panic;
use std::path::{Path, PathBuf};
use std::process::{self, Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{cmd, sys};

/// Where `ip netns` keeps the files that name namespaces; iproute2 uses the second, which is a
/// symlink to the first on current distributions.
const RUN_DIRS: [&str; 2] = ["/run/netns", "/var/run/netns"];

/// How often `Drop` retries `ip netns delete` before giving up with a warning.
const DELETE_ATTEMPTS: u32 = 5;

/// Process-wide counter that makes namespace and interface names unique within this process.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A fresh number for a name, never repeated in this process (until it wraps at 2^32).
pub(crate) fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The start of every namespace name that [`Netns::new`]`(prefix)` creates in this process:
/// `prefix`, the process id and `-`.
///
/// Pass it to [`leftover_namespaces`] to check for leaks of this process only, unaffected by
/// other test binaries running at the same time.
pub fn process_prefix(prefix: &str) -> String {
    format!("{prefix}{}-", process::id())
}

/// Names of existing namespaces (as `ip netns list` shows them) that start with `prefix`.
///
/// Tests call it after dropping their [`Netns`] or [`Testbed`](crate::Testbed) to assert that
/// nothing leaked. If `ip` cannot be run, the namespace directory is read instead, so a broken
/// tool never reads as "nothing left".
pub fn leftover_namespaces(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = match cmd::ip(&["netns", "list"]) {
        // Lines are `name` or `name (id: N)`.
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .collect(),
        Err(_) => RUN_DIRS
            .iter()
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .collect(),
    };
    names.retain(|name| name.starts_with(prefix));
    names.sort();
    names.dedup();
    names
}

/// Deletes namespaces named `prefix` + pid + `-...` (as [`Netns::new`] names them) whose
/// process no longer exists, e.g. left behind by a test binary killed with SIGKILL, and returns
/// their names.
///
/// Namespaces of live processes are never touched. Processes still running inside a stale
/// namespace are killed first, as in `Drop`.
pub fn remove_stale_namespaces(prefix: &str) -> Vec<String> {
    leftover_namespaces(prefix)
        .into_iter()
        .filter(|name| {
            let pid = name[prefix.len()..]
                .split('-')
                .next()
                .and_then(|pid| pid.parse::<u32>().ok());
            pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .filter(|name| destroy(name))
        .collect()
}

/// A network namespace created with `ip netns add`, deleted (with every process left in it)
/// when dropped.
///
/// Its name is `prefix`, the process id, a per-process counter and a few hex digits taken from
/// the clock, e.g. `ectb-12345-7-9f3a`, so concurrent tests and test binaries never collide.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace whose name starts with [`process_prefix`]`(prefix)`.
    ///
    /// `prefix` must be non-empty ASCII letters, digits, `-`, `_` or `.`.
    pub fn new(prefix: &str) -> io::Result<Netns> {
        let valid = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
        if prefix.is_empty() || !prefix.bytes().all(valid) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("namespace prefix {prefix:?} must be non-empty [A-Za-z0-9._-]"),
            ));
        }
        let base = process_prefix(prefix);
        let mut attempts = 0;
        loop {
            let name = format!("{base}{}-{:04x}", next_id(), clock_suffix());
            match cmd::ip(&["netns", "add", &name]) {
                Ok(_) => return Ok(Netns { name }),
                // Only a stale namespace of a dead process that had our pid can hold the name.
                Err(e) if attempts < 8 && e.to_string().contains("File exists") => attempts += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file that names the namespace (`/run/netns/<name>`), which `setns` and
    /// `nsenter --net=` accept.
    pub fn path(&self) -> PathBuf {
        ns_path(&self.name)
    }

    /// Runs `ip -n <name> args...` (an `ip` command applied to this namespace), returning an
    /// error that includes its stderr when it exits non-zero.
    pub fn ip(&self, args: &[&str]) -> io::Result<Output> {
        cmd::run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Runs `ip netns exec <name> args...` to completion, returning an error that includes its
    /// stderr when it exits non-zero.
    ///
    /// Unlike a thread entered with [`Netns::enter_current_thread`], the command sees this
    /// namespace's `/sys/class/net`, because `ip netns exec` remounts `/sys`.
    pub fn exec(&self, args: &[&str]) -> io::Result<Output> {
        let (program, rest) = args.split_first().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "Netns::exec needs a program")
        })?;
        cmd::run(self.command(program).args(rest))
    }

    /// A [`Command`] that runs `program` inside the namespace (`ip netns exec <name> program`),
    /// to add arguments to and spawn, e.g. for a long-running peer such as a server.
    ///
    /// Whatever is still running inside the namespace is killed when the `Netns` is dropped;
    /// wait for the [`Child`] afterwards to reap it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Spawns `args` (program first) inside the namespace with inherited stdio; see
    /// [`Netns::command`].
    pub fn spawn(&self, args: &[&str]) -> io::Result<Child> {
        let (program, rest) = args.split_first().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "Netns::spawn needs a program")
        })?;
        self.command(program).args(rest).spawn()
    }

    /// Ids of the processes whose network namespace this is (`ip netns pids <name>`).
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        pids_in(&self.name)
    }

    /// Moves the calling thread into this namespace, for good: it does not return to the
    /// namespace it came from.
    ///
    /// Network namespace membership is per thread, so the rest of the process is unaffected.
    /// Sockets the thread creates from then on (AF_PACKET, UDP, ...) belong to this namespace
    /// and stay in it for their whole life, even when used from other threads or after the
    /// thread ends. The thread's view of `/sys` and `/proc/net` does not change (that needs a
    /// mount namespace); use [`Netns::exec`] for those. Prefer [`Netns::run_in`] or
    /// [`Netns::spawn_thread_in`], which use a fresh thread.
    pub fn enter_current_thread(&self) -> io::Result<()> {
        sys::setns_net(&self.open()?)
    }

    /// Spawns a thread that enters this namespace and then runs `f`; joining it gives `f`'s
    /// result, or the error from entering the namespace.
    ///
    /// The namespace is opened before this returns, so the thread enters this namespace even if
    /// the `Netns` is dropped before the thread starts. See [`Netns::enter_current_thread`] for
    /// what belongs to the namespace.
    ///
    /// # Panics
    /// If the operating system cannot create a thread, like [`std::thread::spawn`].
    pub fn spawn_thread_in<F, T>(&self, f: F) -> JoinHandle<io::Result<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ns = self.open();
        thread::Builder::new()
            .name(format!("netns {}", self.name))
            .spawn(move || {
                sys::setns_net(&ns?)?;
                Ok(f())
            })
            .expect("failed to spawn thread")
    }

    /// Runs `f` on a short-lived thread inside this namespace and returns its result; `f` may
    /// borrow from the caller. A panic in `f` is resumed on the calling thread.
    ///
    /// Typical use is creating sockets that must live in the namespace:
    /// `ns.run_in(|| UdpSocket::bind("10.99.0.2:0"))??`.
    pub fn run_in<F, R>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let ns = self.open()?;
        thread::scope(|scope| {
            let worker = scope.spawn(move || {
                sys::setns_net(&ns)?;
                Ok(f())
            });
            worker
                .join()
                .unwrap_or_else(|payload| panic::resume_unwind(payload))
        })
    }

    fn open(&self) -> io::Result<File> {
        let path = self.path();
        File::open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display())))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !destroy(&self.name) {
            // A leak is worth a line even during unwinding; a closed stderr is not worth a panic.
            let _ = writeln!(
                io::stderr(),
                "etherconn-testbed: could not delete network namespace {}",
                self.name
            );
        }
    }
}

/// Kills the processes left in namespace `name`, deletes it, and says whether it is gone.
/// Never panics: it runs in `Drop`, possibly while unwinding.
fn destroy(name: &str) -> bool {
    let own = process::id();
    for pid in pids_in(name).unwrap_or_default() {
        // Our own pid appears when the main thread entered the namespace; killing it would end
        // the test run instead of cleaning up after it.
        if pid != own {
            let _ = sys::kill(pid);
        }
    }
    for attempt in 0..DELETE_ATTEMPTS {
        if attempt > 0 {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = cmd::ip(&["netns", "delete", name]);
        if !RUN_DIRS
            .iter()
            .any(|dir| Path::new(dir).join(name).exists())
        {
            return true;
        }
    }
    false
}

fn pids_in(name: &str) -> io::Result<Vec<u32>> {
    let out = cmd::ip(&["netns", "pids", name])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect())
}

fn ns_path(name: &str) -> PathBuf {
    RUN_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| Path::new(RUN_DIRS[0]).join(name))
}

/// A few bits from the clock, so that names differ between runs of the same pid.
fn clock_suffix() -> u16 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    (nanos ^ (nanos >> 16)) as u16
}
