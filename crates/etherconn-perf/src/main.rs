//! `etherconn-perf`: how many packets per second etherconn moves for how many endpoints,
//! against the kernel's UDP sockets on the same veth pair, on a testbed it makes itself.
//!
//! ```text
//! sudo etherconn-perf                                  # = bench with defaults
//! sudo etherconn-perf bench --endpoints 1,1000 --payload 64,512,1400 --json
//! sudo etherconn-perf echo --iface eth1 --ip 192.0.2.10/24 --mac 02:ec:00:00:00:10 --endpoints 100
//! sudo etherconn-perf send --iface eth1 --dst 192.0.2.10:9000 --mac 02:ec:00:00:01:00 --ip 192.0.2.100
//! etherconn-perf scale --only reg --only dispatch     # 100,000 endpoints on one relay
//! ```
//!
//! The etherconn side is reached through one small trait, [`endpoint::EndpointSet`], so that a
//! backend (AF_XDP, libpcap) or the UDP layer (`RUdpConn`, in `rudp.rs`) is one more file. See
//! `docs/performance-tool.md`, and `docs/scale.md` for `scale`.

mod addr;
mod bench;
mod check;
mod cli;
mod echo;
mod endpoint;
mod error;
mod kernel;
mod kstats;
mod l2udp;
mod memory;
mod outcome;
mod payload;
mod report;
mod rudp;
mod scale;
mod send;
mod sys;
mod taskstat;
mod testbed;
#[cfg(feature = "xdp")]
mod xdp;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::outcome::Outcome;

// Counts heap bytes only once `scale` asks it to (`sys::count_heap`).
#[global_allocator]
static ALLOC: sys::CountingAlloc = sys::CountingAlloc;

/// Exit status of a command line that cannot be run, as clap's own parse errors have.
const USAGE_ERROR: u8 = 2;
/// Exit status of a run that SIGINT or SIGTERM stopped (128 + SIGINT, as a shell reports).
const INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = check::cli(&cli) {
        eprintln!("error: {e}");
        return ExitCode::from(USAGE_ERROR);
    }
    if let Err(e) = sys::install_stop_signals() {
        eprintln!("etherconn-perf: cannot install the SIGINT/SIGTERM handlers: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        None => bench::run(&cli.bench),
        Some(Command::Bench(args)) => bench::run(&args),
        Some(Command::Echo(args)) => echo::run(&args),
        Some(Command::Send(args)) => send::run(&args),
        Some(Command::Scale(args)) => scale::run(&args),
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted) => ExitCode::from(INTERRUPTED),
        Err(e) if e.is_interrupted() => {
            eprintln!("etherconn-perf: {e}");
            ExitCode::from(INTERRUPTED)
        }
        Err(e) if e.to_string().starts_with("etherconn-perf") => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("etherconn-perf: {e}");
            ExitCode::FAILURE
        }
    }
}
