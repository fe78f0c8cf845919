//! The error type of the AF_XDP relay.

use std::io;

/// Why an [`XdpRelay`](crate::XdpRelay) could not start (or a registration could not be
/// mirrored into the XDP program's maps).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// There is no interface of that name in the calling thread's network namespace.
    #[error("no network interface named {name:?} (in this network namespace)")]
    NoSuchInterface {
        /// The name that was looked up.
        name: String,
    },

    /// The interface exists but is administratively down (`ip link set <name> up`).
    #[error("network interface {name:?} is down")]
    InterfaceDown {
        /// The interface's name.
        name: String,
    },

    /// The kernel refused to load or attach the XDP program, or to create an AF_XDP socket,
    /// for want of privileges.
    #[error(
        "permission denied for {op}: the AF_XDP relay needs root, or CAP_NET_ADMIN, CAP_NET_RAW \
         and CAP_BPF (CAP_SYS_ADMIN on older kernels)"
    )]
    PermissionDenied {
        /// The operation that was refused.
        op: &'static str,
    },

    /// The driver (or the kernel) does not support XDP, or the requested bind mode.
    #[error("interface {name:?} does not support {what}: {source}")]
    XdpNotSupported {
        /// The interface's name.
        name: String,
        /// What is missing ("XDP", "AF_XDP zero-copy").
        what: &'static str,
        /// The error the kernel returned.
        source: io::Error,
    },

    /// A requested queue does not exist on the interface.
    #[error("queue {queue} is out of range: interface {name:?} has {queues} receive queue(s)")]
    QueueOutOfRange {
        /// The interface's name.
        name: String,
        /// The requested queue.
        queue: u32,
        /// The interface's receive queues.
        queues: u32,
    },

    /// An XDP program this relay did not attach is on the interface; set
    /// `XdpRelayConfig::replace_foreign_program` to detach it first.
    #[error(
        "interface {name:?} already has XDP program id {prog_id} attached (not ours); \
         refusing to replace it"
    )]
    ForeignProgramAttached {
        /// The interface's name.
        name: String,
        /// The attached program's id (`bpftool prog show id <id>`).
        prog_id: u32,
    },

    /// The embedded XDP program could not be opened, loaded (verifier log in the message)
    /// or attached.
    #[error("XDP program: {op} failed: {message}")]
    Program {
        /// What was being done.
        op: &'static str,
        /// libbpf's message.
        message: String,
    },

    /// A queue's UMEM or rings could not be set up.
    #[error(
        "cannot set up the AF_XDP socket of queue {queue} ({frames} frames of {frame_size} bytes, \
         rings of {rx_ring} rx / {tx_ring} tx): {source}"
    )]
    UmemSetup {
        /// The queue.
        queue: u32,
        /// UMEM frames in all.
        frames: u32,
        /// Bytes per UMEM frame.
        frame_size: u32,
        /// Fill and receive ring size.
        rx_ring: u32,
        /// Send and completion ring size.
        tx_ring: u32,
        /// What went wrong.
        source: io::Error,
    },

    /// A configuration value is out of range; the message names it.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),

    /// The relay's capture could not start (its file could not be created, say).
    #[error("cannot start the capture: {0}")]
    Capture(#[from] etherconn_relay::CaptureError),

    /// A system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The call that failed.
        op: &'static str,
        /// The error the kernel returned.
        source: io::Error,
    },
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

    /// An error from libbpf during `op`.
    pub(crate) fn program(op: &'static str, e: &libbpf_rs::Error) -> Error {
        if matches!(e.kind(), libbpf_rs::ErrorKind::PermissionDenied) {
            return Error::PermissionDenied { op };
        }
        Error::Program {
            op,
            message: format!("{e:#}"),
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::NoSuchInterface { .. } => io::ErrorKind::NotFound,
            Error::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            Error::InvalidConfig(_) | Error::QueueOutOfRange { .. } => io::ErrorKind::InvalidInput,
            Error::ForeignProgramAttached { .. } => io::ErrorKind::AddrInUse,
            Error::XdpNotSupported { .. } => io::ErrorKind::Unsupported,
            Error::Io { source, .. } | Error::UmemSetup { source, .. } => source.kind(),
            Error::InterfaceDown { .. } | Error::Program { .. } | Error::Capture(_) => {
                io::ErrorKind::Other
            }
        };
        io::Error::new(kind, e)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
