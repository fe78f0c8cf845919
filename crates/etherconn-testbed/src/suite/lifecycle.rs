//! What the relay tells a `tracing` subscriber over a veth pair: that it opened and attached
//! its filter or program, rate-limited summaries of what it dropped and discarded from its own
//! threads, and that it stopped, with its counters.

use std::time::{Duration, Instant};

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::MacAddr;
use etherconn_relay::{EtherConn, EtherConnConfig};
use tracing::Level;

use super::common::{assert_no_leftovers, open_in, quiet, wait_stats, Backend, ET, WAIT};
use crate::{EventLog, LoggedEvent, Side, Testbed};

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0xec, 0x17, 0, 0, n])
}

/// The first event with `message` whose `interface` or `relay` field is `ifname`, waiting
/// up to `wait` for it.
fn wait_for(log: &EventLog, message: &str, ifname: &str, wait: Duration) -> Option<LoggedEvent> {
    let deadline = Instant::now() + wait;
    loop {
        let found = of_interface(log, message, ifname).into_iter().next();
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The events with `message` whose `interface` or `relay` field is `ifname`.
fn of_interface(log: &EventLog, message: &str, ifname: &str) -> Vec<LoggedEvent> {
    log.with_message(message)
        .into_iter()
        .filter(|e| e.field("interface") == Some(ifname) || e.field("relay") == Some(ifname))
        .collect()
}

/// The field `name` of `event` as a number.
fn number(event: &LoggedEvent, name: &str) -> u64 {
    let v = event
        .field(name)
        .unwrap_or_else(|| panic!("no {name}: {event:?}"));
    v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}"))
}

/// With an [`EventLog`] as the process's subscriber (installed here: the relay's threads are
/// not the test's, so no other case may install one): the open event at INFO with the fields
/// [`Events::opened`](super::Events::opened) lists, the DEBUG attach event, a WARN summary of
/// a full conn queue (at most one a second) and a DEBUG summary of discarded frames (frames to
/// no conn, or, where the relay is not offered those, bad UDP checksums), and an INFO stop
/// event of each relay with the final counters.
pub fn lifecycle_and_drop_summaries_reach_a_subscriber(backend: &Backend) {
    let log = EventLog::new(Level::DEBUG);
    tracing::subscriber::set_global_default(log.clone())
        .expect("only this case installs a subscriber");
    let ev = backend.events;
    let prefix = &backend.prefix("ev");
    let tb = Testbed::new(prefix).unwrap();
    quiet(&tb);
    let (a_if, b_if) = (tb.ifname(Side::A).to_owned(), tb.ifname(Side::B).to_owned());
    let a = open_in(&tb, Side::A, ev.open);
    let b = open_in(&tb, Side::B, ev.open);

    let opened = wait_for(&log, &format!("{} opened", ev.name), &a_if, Duration::ZERO)
        .expect("an open event");
    assert_eq!(opened.level, Level::INFO);
    for (name, value) in ev.opened {
        assert_eq!(opened.field(name), Some(*value), "{name}: {opened:?}");
    }
    let (attach_message, attach_field) = ev.attached;
    let attached = wait_for(&log, attach_message, &a_if, Duration::ZERO).expect("an attach event");
    assert_eq!(attached.level, Level::DEBUG);
    assert!(number(&attached, attach_field) > 0, "{attached:?}");

    // A conn on A whose queue holds one frame, and frames past it.
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
    // What A discards: frames to no conn where it is offered those, else UDP with a wrong
    // checksum to a registered IPv4 endpoint.
    let checked = (!backend.sees_unregistered)
        .then(|| EtherConn::new(a.clone(), mac(3), &[], EtherConnConfig::default()).unwrap());
    let mut bad = vec![0u8; 128];
    let bad_frame = UdpFrame {
        src_mac: mac(2),
        dst_mac: mac(3),
        vlans: &[],
        src: "10.93.0.2:7000".parse().unwrap(),
        dst: "10.93.0.1:9000".parse().unwrap(),
        ttl: 64,
        dscp: 0,
        payload: b"bad checksum",
    };
    let len = build_udp_frame(&mut bad, &bad_frame).unwrap();
    // The UDP checksum field: after 14 bytes of Ethernet, 20 of IPv4, at offset 6.
    bad[14 + 20 + 6] ^= 0xff;
    for _ in 0..5 {
        sender.send_to(b"over", ET, small.local_mac()).unwrap();
        if backend.sees_unregistered {
            sender.send_to(b"nobody", ET, mac(9)).unwrap();
        } else {
            b.send(&bad[..len], None).unwrap();
        }
    }
    let dropped = wait_for(&log, "relay dropped frames", &a_if, WAIT).expect("a WARN summary");
    assert_eq!(dropped.level, Level::WARN);
    assert!(number(&dropped, "rx_queue_full") >= 1, "{dropped:?}");
    let discarded = wait_for(&log, "relay discarded frames", &a_if, WAIT).expect("a DEBUG summary");
    assert_eq!(discarded.level, Level::DEBUG);
    let reason = if backend.sees_unregistered {
        "rx_miss"
    } else {
        "rx_invalid"
    };
    assert!(number(&discarded, reason) >= 1, "{discarded:?}");
    // At most one summary of each kind per second from the relay's threads.
    let n = of_interface(&log, "relay dropped frames", &a_if).len();
    assert!(n <= 2, "{n} WARN summaries");

    // Every frame counted before the final counters are read.
    let stats = wait_stats(&a, "every frame counted", |s| {
        let discarded = if backend.sees_unregistered {
            s.rx_miss
        } else {
            s.rx_invalid
        };
        s.rx_delivered + s.rx_queue_full == 5 && discarded == 5
    });
    drop(small);
    drop(checked);
    drop(sender);
    a.stop();
    let stopped = wait_for(&log, &format!("{} stopped", ev.name), &a_if, Duration::ZERO)
        .expect("a stop event");
    assert_eq!(stopped.level, Level::INFO);
    let text = stopped.field("stats").unwrap().to_owned();
    for (name, value) in [
        ("rx_queue_full", stats.rx_queue_full),
        ("rx_miss", stats.rx_miss),
        ("rx_invalid", stats.rx_invalid),
    ] {
        assert!(text.contains(&format!("{name}={value}")), "{text}");
    }
    b.stop();
    let stopped = format!("{} stopped", ev.name);
    assert!(wait_for(&log, &stopped, &b_if, Duration::ZERO).is_some());
    drop(tb);
    assert_no_leftovers(prefix);
}
