//! The tool's error: a message for the user, with the context of what was being done.

use std::fmt;

/// Why a command failed, as one line for the user.
#[derive(Debug)]
pub struct Failure {
    message: String,
    interrupted: bool,
}

impl Failure {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            interrupted: false,
        }
    }

    /// SIGINT or SIGTERM arrived while `what` was being set up, which was abandoned: not an
    /// error of the run, and `main` exits with the interrupted status.
    pub fn interrupted(what: impl fmt::Display) -> Failure {
        Failure {
            message: format!("interrupted while {what}"),
            interrupted: true,
        }
    }

    /// Whether this is [`Failure::interrupted`].
    pub fn is_interrupted(&self) -> bool {
        self.interrupted
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// `Result` with a [`Failure`].
pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// Adds what was being done to an error.
pub trait Context<T> {
    /// `what: error`.
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Failure::new(format!("{}: {e}", what().into())))
    }
}
