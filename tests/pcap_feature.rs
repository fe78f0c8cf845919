//! The facade's `pcap` feature: `etherconn::pcap` is the libpcap relay, and it runs the same
//! conns as any relay. Built with `cargo test --features pcap --test pcap_feature` (the
//! workspace test run does not turn features on; `scripts/test.sh` runs this one).
#![cfg(all(feature = "pcap", target_os = "linux"))]

use std::sync::Arc;

use etherconn::pcap::{Error, PcapRelay, PcapRelayConfig};
use etherconn::relay::PacketRelay;
use etherconn::wire::EtherType;
use etherconn::{EtherConn, EtherConnConfig};

#[test]
fn facade_reexports_the_pcap_relay() {
    // No such device: typed, whatever the privileges.
    let r = PcapRelay::new("doesnotexist0", PcapRelayConfig::default());
    assert!(
        matches!(
            &r,
            Err(Error::NoSuchDevice { .. }) | Err(Error::PermissionDenied { .. })
        ),
        "{r:?}"
    );
    if !etherconn_testbed::require_root("facade_reexports_the_pcap_relay") {
        return;
    }
    assert!(matches!(&r, Err(Error::NoSuchDevice { .. })), "{r:?}");
    // The loopback device of a fresh namespace: an EtherConn sends to itself through libpcap
    // (lo carries Ethernet framing; outgoing frames come back in as incoming).
    let ns = etherconn_testbed::Netns::new("ecfp-").unwrap();
    ns.ip(&["link", "set", "lo", "up"]).unwrap();
    let relay: Arc<dyn PacketRelay> = ns
        .run_in(|| {
            PcapRelay::new(
                "lo",
                PcapRelayConfig::default().ethertypes(&[EtherType(0x88b5)]),
            )
        })
        .unwrap()
        .unwrap();
    let cfg = EtherConnConfig::default().ethertypes(&[EtherType(0x88b5)]);
    let a = EtherConn::new(
        relay.clone(),
        "02:00:00:00:00:0a".parse().unwrap(),
        &[],
        cfg.clone(),
    )
    .unwrap();
    let b = EtherConn::new(
        relay.clone(),
        "02:00:00:00:00:0b".parse().unwrap(),
        &[],
        cfg,
    )
    .unwrap();
    b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    a.send_to(&[7; 46], EtherType(0x88b5), b.local_mac())
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((n, from.mac), (46, a.local_mac()));
    relay.stop();
    drop(ns);
    assert!(
        etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix("ecfp-"))
            .is_empty()
    );
}
