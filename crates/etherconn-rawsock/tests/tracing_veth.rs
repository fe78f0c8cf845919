//! What the AF_PACKET relay tells a `tracing` subscriber over a veth pair: that it opened
//! (interface, ring sizes, filter) and attached its filter, rate-limited summaries of what it
//! dropped, from its receive thread, and that it stopped, with its counters.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead. One test in this binary: it
//! installs the process-wide subscriber (the relay's receive threads are not the test's).
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::wire::{EtherType, MacAddr};
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig, RingConfig};
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
use etherconn_testbed::{EventLog, LoggedEvent, Side, Testbed};
use tracing::Level;

const ET: EtherType = EtherType(0x88b5);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0xec, 0x17, 0, 0, n])
}

fn relay_in(tb: &Testbed, side: Side) -> Arc<dyn PacketRelay> {
    let ifname = tb.ifname(side).to_owned();
    let config = RawSocketRelayConfig::default().ethertypes(&[ET]);
    let relay: Arc<dyn PacketRelay> = tb
        .netns(side)
        .run_in(move || RawSocketRelay::new(&ifname, config))
        .unwrap()
        .unwrap();
    relay
}

/// The first event with `message` whose `interface` or `relay` field is `ifname`, waiting
/// up to `wait` for it.
fn wait_for(log: &EventLog, message: &str, ifname: &str, wait: Duration) -> Option<LoggedEvent> {
    let deadline = Instant::now() + wait;
    loop {
        let found = log
            .with_message(message)
            .into_iter()
            .find(|e| e.field("interface") == Some(ifname) || e.field("relay") == Some(ifname));
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn lifecycle_and_drop_summaries_reach_a_subscriber() {
    if !etherconn_testbed::require_root("lifecycle_and_drop_summaries_reach_a_subscriber") {
        return;
    }
    let log = EventLog::new(Level::DEBUG);
    tracing::subscriber::set_global_default(log.clone()).unwrap();
    let tb = Testbed::new("ectr-").unwrap();
    let (a_if, b_if) = (tb.ifname(Side::A).to_owned(), tb.ifname(Side::B).to_owned());
    let a = relay_in(&tb, Side::A);
    let b = relay_in(&tb, Side::B);

    let opened =
        wait_for(&log, "AF_PACKET relay opened", &a_if, Duration::ZERO).expect("an open event");
    assert_eq!(opened.level, Level::INFO);
    assert_eq!(opened.field("ring_block_size"), Some("262144"));
    let blocks = RingConfig::DEFAULT_BLOCK_COUNT.to_string();
    assert_eq!(opened.field("ring_block_count"), Some(blocks.as_str()));
    assert_eq!(opened.field("threads"), Some("1"));
    assert_eq!(opened.field("filter"), Some("ethertypes"));
    let filter = wait_for(
        &log,
        "AF_PACKET relay: receive filter attached",
        &a_if,
        Duration::ZERO,
    )
    .expect("a filter event");
    assert_eq!(filter.level, Level::DEBUG);
    assert!(
        filter
            .field("instructions")
            .unwrap()
            .parse::<u32>()
            .unwrap()
            > 0
    );

    // A conn on A whose queue holds one frame, frames past it, and frames to no conn.
    let small = EtherConn::new(
        a.clone(),
        mac(1),
        &[],
        EtherConnConfig::default().ethertypes(&[ET]).queue_depth(1),
    )
    .unwrap();
    let sender = EtherConn::new(
        b.clone(),
        mac(2),
        &[],
        EtherConnConfig::default().ethertypes(&[ET]),
    )
    .unwrap();
    for _ in 0..5 {
        sender.send_to(b"over", ET, small.local_mac()).unwrap();
        sender.send_to(b"nobody", ET, mac(9)).unwrap();
    }
    let wait = Duration::from_secs(5);
    let dropped = wait_for(&log, "relay dropped frames", &a_if, wait).expect("a WARN summary");
    assert_eq!(dropped.level, Level::WARN);
    assert!(
        dropped
            .field("rx_queue_full")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let discarded = wait_for(&log, "relay discarded frames", &a_if, wait).expect("a DEBUG summary");
    assert!(discarded.field("rx_miss").unwrap().parse::<u64>().unwrap() >= 1);
    // At most one summary of each kind per second from the relay's threads.
    let n = log.with_message("relay dropped frames").len();
    assert!(n <= 2, "{n} WARN summaries");

    drop(small);
    drop(sender);
    let stats = a.stats();
    a.stop();
    let stopped =
        wait_for(&log, "AF_PACKET relay stopped", &a_if, Duration::ZERO).expect("a stop event");
    assert_eq!(stopped.level, Level::INFO);
    let text = stopped.field("stats").unwrap().to_owned();
    assert!(
        text.contains(&format!("rx_queue_full={}", stats.rx_queue_full)),
        "{text}"
    );
    b.stop();
    assert!(wait_for(&log, "AF_PACKET relay stopped", &b_if, Duration::ZERO).is_some());
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix("ectr-"));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
