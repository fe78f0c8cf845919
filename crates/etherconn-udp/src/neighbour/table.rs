//! The addresses a responder answers for, and the MAC each is at, by VLAN stack.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;

use ahash::RandomState;
use etherconn_core::key::VlanIds;
use etherconn_core::wire::MacAddr;

/// An address on a VLAN stack: what ARP and neighbour discovery resolve.
pub(crate) type AddrKey = (VlanIds, IpAddr);

/// One address held, by how many conns.
#[derive(Clone, Copy, Debug)]
struct Held {
    mac: MacAddr,
    refs: u32,
}

/// What adding an address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Added {
    /// The first holder of the address, and whether it is also the first address of its
    /// family on its VLAN stack (the responder then joins that stack's broadcast group).
    First { first_on_stack: bool },
    /// Another conn of the same MAC holds it too.
    Again,
}

/// What removing an address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removed {
    /// Others still hold it.
    Held,
    /// Gone, and whether it was the last address of its family on its VLAN stack.
    Gone { last_on_stack: bool },
}

/// The table: exact lookups, one lock (registrations and the responder's lookups, never the
/// send path, take it).
#[derive(Debug, Default)]
pub(crate) struct AddressTable {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    addrs: HashMap<AddrKey, Held, RandomState>,
    /// Addresses per (VLAN stack, is IPv6).
    stacks: HashMap<(VlanIds, bool), usize, RandomState>,
}

impl AddressTable {
    /// Adds a holder of `key` at `mac`; `Err(mac)` when another MAC holds it.
    pub(crate) fn add(&self, key: AddrKey, mac: MacAddr) -> Result<Added, MacAddr> {
        let mut t = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match t.addrs.entry(key) {
            Entry::Occupied(mut e) => {
                let held = e.get_mut();
                if held.mac != mac {
                    return Err(held.mac);
                }
                held.refs = held.refs.saturating_add(1);
                Ok(Added::Again)
            }
            Entry::Vacant(e) => {
                e.insert(Held { mac, refs: 1 });
                let n = t.stacks.entry((key.0, key.1.is_ipv6())).or_insert(0);
                *n += 1;
                Ok(Added::First {
                    first_on_stack: *n == 1,
                })
            }
        }
    }

    /// Removes one holder of `key`.
    pub(crate) fn remove(&self, key: AddrKey) -> Removed {
        let mut t = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let Some(held) = t.addrs.get_mut(&key) else {
            return Removed::Held;
        };
        held.refs -= 1;
        if held.refs > 0 {
            return Removed::Held;
        }
        t.addrs.remove(&key);
        let stack = (key.0, key.1.is_ipv6());
        let last = match t.stacks.get_mut(&stack) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => {
                t.stacks.remove(&stack);
                true
            }
        };
        Removed::Gone {
            last_on_stack: last,
        }
    }

    /// The MAC `key` is at, if held.
    pub(crate) fn get(&self, key: &AddrKey) -> Option<MacAddr> {
        let t = self.inner.read().unwrap_or_else(|e| e.into_inner());
        t.addrs.get(key).map(|h| h.mac)
    }

    /// Number of addresses held.
    pub(crate) fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .addrs
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_and_stacks_are_counted() {
        let t = AddressTable::default();
        let v = VlanIds::NONE;
        let k1 = (v, "192.0.2.1".parse().unwrap());
        let k2 = (v, "192.0.2.2".parse().unwrap());
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        assert_eq!(
            t.add(k1, m),
            Ok(Added::First {
                first_on_stack: true
            })
        );
        assert_eq!(t.add(k1, m), Ok(Added::Again));
        assert_eq!(t.add(k1, MacAddr([2, 0, 0, 0, 0, 2])), Err(m));
        assert_eq!(
            t.add(k2, m),
            Ok(Added::First {
                first_on_stack: false
            })
        );
        assert_eq!(t.get(&k1), Some(m));
        assert_eq!(t.remove(k1), Removed::Held);
        assert_eq!(
            t.remove(k1),
            Removed::Gone {
                last_on_stack: false
            }
        );
        assert_eq!(t.get(&k1), None);
        assert_eq!(
            t.remove(k2),
            Removed::Gone {
                last_on_stack: true
            }
        );
        assert_eq!(t.len(), 0);
    }
}
