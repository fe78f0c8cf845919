//! The relay peer suite (`etherconn_testbed::suite`) over `XdpRelay`: the cases every backend
//! shares, against the kernel's UDP stack, scapy and tshark, over a veth pair between two
//! network namespaces: traffic, VLAN stacks, hostile frames, the capture file, the link's
//! limits, and what the relay tells a `tracing` subscriber.
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::sync::Arc;

use etherconn_relay::PacketRelay;
use etherconn_testbed::suite::{Backend, Events, Oversize};
use etherconn_xdp::{XdpRelay, XdpRelayConfig};

fn open(ifname: &str) -> Arc<dyn PacketRelay> {
    XdpRelay::new(ifname, XdpRelayConfig::default()).unwrap()
}

etherconn_testbed::relay_peer_suite!(Backend {
    tag: "xs",
    open,
    // An AF_XDP frame carries no checksum status: a veth peer's partial UDP checksum looks
    // bad, so the kernel-stack cases turn the peer's transmit checksum offload off.
    sees_partial_checksums: false,
    // The program passes frames of keys nobody registered to the host: where the other
    // relays count a miss (no conn, no default conn) or an ignored broadcast, this one is
    // never offered the frame, and the cases check that instead.
    sees_unregistered: false,
    open_with_capture: |ifname, capture| {
        XdpRelay::with_capture(ifname, XdpRelayConfig::default(), capture).unwrap()
    },
    // The program redirects by registered key, whatever the EtherType.
    ethertype_filter: None,
    // An AF_XDP socket in copy mode does not check a frame's size against the MTU (a veth
    // drops what its peer cannot take, without a word), so the relay refuses what a packet
    // socket would refuse with EMSGSIZE.
    oversize: Oversize::Relay,
    events: Events {
        name: "AF_XDP relay",
        open: |ifname| XdpRelay::new(ifname, XdpRelayConfig::default().rings(2048, 1024)).unwrap(),
        opened: &[
            ("mtu", "1500"),
            ("queues", "[0]"),
            ("mode", "Copy"),
            ("frame_size", "2048"),
            ("rx_ring", "2048"),
            ("tx_ring", "1024"),
            ("capture", "false"),
        ],
        attached: ("AF_XDP relay: program attached", "prog_id"),
    },
});
