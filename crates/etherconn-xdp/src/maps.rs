//! The XDP program's maps as the relay writes them: the byte layout of their keys and values
//! (defined once, in `etherconnkern/etherconn.h`; the tests below check these encoders against
//! the compiled object's BTF) and [`MapMirror`], the dispatch table's registration hook that
//! keeps the maps in step with it.

use std::fmt;

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use etherconn_core::key::{L2EndpointKey, VlanIds};
use etherconn_core::wire::EtherType;
use etherconn_relay::{RegistrationChange, RegistrationObserver, RelayError};

/// Bytes of `struct ec_l2_key`.
pub(crate) const KEY_LEN: usize = 16;
/// Bytes of `struct ec_config`.
pub(crate) const CONFIG_LEN: usize = 12;
/// `EC_FLAG_DEFAULT_CONN`.
pub(crate) const FLAG_DEFAULT_CONN: u32 = 0x1;
/// `EC_FLAG_DEFAULT_UNTAGGED_GROUP`.
pub(crate) const FLAG_DEFAULT_UNTAGGED_GROUP: u32 = 0x2;
/// Indexes of the `stats` map: frames redirected, frames passed.
pub(crate) const STAT_REDIRECTED: u32 = 0;
pub(crate) const STAT_PASSED: u32 = 1;

/// `struct ec_l2_key` for `mac`, `vlans`, `ethertype`: MAC at 0, EtherType (big endian) at 6,
/// VLAN ids (big endian, 12 bits) at 8, 10 and 12, tag count at 14, a zero byte.
pub(crate) fn encode(mac: [u8; 6], vlans: VlanIds, ethertype: EtherType) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..6].copy_from_slice(&mac);
    k[6..8].copy_from_slice(&ethertype.0.to_be_bytes());
    for (i, id) in vlans.as_slice().iter().enumerate() {
        let at = 8 + 2 * i;
        k[at..at + 2].copy_from_slice(&(id & 0x0fff).to_be_bytes());
    }
    // At most three tags (`VlanIds` holds no more), so the ids end at 14.
    k[14] = vlans.len() as u8;
    k
}

/// The `endpoints` key of a registered endpoint key.
pub(crate) fn endpoint_key(key: &L2EndpointKey) -> [u8; KEY_LEN] {
    encode(key.mac.0, key.vlans, key.ethertype)
}

/// The `groups` key of a (VLAN ids, EtherType) group: the MAC is zero.
pub(crate) fn group_key(vlans: VlanIds, ethertype: EtherType) -> [u8; KEY_LEN] {
    encode([0; 6], vlans, ethertype)
}

/// `struct ec_config`: flags (native byte order, as the program reads a `__u32`) at 0, the
/// interface's MAC at 4.
pub(crate) fn config_value(flags: u32, own_mac: [u8; 6]) -> [u8; CONFIG_LEN] {
    let mut v = [0u8; CONFIG_LEN];
    v[..4].copy_from_slice(&flags.to_ne_bytes());
    v[4..10].copy_from_slice(&own_mac);
    v
}

/// Mirrors the dispatch table into the program's `endpoints`, `groups` and `config` maps:
/// the one registration hook of the relay
/// ([`Dispatcher::with_observer`](etherconn_relay::Dispatcher::with_observer)).
pub(crate) struct MapMirror {
    pub(crate) endpoints: MapHandle,
    pub(crate) groups: MapHandle,
    pub(crate) config: MapHandle,
    pub(crate) own_mac: [u8; 6],
    pub(crate) untagged_group: bool,
    /// The endpoint map's size, for the message when it is full.
    pub(crate) max_keys: u32,
}

impl fmt::Debug for MapMirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapMirror")
            .field("own_mac", &self.own_mac)
            .field("untagged_group", &self.untagged_group)
            .finish_non_exhaustive()
    }
}

impl MapMirror {
    /// Writes the config entry for "a default conn is registered" = `default`.
    pub(crate) fn write_config(&self, default: bool) -> Result<(), libbpf_rs::Error> {
        let mut flags = 0;
        if default {
            flags |= FLAG_DEFAULT_CONN;
            if self.untagged_group {
                flags |= FLAG_DEFAULT_UNTAGGED_GROUP;
            }
        }
        self.config.update(
            &0u32.to_ne_bytes(),
            &config_value(flags, self.own_mac),
            MapFlags::ANY,
        )
    }
}

fn refused(what: &str, e: &libbpf_rs::Error) -> RelayError {
    RelayError::BackendRefused(format!("cannot add {what} to the XDP program's map: {e}"))
}

impl MapMirror {
    fn key_refused(&self, what: &str, e: &libbpf_rs::Error) -> RelayError {
        RelayError::BackendRefused(format!(
            "cannot add {what} to the XDP program's map, which holds at most {} keys \
             (XdpRelayConfig::max_keys): {e}",
            self.max_keys
        ))
    }

    /// Adds the keys of `changes` (all `KeyAdded`) with one system call; on a failure, which
    /// may come after a prefix went in, takes every one of them out again.
    fn add_keys(&self, changes: &[RegistrationChange]) -> Result<(), RelayError> {
        let mut keys = Vec::with_capacity(changes.len() * KEY_LEN);
        for c in changes {
            if let RegistrationChange::KeyAdded(k) = c {
                keys.extend_from_slice(&endpoint_key(k));
            }
        }
        let n = keys.len() / KEY_LEN;
        let values = vec![1u8; n];
        let count = u32::try_from(n).unwrap_or(u32::MAX);
        self.endpoints
            .update_batch(&keys, &values, count, MapFlags::ANY, MapFlags::ANY)
            .map_err(|e| {
                for k in keys.chunks_exact(KEY_LEN) {
                    let _ = self.endpoints.delete(k);
                }
                self.key_refused(&format!("{n} endpoint keys"), &e)
            })
    }

    /// Removes the keys of `changes` (all `KeyRemoved`) with one system call, or one by one
    /// when the batch stops at a key that is not there.
    fn remove_keys(&self, changes: &[RegistrationChange]) {
        let mut keys = Vec::with_capacity(changes.len() * KEY_LEN);
        for c in changes {
            if let RegistrationChange::KeyRemoved(k) = c {
                keys.extend_from_slice(&endpoint_key(k));
            }
        }
        let count = u32::try_from(keys.len() / KEY_LEN).unwrap_or(u32::MAX);
        if self
            .endpoints
            .delete_batch(&keys, count, MapFlags::ANY, MapFlags::ANY)
            .is_err()
        {
            for k in keys.chunks_exact(KEY_LEN) {
                let _ = self.endpoints.delete(k);
            }
        }
    }
}

impl RegistrationObserver for MapMirror {
    fn on_change(&self, change: RegistrationChange) -> Result<(), RelayError> {
        // The value of the hash maps is unused; a key's presence is what the program tests.
        let one = [1u8];
        match change {
            RegistrationChange::KeyAdded(k) => self
                .endpoints
                .update(&endpoint_key(&k), &one, MapFlags::ANY)
                .map_err(|e| self.key_refused(&format!("endpoint key {k}"), &e)),
            RegistrationChange::KeyRemoved(k) => {
                let _ = self.endpoints.delete(&endpoint_key(&k));
                Ok(())
            }
            RegistrationChange::GroupAdded(v, t) => self
                .groups
                .update(&group_key(v, t), &one, MapFlags::ANY)
                .map_err(|e| refused("a multicast group", &e)),
            RegistrationChange::GroupRemoved(v, t) => {
                let _ = self.groups.delete(&group_key(v, t));
                Ok(())
            }
            RegistrationChange::DefaultSet => self
                .write_config(true)
                .map_err(|e| refused("the default conn", &e)),
            RegistrationChange::DefaultCleared => {
                let _ = self.write_config(false);
                Ok(())
            }
            // A change this relay does not mirror.
            _ => Ok(()),
        }
    }

    /// A conn's keys in one `BPF_MAP_UPDATE_BATCH` (or `DELETE_BATCH`): registering 100,000
    /// conns of three keys each is then 100,000 system calls, not 300,000.
    fn on_changes(&self, changes: &[RegistrationChange]) -> Result<(), RelayError> {
        let all = |f: fn(&RegistrationChange) -> bool| changes.iter().all(f);
        if changes.len() > 1 && all(|c| matches!(c, RegistrationChange::KeyAdded(_))) {
            return self.add_keys(changes);
        }
        if changes.len() > 1 && all(|c| matches!(c, RegistrationChange::KeyRemoved(_))) {
            self.remove_keys(changes);
            return Ok(());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::program::OBJECT;
    use etherconn_core::wire::VlanId;
    use libbpf_rs::btf::types::{MemberAttr, Struct};
    use libbpf_rs::btf::{Btf, HasSize};

    /// (name, byte offset) of each member of `name` in the embedded object's BTF, and its size.
    fn layout(name: &str) -> (Vec<(String, usize)>, usize) {
        let btf = Btf::from_raw("etherconn", OBJECT)
            .expect("the object's BTF parses")
            .expect("the object has BTF");
        let s: Struct<'_> = btf
            .type_by_name(name)
            .unwrap_or_else(|| panic!("struct {name} in the BTF"));
        let members = s
            .iter()
            .map(|m| {
                let bits = match m.attr {
                    MemberAttr::Normal { offset } => offset,
                    MemberAttr::BitField { offset, .. } => offset,
                };
                (
                    m.name.unwrap().to_string_lossy().into_owned(),
                    bits as usize / 8,
                )
            })
            .collect();
        (members, s.size())
    }

    #[test]
    fn key_layout_matches_the_program() {
        let (members, size) = layout("ec_l2_key");
        assert_eq!(size, KEY_LEN);
        let want = [
            ("mac", 0),
            ("ethertype", 6),
            ("vlan", 8),
            ("vlan_count", 14),
            ("pad", 15),
        ];
        let got: Vec<(&str, usize)> = members.iter().map(|(n, o)| (n.as_str(), *o)).collect();
        assert_eq!(got, want);

        let v = |id| VlanId::new(id).unwrap();
        let k = encode(
            [2, 0, 0, 0, 0, 1],
            VlanIds::two(v(100), v(4095)),
            EtherType(0x0800),
        );
        assert_eq!(
            k,
            [2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x00, 100, 0x0f, 0xff, 0, 0, 2, 0]
        );
        let k = encode(
            [2, 0, 0, 0, 0, 1],
            VlanIds::three(v(300), v(200), v(4094)),
            EtherType(0x86dd),
        );
        assert_eq!(
            k,
            [2, 0, 0, 0, 0, 1, 0x86, 0xdd, 0x01, 0x2c, 0x00, 0xc8, 0x0f, 0xfe, 3, 0]
        );
        // Two tags differ from three whose last id is 0.
        assert_ne!(
            encode([0; 6], VlanIds::two(v(1), v(2)), EtherType(0x0800)),
            encode([0; 6], VlanIds::three(v(1), v(2), v(0)), EtherType(0x0800))
        );
        // "No tag" and "a tag with id 0" differ.
        assert_ne!(
            encode([0; 6], VlanIds::NONE, EtherType(0x0806)),
            encode([0; 6], VlanIds::one(v(0)), EtherType(0x0806))
        );
    }

    #[test]
    fn config_layout_matches_the_program() {
        let (members, size) = layout("ec_config");
        assert_eq!(size, CONFIG_LEN);
        let got: Vec<(&str, usize)> = members.iter().map(|(n, o)| (n.as_str(), *o)).collect();
        assert_eq!(got, [("flags", 0), ("own_mac", 4), ("pad", 10)]);
    }
}
