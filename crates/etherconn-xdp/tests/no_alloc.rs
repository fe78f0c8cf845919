//! A counting global allocator checks that the XDP relay's hot paths allocate nothing once
//! warm: a kernel UDP socket in the peer namespace and an `RUdpConn` on the relay exchange
//! datagrams both ways (the queue thread receiving, classifying and delivering; the test's
//! thread sending through the send ring and reading its conn).
//!
//! Every thread of the process is counted while the window is open, the relay's queue thread
//! included (it is started by the relay, so it cannot opt in). This binary holds one test, so
//! the only other thread is the harness's main thread, which is blocked waiting for the result
//! long before the window opens.
//!
//! Root only: without root the test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::wire::MacAddr;
use etherconn_relay::PacketRelay;
use etherconn_testbed::{Side, Testbed};
use etherconn_udp::{RUdpConfig, RUdpConn};
use etherconn_xdp::{XdpRelay, XdpRelayConfig};

#[global_allocator]
static GLOBAL: etherconn_testalloc::Counting = etherconn_testalloc::Counting;

#[test]
fn warm_send_and_receive_allocate_nothing() {
    if !etherconn_testbed::require_root("warm_send_and_receive_allocate_nothing") {
        return;
    }
    let prefix = "ecxdp-n-";
    let tb = Testbed::new(prefix).unwrap();
    tb.add_addr(Side::A, "10.93.0.1/24").unwrap();
    // The kernel computes UDP checksums in software (see docs/xdp.md).
    tb.set_offloads(Side::A, &[("tx", "off")]).unwrap();
    let relay =
        tb.b.run_in(|| XdpRelay::new(&tb.b_if, XdpRelayConfig::default()))
            .unwrap()
            .unwrap();
    let a_mac = MacAddr(tb.a_mac);
    let mac = MacAddr([0x02, 0xec, 0x93, 0, 0, 1]);
    let local: SocketAddr = "10.93.0.50:4000".parse().unwrap();
    tb.add_neigh(Side::A, local.ip(), mac.0).unwrap();
    let dyn_relay: Arc<dyn PacketRelay> = relay.clone();
    let conn = RUdpConn::new(
        dyn_relay,
        mac,
        &[],
        local,
        RUdpConfig::default().resolver(move |_| Some(a_mac)),
    )
    .unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let peer =
        tb.a.run_in(|| UdpSocket::bind("10.93.0.1:0"))
            .unwrap()
            .unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let peer_addr = peer.local_addr().unwrap();

    let payload = [0x5au8; 256];
    let mut buf = [0u8; 2048];
    let mut round = |n: usize| {
        for _ in 0..n {
            peer.send_to(&payload, local).unwrap();
            let (len, from) = conn.recv_from(&mut buf).unwrap();
            assert_eq!((len, from), (payload.len(), peer_addr));
            conn.send_to(&payload, peer_addr).unwrap();
            let (len, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!((len, from), (payload.len(), local));
        }
    };
    round(500);
    // The counter counts: one box while counting is one allocation.
    let one = etherconn_testalloc::allocations_of_every_thread_during(|| {
        drop(std::hint::black_box(Box::new(7u64)));
    });
    assert_eq!(one, 1);
    let n = etherconn_testalloc::allocations_of_every_thread_during(|| round(3_000));
    assert_eq!(
        n, 0,
        "allocations in 3,000 warm rounds (one datagram each way, relay thread included)"
    );
    let s = relay.stats();
    // (rx_delivered is bumped just after the push a reader may already have taken.)
    assert!(s.rx_offered >= 3_500 && s.tx >= 3_500, "{s}");

    drop(conn);
    relay.stop();
    drop(relay);
    drop(tb);
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
