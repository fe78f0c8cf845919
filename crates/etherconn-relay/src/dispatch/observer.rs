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
    /// The change that undoes this one.
    pub fn reverse(&self) -> RegistrationChange {
        match *self {
            RegistrationChange::KeyAdded(k) => RegistrationChange::KeyRemoved(k),
            RegistrationChange::KeyRemoved(k) => RegistrationChange::KeyAdded(k),
            RegistrationChange::GroupAdded(v, t) => RegistrationChange::GroupRemoved(v, t),
            RegistrationChange::GroupRemoved(v, t) => RegistrationChange::GroupAdded(v, t),
            RegistrationChange::DefaultSet => RegistrationChange::DefaultCleared,
            RegistrationChange::DefaultCleared => RegistrationChange::DefaultSet,
        }
    }

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
/// The table reports while it holds the write locks that cover the change, so the reports
/// for one key (or group, or the default role) arrive in the order the changes were made, and
/// a frame the relay delivers after a registration returned is looked up in a table the
/// observer has already heard of. An observer must not call back into the dispatcher. An
/// error from an addition refuses the registration (the table undoes the rest of it and
/// returns the error to the caller); errors from removals are ignored.
///
/// The keys one conn registers (or drops) are reported together, through
/// [`on_changes`](Self::on_changes): an observer that pays a system call per report can apply
/// them in one.
pub trait RegistrationObserver: Send + Sync + core::fmt::Debug {
    /// One change.
    fn on_change(&self, change: RegistrationChange) -> Result<(), RelayError>;

    /// Several changes made together, all key additions or all key removals. Additions are
    /// accepted all or none: on an error the table treats none as made, so an observer that
    /// applied some of them must undo those. The default reports each to
    /// [`on_change`](Self::on_change) and, when one is refused, reports the
    /// [`reverse`](RegistrationChange::reverse) of those already accepted, latest first.
    fn on_changes(&self, changes: &[RegistrationChange]) -> Result<(), RelayError> {
        for (i, c) in changes.iter().enumerate() {
            if let Err(e) = self.on_change(*c) {
                for done in changes[..i].iter().rev() {
                    let _ = self.on_change(done.reverse());
                }
                return Err(e);
            }
        }
        Ok(())
    }
}
