//! The registration hook: every change to the table reaches the observer once, in order, and
//! an observer that refuses an addition leaves the table as it was.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etherconn_core::key::{L2EndpointKey, VlanIds};
use etherconn_core::wire::{EtherType, VlanTag};
use etherconn_relay::{
    Dispatcher, DispatcherConfig, EtherConn, EtherConnConfig, PacketRelay, RegistrationChange,
    RegistrationObserver, RelayError,
};

#[derive(Debug, Default)]
struct Recorder {
    changes: Mutex<Vec<RegistrationChange>>,
    /// Refuse additions once this many changes were recorded.
    refuse_after: Option<usize>,
}

impl RegistrationObserver for Recorder {
    fn on_change(&self, change: RegistrationChange) -> Result<(), RelayError> {
        let mut c = self.changes.lock().unwrap();
        if change.is_addition() && self.refuse_after.is_some_and(|n| c.len() >= n) {
            return Err(RelayError::BackendRefused("map full".into()));
        }
        c.push(change);
        Ok(())
    }
}

#[derive(Debug)]
struct NullRelay(Arc<Dispatcher>);

impl PacketRelay for NullRelay {
    fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.0
    }
    fn send(&self, _frame: &[u8], _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn stop(&self) {
        self.0.stop();
    }
}

fn relay(rec: &Arc<Recorder>) -> Arc<dyn PacketRelay> {
    Arc::new(NullRelay(Dispatcher::with_observer(
        DispatcherConfig::default(),
        rec.clone(),
    )))
}

fn take(rec: &Recorder) -> Vec<RegistrationChange> {
    std::mem::take(&mut *rec.changes.lock().unwrap())
}

#[test]
fn every_change_is_reported_once_in_order() {
    use RegistrationChange::*;
    let rec = Arc::new(Recorder::default());
    let relay = relay(&rec);
    let mac = "02:00:00:00:00:01".parse().unwrap();
    let v = VlanTag::dot1q(7).unwrap();
    let vlans = VlanIds::one(v.id);
    let cfg = EtherConnConfig::default()
        .ethertypes(&[EtherType::IPV4, EtherType::ARP])
        .recv_multicast(true);
    let a = EtherConn::new(relay.clone(), mac, &[v], cfg.clone()).unwrap();
    let k4 = L2EndpointKey::new(mac, vlans, EtherType::IPV4);
    let karp = L2EndpointKey::new(mac, vlans, EtherType::ARP);
    assert_eq!(
        take(&rec),
        [
            KeyAdded(k4),
            KeyAdded(karp),
            GroupAdded(vlans, EtherType::IPV4),
            GroupAdded(vlans, EtherType::ARP),
        ]
    );

    // A second multicast conn on the same groups adds its keys, not the groups; a taken key is
    // refused and reports nothing.
    let mac2 = "02:00:00:00:00:02".parse().unwrap();
    let b = EtherConn::new(relay.clone(), mac2, &[v], cfg.clone()).unwrap();
    assert!(EtherConn::new(relay.clone(), mac2, &[v], cfg.clone()).is_err());
    let b4 = L2EndpointKey::new(mac2, vlans, EtherType::IPV4);
    let barp = L2EndpointKey::new(mac2, vlans, EtherType::ARP);
    assert_eq!(take(&rec), [KeyAdded(b4), KeyAdded(barp)]);

    // Replacing a key keeps the set of keys: nothing to report.
    let c = EtherConn::new(relay.clone(), mac2, &[v], cfg.clone().replace(true)).unwrap();
    assert_eq!(take(&rec), []);
    drop(b); // its keys now belong to `c`: nothing changes
    assert_eq!(take(&rec), []);
    drop(c);
    assert_eq!(take(&rec), [KeyRemoved(b4), KeyRemoved(barp)]);
    drop(a);
    assert_eq!(
        take(&rec),
        [
            KeyRemoved(k4),
            KeyRemoved(karp),
            GroupRemoved(vlans, EtherType::IPV4),
            GroupRemoved(vlans, EtherType::ARP),
        ]
    );

    let d = EtherConn::new(
        relay.clone(),
        mac,
        &[],
        EtherConnConfig::default()
            .ethertypes(&[EtherType::IPV4])
            .default_conn(true),
    )
    .unwrap();
    let k = L2EndpointKey::new(mac, VlanIds::NONE, EtherType::IPV4);
    assert_eq!(take(&rec), [KeyAdded(k), DefaultSet]);
    drop(d);
    assert_eq!(take(&rec), [KeyRemoved(k), DefaultCleared]);
    assert_eq!(relay.dispatcher().key_count(), 0);
}

#[test]
fn a_refused_addition_leaves_the_table_as_it_was() {
    use RegistrationChange::*;
    // Accepts one key, then refuses: the conn's second key fails, the first is taken back.
    let rec = Arc::new(Recorder {
        refuse_after: Some(1),
        ..Default::default()
    });
    let relay = relay(&rec);
    let mac = "02:00:00:00:00:01".parse().unwrap();
    let cfg = EtherConnConfig::default().ethertypes(&[EtherType::IPV4, EtherType::ARP]);
    let err = EtherConn::new(relay.clone(), mac, &[], cfg).unwrap_err();
    assert!(err.to_string().contains("map full"), "{err}");
    let k4 = L2EndpointKey::new(mac, VlanIds::NONE, EtherType::IPV4);
    assert_eq!(take(&rec), [KeyAdded(k4), KeyRemoved(k4)]);
    assert_eq!(relay.dispatcher().key_count(), 0);
}
