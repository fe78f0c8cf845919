//! The memory budget (docs/architecture.md, "Memory budget"): a relay with a small budget takes
//! conns up to it, refuses the next one with `OverBudget` (saying what it would take, what is
//! taken and the budget), keeps the conns it has working, and takes a new conn once one closes.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::wire::{EtherType, MacAddr};
use etherconn_relay::{
    human_bytes, DispatcherConfig, EtherConn, EtherConnConfig, LoopbackRelay, MemoryBudget,
    MemoryLimit, PacketRelay, RelayError,
};

const ET: EtherType = EtherType(0x88b5);
const DEPTH: usize = 8;

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn cfg() -> EtherConnConfig {
    EtherConnConfig::default()
        .ethertypes(&[ET])
        .queue_depth(DEPTH)
}

/// A loopback relay whose budget holds exactly `conns` conns of `DEPTH` frames.
fn relay_for(conns: u64) -> (Arc<dyn PacketRelay>, u64) {
    let base = DispatcherConfig::default();
    let one = base.budget().bytes(MemoryBudget::conn_cost(DEPTH).times(1));
    let limit = base
        .budget()
        .bytes(MemoryBudget::conn_cost(DEPTH).times(conns));
    let relay: Arc<dyn PacketRelay> =
        LoopbackRelay::new(base.memory_budget(MemoryLimit::Bytes(limit)));
    (relay, one)
}

fn open(relay: &Arc<dyn PacketRelay>, n: u8) -> Result<EtherConn, RelayError> {
    let c = EtherConn::new(relay.clone(), mac(n), &[], cfg())?;
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    Ok(c)
}

/// `a` sends a frame to `b`, which must receive exactly it.
fn exchange(a: &EtherConn, b: &EtherConn, tag: &[u8]) {
    a.send_to(tag, ET, b.local_mac()).unwrap();
    let mut buf = [0u8; 1514];
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!(from.mac, a.local_mac());
    // Short frames are padded to 60 bytes on the wire.
    assert!(n >= tag.len());
    assert_eq!(&buf[..tag.len()], tag);
}

#[test]
fn refuses_the_conn_past_the_budget_and_keeps_serving_the_others() {
    let (relay, one) = relay_for(3);
    let budget = Arc::clone(relay.dispatcher().budget());
    let a = open(&relay, 1).unwrap();
    let b = open(&relay, 2).unwrap();
    let c = open(&relay, 3).unwrap();
    assert_eq!(budget.reserved(), 3 * one);

    let refused = open(&relay, 4).unwrap_err();
    match refused {
        RelayError::OverBudget {
            need,
            reserved,
            limit,
        } => {
            assert_eq!(need, one);
            assert_eq!(reserved, 3 * one);
            assert_eq!(limit, 3 * one);
        }
        ref e => panic!("expected OverBudget, got {e:?}"),
    }
    let text = refused.to_string();
    for part in [
        human_bytes(one),
        human_bytes(3 * one),
        "DispatcherConfig::memory_budget".to_owned(),
    ] {
        assert!(text.contains(&part), "{text:?} lacks {part:?}");
    }
    assert_eq!(std::io::Error::from(refused).kind(), ErrorKind::OutOfMemory);
    // The refusal left nothing behind: no key, no reservation.
    assert_eq!(relay.dispatcher().key_count(), 3);
    assert_eq!(budget.reserved(), 3 * one);

    // The conns already there keep sending and receiving.
    let before = relay.stats().rx_delivered;
    exchange(&a, &b, b"after the refusal, a to b");
    exchange(&b, &c, b"after the refusal, b to c");
    exchange(&c, &a, b"after the refusal, c to a");
    assert_eq!(relay.stats().rx_delivered, before + 3);

    // Closing one gives its share back: a new conn fits, and works.
    drop(b);
    assert_eq!(budget.reserved(), 2 * one);
    let d = open(&relay, 4).unwrap();
    exchange(&a, &d, b"to the conn that now fits");
    exchange(&d, &c, b"from the conn that now fits");
    assert!(matches!(
        open(&relay, 5),
        Err(RelayError::OverBudget { .. })
    ));
}

#[test]
fn a_conn_refused_for_another_reason_gives_its_reservation_back() {
    let (relay, one) = relay_for(2);
    let _a = open(&relay, 1).unwrap();
    // The same MAC again: its key is taken.
    assert!(matches!(open(&relay, 1), Err(RelayError::KeyInUse(_))));
    assert_eq!(relay.dispatcher().budget().reserved(), one);
    let _b = open(&relay, 2).unwrap();
    // A stopped relay refuses before reserving anything.
    relay.stop();
    assert!(matches!(open(&relay, 3), Err(RelayError::Stopped)));
    assert_eq!(relay.dispatcher().budget().reserved(), 2 * one);
}

#[test]
fn a_deeper_queue_is_refused_where_a_shallower_one_fits() {
    let (relay, one) = relay_for(2);
    let _a = open(&relay, 1).unwrap();
    let deep = EtherConn::new(relay.clone(), mac(2), &[], cfg().queue_depth(4 * DEPTH));
    match deep {
        Err(RelayError::OverBudget { need, .. }) => assert!(need > one),
        other => panic!("expected OverBudget, got {other:?}"),
    }
    let _b = open(&relay, 2).unwrap();
}

#[test]
fn unlimited_takes_everything_and_the_default_is_the_machines() {
    let relay: Arc<dyn PacketRelay> =
        LoopbackRelay::new(DispatcherConfig::default().memory_budget(MemoryLimit::Unlimited));
    assert_eq!(relay.dispatcher().budget().limit(), u64::MAX);
    // A reservation no machine could hold: unlimited takes it, and a conn still registers.
    let huge = relay
        .dispatcher()
        .budget()
        .reserve(MemoryBudget::conn_cost(usize::MAX))
        .unwrap();
    let _a = open(&relay, 1).unwrap();
    drop(huge);

    let default = LoopbackRelay::new(DispatcherConfig::default());
    let limit = default.dispatcher().budget().limit();
    let mem = etherconn_relay::MemInfo::read();
    if let Some(m) = mem {
        assert!(limit <= m.total / 2, "{limit} > half of {}", m.total);
        assert!(limit > 0);
    }
}
