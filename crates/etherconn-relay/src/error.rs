//! [`RelayError`]: why a relay refused a request.

use std::io;

use etherconn_core::key::{L2EndpointKey, L4RecvKey};

use crate::meminfo::human_bytes;

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
    /// Registering the conn would take the relay past its
    /// [`MemoryBudget`](crate::MemoryBudget): `need` bytes for this conn, `reserved` by the
    /// relay's conns already, `limit` in all.
    #[error("{}", over_budget_message(*need, *reserved, *limit))]
    OverBudget {
        /// Bytes the conn would reserve (its queue full).
        need: u64,
        /// Bytes reserved by the relay's conns before it.
        reserved: u64,
        /// The relay's budget, bytes.
        limit: u64,
    },
}

/// The message of [`RelayError::OverBudget`]: what the conn would take, what is taken, the
/// limit, and what to change.
fn over_budget_message(need: u64, reserved: u64, limit: u64) -> String {
    format!(
        "memory budget exceeded: the conn would take {} (its queue full), the relay's conns \
         already hold {} and its budget is {}; raise DispatcherConfig::memory_budget, or \
         use shorter queues or fewer conns",
        human_bytes(need),
        human_bytes(reserved),
        human_bytes(limit)
    )
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
            RelayError::OverBudget { .. } => io::ErrorKind::OutOfMemory,
        };
        io::Error::new(kind, e)
    }
}
