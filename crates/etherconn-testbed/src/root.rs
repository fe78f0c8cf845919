//! Deciding whether a root-only test runs, skips, or fails.

use std::io::Write;

/// Environment variable that turns a root-only test's skip into a panic when it is set to `1`.
///
/// CI sets it so that a lost privilege makes the run fail instead of silently skipping every
/// namespace test.
pub const REQUIRE_ROOT_ENV: &str = "ETHERCONN_REQUIRE_ROOT_TESTS";

/// Whether this process runs with effective uid 0, read from the `Uid:` line of
/// `/proc/self/status`.
///
/// Returns `false` when the file cannot be read or parsed.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_uid(&status))
        == Some(0)
}

/// Gate for a test that needs root: `true` means go ahead.
///
/// When not root it prints `SKIP <test_name>: needs root (CAP_NET_ADMIN) to create network
/// namespaces` to stderr and returns `false`, unless [`REQUIRE_ROOT_ENV`] is `1`, in which
/// case it panics with that message.
///
/// ```
/// if !etherconn_testbed::require_root("my_test") {
///     return;
/// }
/// ```
pub fn require_root(test_name: &str) -> bool {
    if is_root() {
        return true;
    }
    let reason = format!("{test_name}: needs root (CAP_NET_ADMIN) to create network namespaces");
    if std::env::var_os(REQUIRE_ROOT_ENV).is_some_and(|v| v == "1") {
        panic!("{reason} ({REQUIRE_ROOT_ENV}=1 forbids skipping)");
    }
    // A closed stderr must not turn a skip into a failure.
    let _ = writeln!(std::io::stderr(), "SKIP {reason}");
    false
}

/// The effective uid from the text of `/proc/<pid>/status`: `Uid:` is followed by the real,
/// effective, saved and filesystem uids.
fn effective_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::effective_uid;

    #[test]
    fn effective_uid_is_second_field() {
        let status = "Name:\tcat\nUmask:\t0022\nUid:\t1000\t0\t1000\t1000\nGid:\t5\t5\t5\t5\n";
        assert_eq!(effective_uid(status), Some(0));
        let status = "Uid:\t0\t1000\t0\t0\n";
        assert_eq!(effective_uid(status), Some(1000));
    }

    #[test]
    fn effective_uid_missing_or_malformed() {
        assert_eq!(effective_uid("Name:\tcat\n"), None);
        assert_eq!(effective_uid("Uid:\t0\n"), None);
        assert_eq!(effective_uid("Uid:\t0\tx\t0\t0\n"), None);
    }
}
