//! The error type of the libpcap relay.

use std::io;

/// What went wrong opening or driving a capture handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// libpcap knows no device of that name (in this network namespace, on Linux).
    #[error("no capture device named {name:?}")]
    NoSuchDevice {
        /// The name that was looked up.
        name: String,
    },

    /// The device exists but is administratively down (`ip link set <name> up`).
    #[error("capture device {name:?} is down")]
    DeviceDown {
        /// The device's name.
        name: String,
    },

    /// The system refused to open a capture on the device.
    #[error(
        "permission denied capturing on {name:?} ({message}): on Linux run as root or grant \
         the program CAP_NET_RAW and CAP_NET_ADMIN (`sudo setcap cap_net_raw,cap_net_admin+ep \
         <program>`); on Windows, npcap may be installed for administrators only"
    )]
    PermissionDenied {
        /// The device's name.
        name: String,
        /// libpcap's message.
        message: String,
    },

    /// libpcap (or the kernel, through it) refused the receive filter.
    #[error("the capture handle rejected a {instructions}-instruction BPF filter: {message}")]
    FilterRejected {
        /// Length of the rejected program.
        instructions: usize,
        /// libpcap's message.
        message: String,
    },

    /// The device does not carry Ethernet frames (libpcap's link type is not `EN10MB`).
    #[error("capture device {name:?} has link type {linktype}, not Ethernet (1)")]
    NotEthernet {
        /// The device's name.
        name: String,
        /// The link type libpcap reported (`DLT_*`).
        linktype: i32,
    },

    /// A configuration value is out of range; the message names it.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),

    /// Any other libpcap failure.
    #[error("{op} failed: {source}")]
    Pcap {
        /// The libpcap call that failed (`"pcap_create"`, `"pcap_setdirection"`, ...).
        op: &'static str,
        /// The error the `pcap` crate returned.
        source: pcap::Error,
    },

    /// The receive thread could not be started.
    #[error("cannot spawn the receive thread: {0}")]
    Spawn(io::Error),

    /// A system call beside libpcap failed (`"SIOCGIFMTU"`, reading the interface's MTU).
    #[error("{op} on {name:?} failed: {source}")]
    Io {
        /// What was asked.
        op: &'static str,
        /// The device's name.
        name: String,
        /// The system's error.
        source: io::Error,
    },

    /// The relay's capture could not start (its file could not be created, say).
    #[error("cannot start the capture: {0}")]
    Capture(#[from] etherconn_relay::CaptureError),
}

/// Sorts the failure of `pcap_activate` on `name` into the typed errors.
///
/// The `pcap` crate hands over libpcap's message, not `pcap_activate`'s status code. When the
/// activate routine gives no message of its own libpcap uses `pcap_statustostr` of the status,
/// whose texts are fixed; the Linux and npcap back ends word a refused socket "Operation not
/// permitted" / "Access is denied". What these texts do not settle, the device list does.
pub(crate) fn activate_error(name: &str, source: pcap::Error) -> Error {
    let message = match &source {
        pcap::Error::PcapError(m) => m.as_str(),
        _ => "",
    };
    let lower = message.to_ascii_lowercase();
    if lower.contains("no such device") {
        return Error::NoSuchDevice { name: name.into() };
    }
    if lower.contains("device is not up") || lower.contains("interface went down") {
        return Error::DeviceDown { name: name.into() };
    }
    if lower.contains("permission")
        || lower.contains("not permitted")
        || lower.contains("access is denied")
    {
        return Error::PermissionDenied {
            name: name.into(),
            message: message.into(),
        };
    }
    match crate::platform::device_state(name) {
        Some(crate::platform::DeviceState::Missing) => Error::NoSuchDevice { name: name.into() },
        Some(crate::platform::DeviceState::Down) => Error::DeviceDown { name: name.into() },
        _ => Error::Pcap {
            op: "pcap_activate",
            source,
        },
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::NoSuchDevice { .. } => io::ErrorKind::NotFound,
            Error::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            Error::InvalidConfig(_) | Error::FilterRejected { .. } | Error::NotEthernet { .. } => {
                io::ErrorKind::InvalidInput
            }
            Error::Spawn(source) | Error::Io { source, .. } => source.kind(),
            Error::DeviceDown { .. } | Error::Pcap { .. } | Error::Capture(_) => {
                io::ErrorKind::Other
            }
        };
        io::Error::new(kind, e)
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_err(m: &str) -> pcap::Error {
        pcap::Error::PcapError(m.into())
    }

    #[test]
    fn libpcap_status_texts_are_typed() {
        // The texts libpcap 1.10 gives for these statuses (checked against live devices in
        // tests/relay_veth.rs).
        assert!(matches!(
            activate_error("x0", pcap_err("No such device exists")),
            Error::NoSuchDevice { name } if name == "x0"
        ));
        assert!(matches!(
            activate_error("x0", pcap_err("That device is not up")),
            Error::DeviceDown { .. }
        ));
        assert!(matches!(
            activate_error("x0", pcap_err("socket: Operation not permitted")),
            Error::PermissionDenied { .. }
        ));
        assert!(matches!(
            activate_error(
                "x0",
                pcap_err("You don't have permission to perform this capture on that device")
            ),
            Error::PermissionDenied { .. }
        ));
    }

    #[test]
    fn io_error_kinds() {
        let e: io::Error = Error::NoSuchDevice { name: "x".into() }.into();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e: io::Error = Error::PermissionDenied {
            name: "x".into(),
            message: "m".into(),
        }
        .into();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }
}
