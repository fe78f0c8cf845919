//! [`RegistrationObserver`]: one hook a backend gives the dispatch table to hear of every
//! change to what is registered, so that it can mirror the table somewhere else (the AF_XDP
//! relay keeps its XDP program's maps in step with it, so that the kernel redirects exactly
//! the frames some conn wants).

use crate::error::RelayError;
use etherconn_core::key::{L2EndpointKey, VlanIds};
use etherconn_core::wire::EtherType;

/// A change to a dispatch table's registrations, as the table makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationChange {
    /// A key that had no conn now has one (a conn that takes over a key from another with
    /// `replace` does not change the set of keys and is not reported).
    KeyAdded(L2EndpointKey),
    /// A key no longer has a conn.
    KeyRemoved(L2EndpointKey),
    /// The first conn receiving broadcast/multicast on these VLAN ids and EtherType registered.
    GroupAdded(VlanIds, EtherType),
    /// The last conn receiving broadcast/multicast on these VLAN ids and EtherType went away.
    GroupRemoved(VlanIds, EtherType),
    /// A default conn was set where there was none.
    DefaultSet,
    /// The default conn went away.
    DefaultCleared,
}

impl RegistrationChange {
    /// Whether the change adds something (which an observer may refuse).
    pub fn is_addition(&self) -> bool {
        matches!(
            self,
            RegistrationChange::KeyAdded(_)
                | RegistrationChange::GroupAdded(..)
                | RegistrationChange::DefaultSet
        )
    }
}

/// Hears of every change to a dispatch table's registrations
/// ([`Dispatcher::with_observer`](crate::Dispatcher::with_observer)).
///
/// [`on_change`](Self::on_change) is called while the table holds the write lock that covers
/// the change, so the calls for one key (or group, or the default role) arrive in the order
/// the changes were made, and a frame the relay delivers after a registration returned is
/// looked up in a table the observer has already heard of. It must not call back into the
/// dispatcher. An error from an addition refuses the registration (the table undoes the rest
/// of it and returns the error to the caller); errors from removals are ignored.
pub trait RegistrationObserver: Send + Sync + core::fmt::Debug {
    /// One change.
    fn on_change(&self, change: RegistrationChange) -> Result<(), RelayError>;
}
