//! What the libpcap relay tells a `tracing` subscriber over a veth pair: that it opened
//! (interface, buffer, snapshot length, filter) and attached its filter, a rate-limited summary
//! of what it discarded, from its receive thread, and that it stopped, with its counters.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead. One test in this binary: it
//! installs the process-wide subscriber (the relay's receive thread is not the test's).
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::wire::{EtherType, MacAddr};
use etherconn_pcap::{PcapRelay, PcapRelayConfig};
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
use etherconn_testbed::{EventLog, LoggedEvent, Side, Testbed};
use tracing::Level;

const ET: EtherType = EtherType(0x88b5);

fn relay_in(tb: &Testbed, side: Side) -> Arc<dyn PacketRelay> {
    let ifname = tb.ifname(side).to_owned();
    let config = PcapRelayConfig::default().ethertypes(&[ET]);
    let relay: Arc<dyn PacketRelay> = tb
        .netns(side)
        .run_in(move || PcapRelay::new(&ifname, config))
        .unwrap()
        .unwrap();
    relay
}

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
    if !etherconn_testbed::require_root("pcap lifecycle_and_drop_summaries_reach_a_subscriber") {
        return;
    }
    let log = EventLog::new(Level::DEBUG);
    tracing::subscriber::set_global_default(log.clone()).unwrap();
    let tb = Testbed::new("ectp-").unwrap();
    let a_if = tb.ifname(Side::A).to_owned();
    let a = relay_in(&tb, Side::A);
    let b = relay_in(&tb, Side::B);
    let opened =
        wait_for(&log, "libpcap relay opened", &a_if, Duration::ZERO).expect("an open event");
    assert_eq!(opened.level, Level::INFO);
    assert_eq!(opened.field("buffer_size"), Some("4194304"));
    assert_eq!(opened.field("snaplen"), Some("2048"));
    assert_eq!(opened.field("filter"), Some("ethertypes"));
    let filter = wait_for(
        &log,
        "libpcap relay: capture filter attached",
        &a_if,
        Duration::ZERO,
    )
    .expect("a filter event");
    assert!(
        filter
            .field("instructions")
            .unwrap()
            .parse::<u32>()
            .unwrap()
            > 0
    );

    // Frames to a MAC no conn on A has: discarded by rule, summarised at DEBUG.
    let sender = EtherConn::new(
        b.clone(),
        MacAddr([0x02, 0xec, 0x18, 0, 0, 2]),
        &[],
        EtherConnConfig::default().ethertypes(&[ET]),
    )
    .unwrap();
    for _ in 0..5 {
        sender
            .send_to(b"nobody", ET, MacAddr([0x02, 0xec, 0x18, 0, 0, 9]))
            .unwrap();
    }
    let discarded = wait_for(
        &log,
        "relay discarded frames",
        &a_if,
        Duration::from_secs(5),
    )
    .expect("a DEBUG summary");
    assert_eq!(discarded.level, Level::DEBUG);
    assert!(discarded.field("rx_miss").unwrap().parse::<u64>().unwrap() >= 1);

    drop(sender);
    a.stop();
    let stopped =
        wait_for(&log, "libpcap relay stopped", &a_if, Duration::ZERO).expect("a stop event");
    assert!(stopped.field("stats").unwrap().contains("rx_miss="));
    b.stop();
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix("ectp-"));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
