//! With a capture on, the hot path still allocates nothing per packet (the counting
//! allocator of `etherconn-testalloc`; in its own test binary, because the count is global
//! to the process and `no_alloc.rs` counts its own test's thread).

use std::sync::Arc;

use etherconn_core::wire::{EtherType, MacAddr, VlanTag};
use etherconn_relay::{CaptureConfig, Direction, DispatcherConfig, LoopbackRelay, PacketRelay};
use etherconn_relay::{EtherConn, EtherConnConfig};
use etherconn_testalloc as alloc;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// Discards what is written, and counts the allocations of the thread that writes.
struct CountingSink;

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        alloc::count_this_thread();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// With a capture on, sending and receiving still allocate nothing on the relay's side: each
/// frame is copied into one of the capture's preallocated slots, and dropped (counted) when
/// none is free; the writer thread, counted from its first write, allocates nothing to write
/// them.
#[test]
fn steady_state_with_a_capture_allocates_nothing() {
    alloc::count_this_thread();
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(DispatcherConfig::default());
    // Written to nowhere, but by a sink that makes the writer thread counted too, from its
    // first write on: writing a frame must allocate nothing either.
    relay
        .dispatcher()
        .start_capture(CaptureConfig::writer(CountingSink).slots(256))
        .unwrap();
    let cfg = EtherConnConfig::default().ethertypes(&[EtherType(0x88b5)]);
    let vlans = [VlanTag::dot1q(100).unwrap()];
    let a = EtherConn::new(
        relay.clone(),
        MacAddr([2, 0, 0, 0, 0, 1]),
        &vlans,
        cfg.clone(),
    )
    .unwrap();
    let b = EtherConn::new(relay.clone(), MacAddr([2, 0, 0, 0, 0, 2]), &vlans, cfg).unwrap();
    let payload = [0x5au8; 200];
    let mut buf = [0u8; 2048];
    let frame = vec![0xffu8; 64];
    let mut round = |n: usize| {
        for _ in 0..n {
            a.send_to(&payload, EtherType(0x88b5), b.local_mac())
                .unwrap();
            b.recv_from(&mut buf).unwrap();
        }
        // The batched receive path with the relay's hook, as the AF_PACKET engine calls it.
        let d = relay.dispatcher();
        let cap = d.capture();
        let mut batch = d.delivery();
        for _ in 0..n {
            if let Some(c) = cap {
                c.record(Direction::Inbound, &frame, vlans.first().copied(), None);
            }
            batch.push(&frame, None, false);
        }
        batch.flush();
    };
    round(1_000);
    let written = |r: &Arc<dyn PacketRelay>| r.dispatcher().capture().unwrap().stats().written;
    let (before, written_before) = (alloc::allocations(), written(&relay));
    round(20_000);
    let after = alloc::allocations();
    assert!(
        written(&relay) > written_before,
        "the writer wrote in the window"
    );
    assert_eq!(
        after - before,
        0,
        "allocations in 20,000 warm rounds with a capture"
    );
    let st = relay.stats();
    assert_eq!(st.captured + st.capture_dropped, 3 * 21_000, "{st}");
    relay.stop();
}
