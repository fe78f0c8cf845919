//! The relay peer suite (`etherconn_testbed::suite`) over `XdpRelay`: the cases every backend
//! shares, against the kernel's UDP stack, scapy and tshark, over a veth pair between two
//! network namespaces.
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::sync::Arc;

use etherconn_relay::PacketRelay;
use etherconn_testbed::suite::Backend;
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
});
