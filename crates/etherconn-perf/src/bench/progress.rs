//! The progress line `bench` keeps on stderr while it measures.

use std::io::{IsTerminal, Write};

/// The progress line on stderr: rewritten in place on a terminal, one line per measurement
/// otherwise.
pub(super) struct Progress {
    tty: bool,
    total: usize,
    index: usize,
    shown: bool,
}

impl Progress {
    pub(super) fn new(total: usize) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            total,
            index: 0,
            shown: false,
        }
    }

    pub(super) fn show(&mut self, line: &str) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K[{}/{}] {line}", self.index + 1, self.total);
            let _ = err.flush();
            self.shown = true;
        }
    }

    pub(super) fn done(&mut self, line: &str) {
        self.clear();
        eprintln!("[{}/{}] {line}", self.index + 1, self.total);
        self.index += 1;
    }

    pub(super) fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[K");
            self.shown = false;
        }
    }
}
