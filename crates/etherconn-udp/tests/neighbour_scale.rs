//! The neighbour responder and resolver with 100,000 endpoints on a loopback relay: memory
//! per address answered for and per address cached, the cost of an answer and of a cache
//! lookup. Prints the figures (`--nocapture`); docs/neighbours.md quotes a release run:
//!
//! `cargo test --release -p etherconn-udp --test neighbour_scale -- --nocapture`
//!
//! `ETHERCONN_ND_SCALE=N` changes the number of endpoints (default 100,000).

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use etherconn_core::key::VlanIds;
use etherconn_core::wire::{arp, EtherType, MacAddr};
use etherconn_relay::{EtherConn, EtherConnConfig};
use etherconn_testalloc as alloc;
use etherconn_udp::{NeighbourConfig, Neighbours, SharedConfig, SharedEtherConn, SharingConfig};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

fn scale() -> u32 {
    std::env::var("ETHERCONN_ND_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn mac(i: u32) -> MacAddr {
    let [_, a, b, c] = i.to_be_bytes();
    MacAddr([0x02, 0xee, 0x01, a, b, c])
}

fn v4(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

fn v6(i: u32) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        0,
        0,
        0,
        0,
        (i >> 16) as u16,
        i as u16,
    ))
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not done in 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn one_hundred_thousand_endpoints() {
    alloc::count_this_thread();
    let n = scale();
    let relay = common::relay();
    let nd = Neighbours::new(
        relay.clone(),
        NeighbourConfig::default().resolve_wait(Duration::ZERO),
    )
    .unwrap();

    // Whole endpoints: SharingRUdpConns with an address each, answered for or not (by a
    // responder of their own, whose table keeps its room when they go).
    let for_conns = Neighbours::new(relay.clone(), NeighbourConfig::default()).unwrap();
    for with_nd in [false, true] {
        let mut cfg = SharedConfig::default();
        if with_nd {
            cfg = cfg.neighbours(&for_conns);
        }
        let shared = SharedEtherConn::new(relay.clone(), mac(0xff_fff0), &[], cfg).unwrap();
        let before = alloc::live_bytes();
        let conns: Vec<_> = (0..n)
            .map(|i| {
                let local = std::net::SocketAddr::new(v4(i), 9);
                shared.bind(local, SharingConfig::default()).unwrap()
            })
            .collect();
        let bytes = (alloc::live_bytes() - before) as f64 / f64::from(n);
        println!(
            "endpoints: {n} SharingRUdpConns on one SharedEtherConn, {bytes:.0} bytes each {}",
            if with_nd {
                "with their addresses in the responder"
            } else {
                "without the responder"
            }
        );
        assert!(conns.iter().all(|c| c.answered_by_neighbours() == with_nd));
        drop((conns, shared));
    }
    assert_eq!(for_conns.stats().addresses, 0);
    drop(for_conns);

    // Addresses answered for: half IPv4, half IPv6.
    let before = alloc::live_bytes();
    let t0 = Instant::now();
    let held: Vec<_> = (0..n)
        .map(|i| {
            let ip = if i % 2 == 0 { v4(i) } else { v6(i) };
            nd.add(mac(i), &[], ip).unwrap()
        })
        .collect();
    let took = t0.elapsed();
    let bytes = (alloc::live_bytes() - before) as f64 / f64::from(n);
    // The handles (32 bytes each, in `held`) go before the responder does; the table keeps
    // its room.
    let table_bytes = (alloc::live_bytes() - before) as f64
        - (core::mem::size_of::<etherconn_udp::NeighbourAddr>() * held.len()) as f64;
    println!(
        "responder: {n} addresses registered in {:.0} ms, {bytes:.0} bytes each \
         (table entry and registration handle)",
        took.as_secs_f64() * 1e3
    );
    assert!(bytes < 512.0, "{bytes} bytes per address");

    // Answers: one ARP request per IPv4 address from a peer, each answered.
    let peer = EtherConn::new(
        relay.clone(),
        MacAddr([0x02, 0xff, 0, 0, 0, 1]),
        &[],
        EtherConnConfig::default()
            .ethertypes(&[EtherType::ARP])
            .queue_depth(1 << 17),
    )
    .unwrap();
    let requests: Vec<[u8; arp::PACKET_LEN]> = (0..n)
        .step_by(2)
        .map(|i| {
            let IpAddr::V4(target) = v4(i) else {
                unreachable!()
            };
            let r = arp::Repr {
                operation: arp::Operation::Request,
                source_hardware_addr: peer.local_mac(),
                source_protocol_addr: Ipv4Addr::new(10, 255, 0, 1),
                target_hardware_addr: MacAddr::UNSPECIFIED,
                target_protocol_addr: target,
            };
            let mut b = [0u8; arp::PACKET_LEN];
            r.emit(&mut arp::Packet::new_unchecked(&mut b[..])).unwrap();
            b
        })
        .collect();
    let t0 = Instant::now();
    let mut sent = 0u64;
    for r in &requests {
        // Paced to the responder's queue (4096 deep): the loopback relay delivers inline.
        while sent - nd.stats().arp_replies - nd.stats().ignored >= 2048 {
            std::thread::yield_now();
        }
        peer.send_to(r, EtherType::ARP, MacAddr::BROADCAST).unwrap();
        sent += 1;
    }
    wait_until("answers", || nd.stats().arp_replies >= sent);
    let took = t0.elapsed();
    println!(
        "responder: {sent} ARP requests answered in {:.0} ms: {:.2} us per answer \
         (request sent and delivered, looked up, reply built and sent)",
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e6 / sent as f64
    );
    let mut replies = 0;
    while peer.recv_frame_timeout(Some(Duration::ZERO)).is_ok() {
        replies += 1;
    }
    assert_eq!(replies, sent, "every reply reached the peer");

    // The cache: every IPv4 endpoint resolved by one asker (answered by the responder itself,
    // the loopback relay bringing the replies back).
    let asker = SharedEtherConn::new(
        relay.clone(),
        MacAddr([0x02, 0xff, 0, 0, 0, 2]),
        &[],
        SharedConfig::default().neighbours(&nd).queue_depth(64),
    )
    .unwrap();
    let mut resolvers = Vec::new();
    let mut bound = Vec::new();
    for src in ["10.255.0.2", "2001:db8:ff::2"] {
        let src: IpAddr = src.parse().unwrap();
        let local = std::net::SocketAddr::new(src, 9);
        bound.push(asker.bind(local, SharingConfig::default()).unwrap());
        resolvers.push(nd.resolver(asker.local_mac(), &[], src).unwrap());
    }
    // Endpoint i's address, and the resolver of its family.
    let addr = |i: u32| if i % 2 == 0 { v4(i) } else { v6(i) };
    let resolve = |i: u32| resolvers[(i % 2) as usize](addr(i));
    let t0 = Instant::now();
    for i in 0..n {
        while nd.resolving() >= 2048 {
            std::thread::yield_now();
        }
        assert_eq!(resolve(i), None, "not known yet");
    }
    wait_until("resolutions", || nd.resolving() == 0);
    let took = t0.elapsed();
    let cached = nd.stats().cached;
    println!(
        "resolver: {n} addresses resolved (half ARP, half ND) in {:.0} ms ({:.2} us \
         each: request, answer, learning); {cached} cached",
        took.as_secs_f64() * 1e3,
        took.as_secs_f64() * 1e6 / f64::from(n)
    );
    // Every endpoint, and the three senders of requests for their addresses (the peer, the
    // asker's IPv4 and IPv6 addresses), which a responder caches as it answers them.
    assert_eq!(cached, u64::from(n) + 3);

    // A lookup, as every datagram sent to a unicast destination makes: in address order
    // (neighbouring entries), and in a scattered order (a cache miss each, as with many
    // endpoints sending to many peers).
    let order: Vec<u32> = (0..n).collect();
    let mut scattered = order.clone();
    let mut x = 0x9e37_79b9u32;
    for i in (1..scattered.len()).rev() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        scattered.swap(i, x as usize % (i + 1));
    }
    // The machine is shared: a round in which this thread lost its CPU says nothing about the
    // lookup. Plain maps from address to MAC, with the same keys, in
    // the same run, are the yardstick (no lock, no age, no sharding, filled by this thread).
    let plain: HashMap<IpAddr, MacAddr> = order.iter().map(|&i| (addr(i), mac(i))).collect();
    let keyed: HashMap<_, MacAddr, ahash::RandomState> = order
        .iter()
        .map(|&i| ((VlanIds::NONE, addr(i)), mac(i)))
        .collect();
    for (what, order) in [("in order", &order), ("scattered", &scattered)] {
        // Every key once per repetition, in chunks of 500 lookups; each chunk's best of 9
        // repetitions counts, so that a chunk during which the thread lost its CPU does not.
        let best = |f: &dyn Fn(u32) -> bool| {
            let mut total = 0.0;
            for chunk in order.chunks(500) {
                total += (0..9)
                    .map(|_| {
                        let t0 = Instant::now();
                        for &i in chunk {
                            assert!(f(i), "{i}");
                        }
                        t0.elapsed().as_secs_f64()
                    })
                    .fold(f64::INFINITY, f64::min);
            }
            total * 1e9 / order.len() as f64
        };
        let ours = best(&|i| resolve(i) == Some(mac(i)));
        let yardstick = best(&|i| plain.get(&addr(i)) == Some(&mac(i)));
        let keyed = best(&|i| keyed.get(&(VlanIds::NONE, addr(i))) == Some(&mac(i)));
        println!(
            "resolver: a cache hit costs {ours:.0} ns ({what}) with {cached} addresses cached; \
             a lookup in one HashMap<IpAddr, MacAddr> {yardstick:.0} ns, in one \
             HashMap<(VlanIds, IpAddr), MacAddr, ahash> {keyed:.0} ns"
        );
    }
    let s = nd.stats();
    println!("{s}");
    assert_eq!(s.failed, 0, "{s}");

    // Memory: the worker thread fills the cache, so its allocations are not counted; what
    // this thread frees when the last handle goes (the whole responder: table, cache,
    // queue) is. The table's share was measured above; the rest is the cache's.
    drop((resolvers, bound, asker, peer));
    drop(held);
    let before = alloc::live_bytes();
    drop(nd);
    let freed = (before - alloc::live_bytes()) as f64;
    let cache = (freed - table_bytes) / cached as f64;
    println!(
        "responder and resolver: {freed:.0} bytes freed at the end: {cache:.0} bytes per cached \
         address besides the table"
    );
    assert!(cache < 256.0, "{cache} bytes per cached address");
}
