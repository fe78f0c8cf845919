//! The error type of the AF_PACKET layer.

use std::io;

/// What went wrong opening, configuring or driving an AF_PACKET socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no interface of that name in the calling thread's network namespace.
    #[error("no network interface named {name:?} (in this network namespace)")]
    NoSuchInterface {
        /// The name that was looked up.
        name: String,
    },

    /// The interface exists but is administratively down (`ip link set <name> up`), or went
    /// down while the socket was open.
    #[error("network interface {name:?} is down")]
    InterfaceDown {
        /// The interface's name.
        name: String,
    },

    /// The kernel refused to create or configure the packet socket.
    #[error(
        "permission denied for {op} on an AF_PACKET socket: run as root or grant the program \
         CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous mode and forced buffer sizes), e.g. \
         `sudo setcap cap_net_raw,cap_net_admin+ep <program>`"
    )]
    PermissionDenied {
        /// The operation that was refused.
        op: &'static str,
    },

    /// The `TPACKET_V3` receive ring could not be set up or mapped (too large for the memory
    /// available, or a geometry the kernel rejects).
    #[error("cannot set up a TPACKET_V3 receive ring of {block_count} blocks of {block_size} bytes: {source}")]
    RingSetup {
        /// The error the kernel returned.
        source: io::Error,
        /// Requested block size in bytes.
        block_size: u32,
        /// Requested number of blocks.
        block_count: u32,
    },

    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The call or option that failed (`"bind"`, `"sendmmsg"`, `"PACKET_FANOUT"`, ...).
        op: &'static str,
        /// The error the kernel returned.
        source: io::Error,
    },

    /// The kernel rejected a classic BPF program (malformed, too long, or it jumps out of
    /// bounds).
    #[error("the kernel rejected a {instructions}-instruction BPF filter: {source}")]
    FilterRejected {
        /// Length of the rejected program.
        instructions: usize,
        /// The error the kernel returned.
        source: io::Error,
    },

    /// A configuration value is out of range; the message names it.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),

    /// The socket was stopped through its [`StopHandle`](crate::StopHandle).
    #[error("the packet socket was stopped")]
    Stopped,

    /// A frame does not fit in a transmit buffer.
    #[error("a {len}-byte frame does not fit in a {max}-byte transmit buffer")]
    FrameTooLarge {
        /// Length of the frame.
        len: usize,
        /// Size of one transmit buffer.
        max: usize,
    },

    /// Every transmit buffer holds a queued frame: flush before pushing more.
    #[error("the transmit batch is full; flush it first")]
    TxBatchFull,
    /// The relay's capture could not start (its file could not be created, say).
    #[error("cannot start the capture: {0}")]
    Capture(#[from] etherconn_relay::CaptureError),
}

impl Error {
    /// An [`Error::Io`] for `op`, or [`Error::PermissionDenied`] when the kernel said
    /// `EPERM`/`EACCES`.
    pub(crate) fn io(op: &'static str, source: io::Error) -> Error {
        match source.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => Error::PermissionDenied { op },
            _ => Error::Io { op, source },
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::NoSuchInterface { .. } => io::ErrorKind::NotFound,
            Error::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            Error::InvalidConfig(_)
            | Error::FrameTooLarge { .. }
            | Error::FilterRejected { .. } => io::ErrorKind::InvalidInput,
            Error::Stopped => io::ErrorKind::NotConnected,
            Error::TxBatchFull => io::ErrorKind::WouldBlock,
            Error::Io { source, .. } | Error::RingSetup { source, .. } => source.kind(),
            Error::InterfaceDown { .. } | Error::Capture(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
