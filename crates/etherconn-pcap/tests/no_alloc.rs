//! The libpcap relay's steady state allocates nothing per frame, on the send path (an
//! `EtherConn`'s pooled buffer, `pcap_sendpacket`) and on the receive path (the relay's
//! receive thread: `pcap_dispatch`, batched delivery, the conn's queue, `recv_from`).
//!
//! The receive thread is the relay's own, so this binary counts the allocations of every
//! thread; it holds one test, so the only other allocator is libtest's main thread, which
//! allocates a handful of times around a test's start and end. 1,000 frames each way with at
//! most that handful counted means none per frame.
//!
//! Root only (a veth pair between two namespaces).
#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::time::Duration;

use etherconn_core::wire::EtherType;
use etherconn_pcap::{PcapRelay, PcapRelayConfig};
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
use etherconn_testbed::{Side, Testbed};

#[global_allocator]
static GLOBAL: etherconn_testalloc::Counting = etherconn_testalloc::Counting;

const ET: EtherType = EtherType(0x88b5);
const FRAMES: usize = 1000;

fn round_trips(a: &EtherConn, b: &EtherConn, n: usize) {
    let mut buf = [0u8; 1514];
    let payload = [0x5au8; 46];
    for _ in 0..n {
        a.send_to(&payload, ET, b.local_mac()).unwrap();
        let (len, _) = b.recv_from(&mut buf).unwrap();
        assert_eq!(len, payload.len());
    }
}

#[test]
fn steady_state_send_and_receive_allocate_nothing_per_frame() {
    if !etherconn_testbed::require_root("steady_state_send_and_receive_allocate_nothing_per_frame")
    {
        return;
    }
    let prefix = "ecpc-na-";
    let tb = Testbed::new(prefix).unwrap();
    // No IPv6 link-local chatter from the kernel: nothing but the test's frames.
    for side in [Side::A, Side::B] {
        let key = format!("net.ipv6.conf.{}.disable_ipv6", tb.ifname(side));
        tb.set_sysctl(side, &key, "1").unwrap();
    }
    let cfg = || PcapRelayConfig::default().ethertypes(&[ET]);
    let ra: Arc<dyn PacketRelay> =
        tb.a.run_in(|| PcapRelay::new(&tb.a_if, cfg()))
            .unwrap()
            .unwrap();
    let rb: Arc<dyn PacketRelay> =
        tb.b.run_in(|| PcapRelay::new(&tb.b_if, cfg()))
            .unwrap()
            .unwrap();
    let conn_cfg = || EtherConnConfig::default().ethertypes(&[ET]);
    let a = EtherConn::new(
        ra.clone(),
        "02:ec:0a:00:00:01".parse().unwrap(),
        &[],
        conn_cfg(),
    )
    .unwrap();
    let b = EtherConn::new(
        rb.clone(),
        "02:ec:0b:00:00:01".parse().unwrap(),
        &[],
        conn_cfg(),
    )
    .unwrap();
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Warm up: pools, queues, libpcap's ring, the stats read of the receive thread.
    round_trips(&a, &b, 200);
    std::thread::sleep(Duration::from_millis(300));
    round_trips(&a, &b, 50);
    let counted =
        etherconn_testalloc::allocations_of_every_thread_during(|| round_trips(&a, &b, FRAMES));
    println!("{counted} allocations over {FRAMES} frames sent and received");
    assert!(
        counted <= 8,
        "{counted} allocations over {FRAMES} frames: the steady state allocates"
    );
    // The relay counts a delivery just after queueing the frame, so the reader can be first:
    // wait for the count rather than read it once.
    let want = (200 + 50 + FRAMES) as u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rb.stats().rx_delivered < want && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(rb.stats().rx_delivered, want);
    ra.stop();
    rb.stop();
    drop((a, b));
    drop(tb);
    assert!(
        etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix))
            .is_empty()
    );
}
