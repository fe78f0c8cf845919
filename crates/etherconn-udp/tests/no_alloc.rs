//! A counting global allocator checks that sending and receiving datagrams allocates nothing
//! once warm (single calls and batches, `RUdpConn` and `SharingRUdpConn`), and measures what an
//! idle `SharingRUdpConn` costs.
//!
//! The allocator counts the test's thread only, which runs all the code under test: the loopback
//! relay delivers on the sending thread, and neither crate starts threads of its own. The test
//! harness's threads, which allocate whenever they are scheduled, are not counted.

mod common;

use std::mem::size_of;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use etherconn_core::wire::{MacAddr, VlanTag};
use etherconn_relay::{DispatcherConfig, LoopbackRelay, PacketRelay, RxQueue};
use etherconn_testalloc::{self as alloc, allocations_during};
use etherconn_udp::{
    NeighbourConfig, Neighbours, RUdpConfig, RUdpConn, RecvMeta, SharedConfig, SharedEtherConn,
    SharingConfig, SharingRUdpConn, DEFAULT_RUDP_QUEUE_DEPTH, DEFAULT_SHARING_QUEUE_DEPTH,
};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

fn sa(s: &str) -> SocketAddr {
    s.to_socket_addrs().unwrap().next().unwrap()
}

fn rudp_steady_state(relay: &Arc<dyn PacketRelay>) {
    let vlans = [VlanTag::dot1q(100).unwrap()];
    let (ma, mb) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
    let resolver = move |ip: std::net::IpAddr| Some(if ip.is_ipv4() { mb } else { ma });
    let cfg = RUdpConfig::default().resolver(resolver);
    let a = RUdpConn::new(relay.clone(), ma, &vlans, sa("192.0.2.1:4000"), cfg.clone()).unwrap();
    let b = RUdpConn::new(relay.clone(), mb, &vlans, sa("192.0.2.2:5000"), cfg).unwrap();
    let dst = sa("192.0.2.2:5000");
    let payload = [0x5au8; 1000];
    let mut buf = [0u8; 2048];
    let mut store = [[0u8; 1500]; 8];
    let mut meta = [RecvMeta::default(); 8];
    let batch = [(&payload[..], dst); 8];
    let mut round = |n: usize| {
        for _ in 0..n {
            a.send_to(&payload, dst).unwrap();
            let (len, from) = b.recv_from(&mut buf).unwrap();
            assert_eq!((len, from.port()), (1000, 4000));
            assert_eq!(a.send_batch(&batch).unwrap(), 8);
            let [b0, b1, b2, b3, b4, b5, b6, b7] = &mut store;
            let mut bufs: [&mut [u8]; 8] = [b0, b1, b2, b3, b4, b5, b6, b7];
            assert_eq!(b.recv_batch(&mut bufs, &mut meta).unwrap(), 8);
        }
    };
    round(200);
    let n = allocations_during(|| round(5_000));
    assert_eq!(
        n, 0,
        "RUdpConn: allocations in 5,000 warm rounds (1 + 8 datagrams each)"
    );
}

fn sharing_steady_state(relay: &Arc<dyn PacketRelay>) {
    let m = MacAddr([2, 0, 0, 0, 1, 1]);
    let shared = SharedEtherConn::new(
        relay.clone(),
        m,
        &[],
        SharedConfig::default().resolver(move |_| Some(m)),
    )
    .unwrap();
    let a = shared
        .bind(sa("[2001:db8::1]:4000"), SharingConfig::default())
        .unwrap();
    let b = shared
        .bind(sa("[::]:5000"), SharingConfig::default().queue_depth(16))
        .unwrap();
    let dst = sa("[2001:db8::2]:5000");
    let payload = [0xa5u8; 200];
    let mut buf = [0u8; 2048];
    let mut store = [[0u8; 256]; 4];
    let mut meta = [RecvMeta::default(); 4];
    let batch = [(&payload[..], dst); 4];
    let mut round = |n: usize| {
        for _ in 0..n {
            a.send_to(&payload, dst).unwrap();
            assert_eq!(b.recv_from(&mut buf).unwrap().0, 200);
            assert_eq!(a.send_batch(&batch).unwrap(), 4);
            let [b0, b1, b2, b3] = &mut store;
            let mut bufs: [&mut [u8]; 4] = [b0, b1, b2, b3];
            assert_eq!(b.recv_batch(&mut bufs, &mut meta).unwrap(), 4);
        }
    };
    round(200);
    let n = allocations_during(|| round(5_000));
    assert_eq!(n, 0, "SharingRUdpConn: allocations in 5,000 warm rounds");
}

/// Sends through the neighbour resolver: once the peer is learned, a send is a cache hit and
/// allocates nothing, on either family.
fn neighbour_steady_state(relay: &Arc<dyn PacketRelay>) {
    let nd = Neighbours::new(relay.clone(), NeighbourConfig::default()).unwrap();
    let cfg = RUdpConfig::default().neighbours(&nd);
    let vlans = [VlanTag::dot1q(7).unwrap()];
    let conns: Vec<RUdpConn> = [
        ("192.0.2.71:4000", 1),
        ("192.0.2.72:5000", 2),
        ("[2001:db8::71]:4000", 3),
        ("[2001:db8::72]:5000", 4),
    ]
    .into_iter()
    .map(|(local, n)| {
        let c = RUdpConn::new(
            relay.clone(),
            MacAddr([2, 0, 7, 0, 0, n]),
            &vlans,
            sa(local),
            cfg.clone(),
        )
        .unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        c
    })
    .collect();
    let payload = [0x11u8; 100];
    let mut buf = [0u8; 256];
    let mut round = |n: usize| {
        for _ in 0..n {
            for pair in conns.chunks(2) {
                let (a, b) = (&pair[0], &pair[1]);
                a.send_to(&payload, b.local_addr().unwrap()).unwrap();
                assert_eq!(b.recv_from(&mut buf).unwrap().0, 100);
            }
        }
    };
    round(50);
    let n = allocations_during(|| round(2_000));
    assert_eq!(
        n, 0,
        "allocations in 2,000 warm rounds through the neighbour resolver"
    );
}

/// Heap bytes per idle conn (queue, registration) plus the struct itself.
fn idle_sharing_conn_bytes(relay: &Arc<dyn PacketRelay>) -> usize {
    const N: usize = 20_000;
    let shared = SharedEtherConn::new(
        relay.clone(),
        MacAddr([2, 0, 0, 0, 2, 2]),
        &[],
        SharedConfig::default(),
    )
    .unwrap();
    let mut conns: Vec<SharingRUdpConn> = Vec::with_capacity(N);
    let before = alloc::live_bytes();
    for i in 0..N {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i as u32);
        let c = shared
            .bind(SocketAddr::from((ip, 68)), SharingConfig::default())
            .unwrap();
        conns.push(c);
    }
    let heap = usize::try_from(alloc::live_bytes() - before).expect("bytes left live");
    assert_eq!(shared.bound(), N);
    heap / N + size_of::<SharingRUdpConn>()
}

/// Heap bytes per idle `RUdpConn` (its `EtherConn`, queue and L2 registration) plus the struct.
fn idle_rudp_conn_bytes(relay: &Arc<dyn PacketRelay>) -> usize {
    const N: usize = 5_000;
    let mut conns: Vec<RUdpConn> = Vec::with_capacity(N);
    let before = alloc::live_bytes();
    for i in 0..N {
        let mac = MacAddr([2, 0x10, 0, 0, (i >> 8) as u8, i as u8]);
        let ip = std::net::Ipv4Addr::from(0x0a10_0000 + i as u32);
        let c = RUdpConn::new(
            relay.clone(),
            mac,
            &[],
            SocketAddr::from((ip, 68)),
            RUdpConfig::default(),
        )
        .unwrap();
        conns.push(c);
    }
    let heap = usize::try_from(alloc::live_bytes() - before).expect("bytes left live");
    heap / N + size_of::<RUdpConn>()
}

#[test]
fn warm_datagrams_allocate_nothing_and_idle_conns_are_small() {
    alloc::count_this_thread();
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(DispatcherConfig::default());
    rudp_steady_state(&relay);
    sharing_steady_state(&relay);
    neighbour_steady_state(&relay);
    let per_conn = idle_sharing_conn_bytes(&relay);
    println!(
        "idle SharingRUdpConn (queue depth {DEFAULT_SHARING_QUEUE_DEPTH}): {per_conn} bytes: \
         struct {}, RxQueue {} (two lines of flags and up to 4 frames, then locks), \
         the rest its demultiplexing-table entry and allocator rounding",
        size_of::<SharingRUdpConn>(),
        size_of::<RxQueue>(),
    );
    assert!(
        per_conn < 4096,
        "an idle SharingRUdpConn costs {per_conn} bytes"
    );
    let per_rudp = idle_rudp_conn_bytes(&relay);
    println!(
        "idle RUdpConn (queue depth {DEFAULT_RUDP_QUEUE_DEPTH}): {per_rudp} bytes (struct {})",
        size_of::<RUdpConn>()
    );
    assert_eq!(relay.stats().rx_queue_full, 0);
}
