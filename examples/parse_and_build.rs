//! Builds UDP frames with any MAC and VLAN stack, then classifies them the way a relay does.
//!
//! `cargo run --release --example parse_and_build` prints each frame's dispatch key and layers,
//! shows how a malformed frame is reported, and measures classify and build rates on this core.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use etherconn::build::{build_udp_frame, UdpFrame};
use etherconn::classify::classify;
use etherconn::wire::{MacAddr, Tpid, VlanId, VlanTag};

fn main() {
    let base: MacAddr = "02:00:00:00:00:01".parse().expect("literal MAC");
    let stacks: [&[VlanTag]; 3] = [
        &[],
        &[VlanTag {
            tpid: Tpid::DOT1Q,
            pcp: 5,
            dei: false,
            id: VlanId::new(100).expect("12-bit id"),
        }],
        &[
            VlanTag::new(Tpid::QINQ, VlanId::new(200).expect("12-bit id")),
            VlanTag::new(Tpid::DOT1Q, VlanId::new(100).expect("12-bit id")),
        ],
    ];
    let flows: [(&str, &str); 2] = [
        ("192.0.2.10:68", "192.0.2.1:67"),
        ("[2001:db8::10]:546", "[2001:db8::1]:547"),
    ];

    let mut buf = [0u8; 1514];
    for (i, vlans) in stacks.iter().enumerate() {
        for (src, dst) in flows {
            let frame = UdpFrame {
                src_mac: base.offset(i as u64),
                dst_mac: "02:00:00:00:ff:01".parse().expect("literal MAC"),
                vlans,
                src: src.parse::<SocketAddr>().expect("literal address"),
                dst: dst.parse::<SocketAddr>().expect("literal address"),
                ttl: 255,
                dscp: 0,
                payload: b"etherconn example payload",
            };
            let len = match build_udp_frame(&mut buf, &frame) {
                Ok(len) => len,
                Err(e) => {
                    eprintln!("cannot build frame: {e}");
                    std::process::exit(1);
                }
            };
            match classify(&buf[..len], None) {
                Ok(c) => println!("{len:4} bytes  {c}"),
                Err(e) => println!("{len:4} bytes  invalid: {e}"),
            }
        }
    }

    // A frame whose IPv4 header checksum was damaged is reported, not delivered.
    let len = build_udp_frame(
        &mut buf,
        &UdpFrame {
            src_mac: base,
            dst_mac: MacAddr::BROADCAST,
            vlans: &[],
            src: "192.0.2.10:68".parse().expect("literal address"),
            dst: "255.255.255.255:67".parse().expect("literal address"),
            ttl: 64,
            dscp: 0,
            payload: &[0; 32],
        },
    )
    .expect("fits the buffer");
    buf[24] ^= 0xff;
    println!(
        "damaged      {}",
        classify(&buf[..len], None)
            .map(|_| "accepted".to_string())
            .unwrap_or_else(|e| e.to_string())
    );

    // A rough single-core rate; `cargo bench --bench wire` is the real measurement.
    let payload = [0x5au8; 64];
    let frame = UdpFrame {
        src_mac: base,
        dst_mac: "02:00:00:00:ff:01".parse().expect("literal MAC"),
        vlans: stacks[1],
        src: "192.0.2.10:4000".parse().expect("literal address"),
        dst: "192.0.2.1:5000".parse().expect("literal address"),
        ttl: 64,
        dscp: 0,
        payload: &payload,
    };
    const N: u32 = 5_000_000;
    let t = Instant::now();
    let mut len = 0;
    for _ in 0..N {
        len = build_udp_frame(black_box(&mut buf), black_box(&frame)).expect("fits the buffer");
    }
    let build_rate = f64::from(N) / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..N {
        black_box(
            classify(black_box(&buf[..len]), None)
                .expect("valid frame")
                .key,
        );
    }
    let classify_rate = f64::from(N) / t.elapsed().as_secs_f64();
    println!(
        "64-byte UDP payload, 802.1Q: build {:.1} M frames/s, classify {:.1} M frames/s (one core)",
        build_rate / 1e6,
        classify_rate / 1e6
    );
}
