//! Running `ip`, `ethtool` and friends so that a failure says what was run and what it printed.

use std::io;
use std::process::{Command, Output};

/// Runs `cmd` to completion, turning a non-zero exit into an error carrying its stderr.
pub(crate) fn run(cmd: &mut Command) -> io::Result<Output> {
    let output = cmd
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run `{}`: {e}", describe(cmd))))?;
    if output.status.success() {
        return Ok(output);
    }
    let printed = if output.stderr.is_empty() {
        &output.stdout
    } else {
        &output.stderr
    };
    Err(io::Error::other(format!(
        "`{}` failed ({}): {}",
        describe(cmd),
        output.status,
        String::from_utf8_lossy(printed).trim()
    )))
}

/// Runs `ip args...` in the root namespace.
pub(crate) fn ip(args: &[&str]) -> io::Result<Output> {
    run(Command::new("ip").args(args))
}

/// The command line of `cmd`, for error messages.
fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}
