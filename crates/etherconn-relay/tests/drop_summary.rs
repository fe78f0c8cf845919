//! Drop summaries through `tracing`: at most one per interval, with the counters' growth since
//! the last one, losses at WARN and discards by rule at DEBUG; nothing for a subscriber that
//! does not listen at those levels, and no allocation without a subscriber (a counting global
//! allocator watches the calls).
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::time::Duration;

use etherconn_core::wire::{EtherType, MacAddr};
use etherconn_relay::{
    DispatcherConfig, EtherConn, EtherConnConfig, LoopbackRelay, PacketRelay, DROP_SUMMARY_INTERVAL,
};
use etherconn_testalloc as alloc;
use etherconn_testbed::EventLog;
use tracing::Level;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

const ET: EtherType = EtherType(0x88b5);

/// A relay with a conn whose queue holds one frame, and a sender.
fn relay() -> (Arc<dyn PacketRelay>, EtherConn, EtherConn) {
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(DispatcherConfig::default());
    let cfg = EtherConnConfig::default().ethertypes(&[ET]);
    let small = EtherConn::new(
        relay.clone(),
        MacAddr([2, 0, 0, 0, 0, 1]),
        &[],
        cfg.clone().queue_depth(1),
    )
    .unwrap();
    let sender = EtherConn::new(relay.clone(), MacAddr([2, 0, 0, 0, 0, 2]), &[], cfg).unwrap();
    (relay, small, sender)
}

/// `full` frames past the small conn's queue, and `miss` to a MAC no conn has.
fn drop_some(small: &EtherConn, sender: &EtherConn, full: usize, miss: usize) {
    for _ in 0..=full {
        sender.send_to(b"x", ET, small.local_mac()).unwrap();
    }
    let mut buf = [0u8; 64];
    small.recv_from(&mut buf).unwrap();
    for _ in 0..miss {
        sender
            .send_to(b"x", ET, MacAddr([2, 0, 0, 0, 0, 9]))
            .unwrap();
    }
}

#[test]
fn summaries_are_rate_limited_and_carry_the_growth() {
    let (relay, small, sender) = relay();
    let d = relay.dispatcher();
    let log = EventLog::new(Level::DEBUG);
    drop_some(&small, &sender, 3, 2);
    tracing::subscriber::with_default(log.clone(), || {
        for _ in 0..100 {
            d.summarise_drops("lo-test");
        }
    });
    let events = log.events();
    assert_eq!(
        events.len(),
        2,
        "one of each kind in the interval: {events:?}"
    );
    let warn = &log.with_message("relay dropped frames")[0];
    assert_eq!(warn.level, Level::WARN);
    assert_eq!(warn.field("relay"), Some("lo-test"));
    assert_eq!(warn.field("rx_queue_full"), Some("3"));
    assert_eq!(warn.field("rx_no_buffer"), Some("0"));
    let debug = &log.with_message("relay discarded frames")[0];
    assert_eq!(debug.level, Level::DEBUG);
    assert_eq!(debug.field("rx_miss"), Some("2"));

    // The next interval tells only what was new, and nothing when nothing was.
    drop_some(&small, &sender, 1, 0);
    std::thread::sleep(DROP_SUMMARY_INTERVAL + Duration::from_millis(50));
    tracing::subscriber::with_default(log.clone(), || d.summarise_drops("lo-test"));
    let warns = log.with_message("relay dropped frames");
    assert_eq!(warns.len(), 2);
    assert_eq!(warns[1].field("rx_queue_full"), Some("1"));
    assert_eq!(log.with_message("relay discarded frames").len(), 1);
    std::thread::sleep(DROP_SUMMARY_INTERVAL + Duration::from_millis(50));
    tracing::subscriber::with_default(log.clone(), || d.summarise_drops("lo-test"));
    assert_eq!(log.events().len(), 3, "no drops, no summary");
}

#[test]
fn a_warn_subscriber_gets_no_debug_summary() {
    let (relay, small, sender) = relay();
    let log = EventLog::new(Level::WARN);
    drop_some(&small, &sender, 1, 5);
    tracing::subscriber::with_default(log.clone(), || {
        relay.dispatcher().summarise_drops("lo-test")
    });
    let events = log.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].message, "relay dropped frames");
}

#[test]
fn without_a_subscriber_a_summary_costs_no_allocation() {
    let (relay, small, sender) = relay();
    drop_some(&small, &sender, 2, 2);
    alloc::count_this_thread();
    let before = alloc::allocations();
    for _ in 0..3 {
        for _ in 0..10_000 {
            relay.dispatcher().summarise_drops("lo-test");
        }
        std::thread::sleep(DROP_SUMMARY_INTERVAL / 2);
    }
    assert_eq!(alloc::allocations() - before, 0);
}
