//! The relay peer suite: the same cases over every backend (feature `relay-suite`).
//!
//! Each case builds a [`Testbed`](crate::Testbed), opens the relay under test in namespace
//! `b` through [`Backend::open`] and checks it against peers this project did not write:
//!
//! - the kernel's UDP stack in namespace `a`, IPv4 and IPv6, both ways
//!   ([`kernel_udp_roundtrip`]);
//! - scapy (`peers/send_frames.py`) sending 802.1Q, 802.1ad and 0x9100 QinQ frames and
//!   three-tag stacks, each of which must reach exactly its conn with its tags as sent (a
//!   sibling three-tag stack is a miss, four tags never pass the kernel filter)
//!   ([`scapy_vlan_ingress_reaches_exactly_its_conn`]), and the dispatch contract over the
//!   wire ([`dispatch_rules_over_the_wire`]);
//! - tshark decoding what the relay sends, VLAN stacks of up to three tags (TPIDs, ids,
//!   priorities) and checksums included
//!   ([`vlan_egress_decoded_by_tshark`]);
//! - hostile frames from scapy, each counted and dropped or filtered
//!   ([`bad_input_from_scapy_is_counted_and_dropped`], [`bad_udp_checksum`]);
//! - a stop that wakes a reader blocked on a conn ([`stop_wakes_blocked_reader`]);
//! - the relay's capture file read back by tshark, both directions, VLAN stacks of up to three
//!   tags ([`capture_holds_what_was_on_the_wire_both_ways`]);
//! - the link's limits: the MTU, `max_payload()` for seven VLAN stacks, what the kernel (or the
//!   relay) refuses past them ([`max_payload_follows_the_interface_mtu`]), and which
//!   EtherTypes the relay receives ([`ethertypes_the_relay_receives`]);
//! - what the relay tells a `tracing` subscriber
//!   ([`lifecycle_and_drop_summaries_reach_a_subscriber`]; it installs the process-wide
//!   subscriber, so a binary that runs the suite installs none of its own).
//!
//! Where backends differ, [`Backend`] says how, and each case checks what that backend does.
//!
//! A backend's test file runs them all with [`relay_peer_suite!`](crate::relay_peer_suite),
//! which skips (or, with `ETHERCONN_REQUIRE_ROOT_TESTS=1`, fails) without root:
//!
//! ```ignore
//! fn open(ifname: &str) -> Arc<dyn PacketRelay> {
//!     MyRelay::new(ifname, MyRelayConfig::default()).unwrap()
//! }
//! fn open_with_capture(ifname: &str, capture: CaptureConfig) -> Arc<dyn PacketRelay> {
//!     MyRelay::with_capture(ifname, MyRelayConfig::default(), capture).unwrap()
//! }
//! etherconn_testbed::relay_peer_suite!(etherconn_testbed::suite::Backend {
//!     tag: "my",
//!     open,
//!     sees_partial_checksums: false,
//!     sees_unregistered: true,
//!     open_with_capture,
//!     ethertype_filter: None,
//!     oversize: Oversize::Relay,
//!     events: Events { name: "my relay", open, opened: &[], attached: ("my relay: attached", "id") },
//! });
//! ```

// Module order (each imports only modules before it): common, peers, tshark, cases
// (common, peers, tshark), dispatch (common, peers), hostile (common, peers), capture (common,
// peers), limits (common), lifecycle (common).
mod capture;
mod cases;
mod common;
mod dispatch;
mod hostile;
mod lifecycle;
mod limits;
mod peers;
mod tshark;

pub use capture::capture_holds_what_was_on_the_wire_both_ways;

pub use cases::{
    kernel_udp_roundtrip, scapy_vlan_ingress_reaches_exactly_its_conn,
    vlan_egress_decoded_by_tshark,
};
pub use common::{
    assert_no_leftovers, conn, mac, open_b, open_in, quiet, send_udp, tag, udp_payload, wait_stats,
    Backend, EtherTypeFilter, Events, Oversize, ET, WAIT, X,
};
pub use dispatch::dispatch_rules_over_the_wire;
pub use hostile::{
    bad_input_from_scapy_is_counted_and_dropped, bad_udp_checksum, stop_wakes_blocked_reader,
};
pub use lifecycle::lifecycle_and_drop_summaries_reach_a_subscriber;
pub use limits::{ethertypes_the_relay_receives, max_payload_follows_the_interface_mtu};
pub use peers::{peers_dir, specs, Json, Scapy, Spec};
pub use tshark::Capture;

/// Defines one `#[test]` per case of the [suite](crate::suite) for `$backend` (an expression
/// of type [`Backend`]).
#[macro_export]
macro_rules! relay_peer_suite {
    ($backend:expr) => {
        $crate::relay_peer_suite!(@case $backend, kernel_udp_ipv4_peer,
            |b| $crate::suite::kernel_udp_roundtrip(b, false));
        $crate::relay_peer_suite!(@case $backend, kernel_udp_ipv6_peer,
            |b| $crate::suite::kernel_udp_roundtrip(b, true));
        $crate::relay_peer_suite!(@case $backend, scapy_vlan_ingress_reaches_exactly_its_conn,
            $crate::suite::scapy_vlan_ingress_reaches_exactly_its_conn);
        $crate::relay_peer_suite!(@case $backend, vlan_egress_decoded_by_tshark,
            $crate::suite::vlan_egress_decoded_by_tshark);
        $crate::relay_peer_suite!(@case $backend, dispatch_rules_over_the_wire,
            $crate::suite::dispatch_rules_over_the_wire);
        $crate::relay_peer_suite!(@case $backend, bad_input_from_scapy_is_counted_and_dropped,
            $crate::suite::bad_input_from_scapy_is_counted_and_dropped);
        $crate::relay_peer_suite!(@case $backend, bad_udp_checksum_from_scapy_rx_offload_off,
            |b| $crate::suite::bad_udp_checksum(b, false));
        $crate::relay_peer_suite!(@case $backend, bad_udp_checksum_from_scapy_default_offloads,
            |b| $crate::suite::bad_udp_checksum(b, true));
        $crate::relay_peer_suite!(@case $backend, stop_wakes_blocked_reader,
            $crate::suite::stop_wakes_blocked_reader);
        $crate::relay_peer_suite!(@case $backend, capture_holds_what_was_on_the_wire_both_ways,
            $crate::suite::capture_holds_what_was_on_the_wire_both_ways);
        $crate::relay_peer_suite!(@case $backend, max_payload_follows_the_interface_mtu,
            $crate::suite::max_payload_follows_the_interface_mtu);
        $crate::relay_peer_suite!(@case $backend, ethertypes_the_relay_receives,
            $crate::suite::ethertypes_the_relay_receives);
        $crate::relay_peer_suite!(@case $backend, lifecycle_and_drop_summaries_reach_a_subscriber,
            $crate::suite::lifecycle_and_drop_summaries_reach_a_subscriber);
    };
    (@case $backend:expr, $name:ident, $run:expr) => {
        #[test]
        fn $name() {
            if !$crate::require_root(stringify!($name)) {
                return;
            }
            let backend: $crate::suite::Backend = $backend;
            let run: fn(&$crate::suite::Backend) = $run;
            run(&backend);
        }
    };
}
