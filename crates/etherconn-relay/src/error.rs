//! [`RelayError`]: why a relay refused a request.

use std::io;

use etherconn_core::key::{L2EndpointKey, L4RecvKey};
use etherconn_core::wire::{EtherType, MacAddr};

use crate::link::SizeLimit;
use crate::meminfo::human_bytes;

/// Why a relay refused a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The key is registered to another conn.
    #[error(
        "endpoint key {0} is already registered to another conn; for several UDP endpoints on \
         one MAC and VLAN stack, open one SharedEtherConn (etherconn-udp) and bind a \
         SharingRUdpConn per address on it, or set EtherConnConfig::replace to take the key over"
    )]
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
    /// The endpoint's MAC cannot name one station: a group (multicast or broadcast) or
    /// all-zero address. Frames from it are dropped by every receiver (this relay included),
    /// and frames to a group address are not addressed to one endpoint.
    #[error("{mac} cannot be an endpoint's MAC: {reason}")]
    NotStationMac {
        /// The MAC asked for.
        mac: MacAddr,
        /// Why ([`MacAddr::station_problem`]).
        reason: &'static str,
    },
    /// The relay never receives this EtherType: its backend's kernel filter drops such frames
    /// before the dispatcher sees them, so the conn would wait for nothing.
    #[error(
        "the relay does not receive EtherType {0}: its kernel filter drops such frames, so the \
         conn would never see one; list the EtherType in the relay's configuration \
         (RawSocketRelayConfig::ethertypes for the AF_PACKET relay)"
    )]
    EtherTypeFiltered(EtherType),
    /// A payload does not fit one frame on the relay's link.
    #[error("{}", too_large_message(*len, limit))]
    TooLarge {
        /// Payload length asked for.
        len: usize,
        /// The link's limit for the frame's VLAN stack.
        limit: SizeLimit,
    },
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
    /// The relay's backend could not mirror the registration (a kernel map is full, say);
    /// the message says why.
    #[error("the relay's backend refused the registration: {0}")]
    BackendRefused(String),
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

/// The message of [`RelayError::TooLarge`]: the payload's size, the limit and what sets it.
fn too_large_message(len: usize, limit: &SizeLimit) -> String {
    let after = match limit.tags {
        0 => "the Ethernet header",
        1 => "the Ethernet header and one VLAN tag",
        2 => "the Ethernet header and two VLAN tags",
        _ => "the Ethernet header and three VLAN tags",
    };
    format!(
        "payload of {len} bytes does not fit one frame: at most {} bytes fit after {after} \
         ({limit}); nothing is fragmented",
        limit.payload()
    )
}

impl From<RelayError> for io::Error {
    fn from(e: RelayError) -> io::Error {
        let kind = match e {
            RelayError::KeyInUse(_) | RelayError::L4KeyInUse(_) | RelayError::DefaultInUse => {
                io::ErrorKind::AddrInUse
            }
            RelayError::Stopped => io::ErrorKind::NotConnected,
            RelayError::InvalidConfig(_)
            | RelayError::NotStationMac { .. }
            | RelayError::EtherTypeFiltered(_)
            | RelayError::TooLarge { .. } => io::ErrorKind::InvalidInput,
            RelayError::InInbox => io::ErrorKind::AlreadyExists,
            RelayError::OverBudget { .. } => io::ErrorKind::OutOfMemory,
            RelayError::BackendRefused(_) => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
