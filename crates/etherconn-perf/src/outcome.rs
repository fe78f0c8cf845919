//! How a command ended when it did not fail: what `main` turns into the exit status.

/// How a command ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ran to the end.
    Done,
    /// SIGINT or SIGTERM stopped it (after cleaning up).
    Interrupted,
}
