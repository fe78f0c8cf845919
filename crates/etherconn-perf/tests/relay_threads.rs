//! `bench --relay-threads 2`: the receiving AF_PACKET relay runs two receive threads in a
//! fanout group, both of them take a share of the frames, and every datagram the receiver
//! counts is one the kernel's veth carried to it.

use etherconn_testbed::require_root;
use serde_json::Value;

mod common;

use common::{find, run_bench, text};

fn count(v: &Value, section: &str, key: &str) -> u64 {
    v[section][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {section}.{key} in {v:#}"))
}

#[test]
fn two_relay_threads_both_deliver_what_the_veth_carried() {
    if !require_root("two_relay_threads_both_deliver_what_the_veth_carried") {
        return;
    }
    // Paced well below what one thread handles, so that a loaded machine loses nothing
    // between the veth and the relay; 64 endpoints are 64 flows for the fanout hash.
    let args = [
        "bench",
        "--backend",
        "rawsock",
        "--relay-threads",
        "2",
        "--endpoints",
        "64",
        "--rate",
        "40000",
        "--seconds",
        "1",
        "--warmup",
        "0.3",
        "--json",
    ];
    let (json, out) = run_bench(&args);
    assert_eq!(json["relay_threads"], 2);
    assert!(text(&out.stderr).contains("2 receive threads (fanout hash)"));
    let r = find(&json, "results", "backend", "rawsock");

    // Each receive thread of the receiving relay ran during the window, and neither was a
    // bystander: with 64 flows hashed over two sockets, each takes a real share of the work.
    let threads = r["thread_cpu_pct"]
        .as_object()
        .unwrap_or_else(|| panic!("no thread_cpu_pct in {r:#}"));
    let cpu = |name: &str| {
        threads
            .get(name)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("no {name} in {threads:?}"))
    };
    let (rx0, rx1) = (cpu("etherconn-rx0"), cpu("etherconn-rx1"));
    assert!(!threads.contains_key("etherconn-rx2"), "{threads:?}");
    assert!(rx0 > 0.0 && rx1 > 0.0, "{threads:?}");
    let share = rx0.min(rx1) / (rx0 + rx1);
    assert!(
        share >= 0.15,
        "one relay thread did {:.0}% of the two threads' work: {threads:?}",
        share * 100.0
    );

    // What the receiver counted against what the kernel's veth carried (whole run).
    let rx_total = r["rx_total"].as_u64().unwrap();
    let tx_total = r["tx_total"].as_u64().unwrap();
    let veth_b = count(r, "path_counters", "veth_b_rx_packets");
    let offered = count(r, "rx_counters", "relay_rx_offered");
    let delivered = count(r, "rx_counters", "relay_rx_delivered");
    let datagrams = count(r, "rx_counters", "rx_datagrams");
    assert!(rx_total > 10_000, "{r:#}");
    assert_eq!(datagrams, rx_total, "{r:#}");
    assert!(delivered >= datagrams, "{r:#}");
    assert!(offered >= delivered, "{r:#}");
    assert!(
        veth_b >= offered,
        "the relay saw more than the veth carried: {r:#}"
    );
    assert!(tx_total >= rx_total, "{r:#}");
    assert!(
        rx_total as f64 >= 0.98 * veth_b as f64,
        "the relay threads lost more than 2% of what the veth carried: {r:#}"
    );
    // One flow stays on one socket: fanout hash keeps each endpoint's datagrams in order.
    assert_eq!(r["out_of_order"], 0, "{r:#}");
    assert_eq!(r["bad_payload"], 0, "{r:#}");
}
