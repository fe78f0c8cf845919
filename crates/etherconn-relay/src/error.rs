//! [`RelayError`]: why a relay refused a request.

use std::io;

use etherconn_core::key::{L2EndpointKey, L4RecvKey};

/// Why a relay refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The key is registered to another conn.
    #[error("endpoint key {0} is already registered to another conn")]
    KeyInUse(L2EndpointKey),
    /// The UDP key is registered to another endpoint of the shared L2 endpoint.
    #[error("UDP endpoint key {0} is already registered")]
    L4KeyInUse(L4RecvKey),
    /// Another conn is the default conn.
    #[error("another conn is already the default conn")]
    DefaultInUse,
    /// The relay has stopped.
    #[error("the relay has stopped")]
    Stopped,
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The conn already delivers to an [`Inbox`](crate::Inbox).
    #[error("the conn is already attached to an inbox")]
    InInbox,
    /// The relay's backend could not mirror the registration (a kernel map is full, say);
    /// the message says why.
    #[error("the relay's backend refused the registration: {0}")]
    BackendRefused(String),
}

impl From<RelayError> for io::Error {
    fn from(e: RelayError) -> io::Error {
        let kind = match e {
            RelayError::KeyInUse(_) | RelayError::L4KeyInUse(_) | RelayError::DefaultInUse => {
                io::ErrorKind::AddrInUse
            }
            RelayError::Stopped => io::ErrorKind::NotConnected,
            RelayError::InvalidConfig(_) => io::ErrorKind::InvalidInput,
            RelayError::InInbox => io::ErrorKind::AlreadyExists,
            RelayError::BackendRefused(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
