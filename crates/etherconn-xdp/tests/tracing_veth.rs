//! What the AF_XDP relay tells a `tracing` subscriber over a veth pair: that it opened
//! (interface, MTU, queues, bind mode, UMEM and ring sizes) and attached its XDP program,
//! rate-limited summaries of what it dropped, from its queue thread, and that it stopped, with
//! its counters.
//!
//! Frames to an endpoint nobody registered never reach this relay (the program passes them to
//! the host), so unlike the AF_PACKET relay's test there is no `rx_miss` to summarise: the
//! DEBUG summary is checked with frames that fail the UDP checksum check (`rx_invalid`).
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead. One test in this binary: it
//! installs the process-wide subscriber (the relay's receive threads are not the test's).
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{EtherType, MacAddr};
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
use etherconn_testbed::{EventLog, LoggedEvent, Side, Testbed};
use etherconn_xdp::{XdpRelay, XdpRelayConfig};
use tracing::Level;

const ET: EtherType = EtherType(0x88b5);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0xec, 0x19, 0, 0, n])
}

fn relay_in(tb: &Testbed, side: Side) -> Arc<dyn PacketRelay> {
    let ifname = tb.ifname(side).to_owned();
    let relay: Arc<dyn PacketRelay> = tb
        .netns(side)
        .run_in(move || XdpRelay::new(&ifname, XdpRelayConfig::default().rings(2048, 1024)))
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
    let tb = Testbed::new("ecxtr-").unwrap();
    let (a_if, b_if) = (tb.ifname(Side::A).to_owned(), tb.ifname(Side::B).to_owned());
    let a = relay_in(&tb, Side::A);
    let b = relay_in(&tb, Side::B);

    let opened =
        wait_for(&log, "AF_XDP relay opened", &a_if, Duration::ZERO).expect("an open event");
    assert_eq!(opened.level, Level::INFO);
    assert_eq!(opened.field("mtu"), Some("1500"));
    assert_eq!(opened.field("queues"), Some("[0]"));
    assert_eq!(opened.field("mode"), Some("Copy"));
    assert_eq!(opened.field("frame_size"), Some("2048"));
    assert_eq!(opened.field("rx_ring"), Some("2048"));
    assert_eq!(opened.field("tx_ring"), Some("1024"));
    assert_eq!(opened.field("capture"), Some("false"));
    let attached = wait_for(
        &log,
        "AF_XDP relay: program attached",
        &a_if,
        Duration::ZERO,
    )
    .expect("an attach event");
    assert_eq!(attached.level, Level::DEBUG);
    assert!(attached.field("prog_id").unwrap().parse::<u32>().unwrap() > 0);

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
    // A registered IPv4 endpoint, sent UDP with a wrong checksum.
    let checked = EtherConn::new(a.clone(), mac(3), &[], EtherConnConfig::default()).unwrap();
    let mut bad = vec![0u8; 128];
    let len = build_udp_frame(
        &mut bad,
        &UdpFrame {
            src_mac: mac(2),
            dst_mac: checked.local_mac(),
            vlans: &[],
            src: "10.93.0.2:7000".parse().unwrap(),
            dst: "10.93.0.1:9000".parse().unwrap(),
            ttl: 64,
            dscp: 0,
            payload: b"bad checksum",
        },
    )
    .unwrap();
    // The UDP checksum field: after 14 bytes of Ethernet, 20 of IPv4, at offset 6.
    bad[14 + 20 + 6] ^= 0xff;
    for _ in 0..5 {
        sender.send_to(b"over", ET, small.local_mac()).unwrap();
        b.send(&bad[..len], None).unwrap();
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
    assert!(
        discarded
            .field("rx_invalid")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1,
        "{discarded:?}"
    );
    // At most one summary of each kind per second from the relay's threads.
    let n = log.with_message("relay dropped frames").len();
    assert!(n <= 2, "{n} WARN summaries");

    drop(small);
    drop(checked);
    drop(sender);
    let stats = a.stats();
    a.stop();
    let stopped =
        wait_for(&log, "AF_XDP relay stopped", &a_if, Duration::ZERO).expect("a stop event");
    assert_eq!(stopped.level, Level::INFO);
    let text = stopped.field("stats").unwrap().to_owned();
    assert!(
        text.contains(&format!("rx_queue_full={}", stats.rx_queue_full)),
        "{text}"
    );
    b.stop();
    assert!(wait_for(&log, "AF_XDP relay stopped", &b_if, Duration::ZERO).is_some());
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix("ecxtr-"));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
