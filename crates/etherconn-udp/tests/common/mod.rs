//! Helpers shared by the loopback-relay tests.
#![allow(dead_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{ipv4, MacAddr, VlanTag};
use etherconn_relay::{DispatcherConfig, LoopbackRelay, PacketRelay};
use etherconn_udp::UdpError;

pub const WAIT: Duration = Duration::from_secs(2);

pub fn relay() -> Arc<dyn PacketRelay> {
    LoopbackRelay::new(DispatcherConfig::default())
}

pub fn mac(last: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, last])
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A resolver over a fixed neighbour table.
pub fn table(entries: &[(&str, MacAddr)]) -> impl Fn(IpAddr) -> Option<MacAddr> + Send + Sync {
    let entries: Vec<(IpAddr, MacAddr)> = entries.iter().map(|&(a, m)| (ip(a), m)).collect();
    move |dst| entries.iter().find(|(a, _)| *a == dst).map(|&(_, m)| m)
}

/// The `UdpError` inside an `io::Error` from a send.
pub fn udp_error(e: &io::Error) -> &UdpError {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<UdpError>())
        .unwrap_or_else(|| panic!("no UdpError inside {e:?}"))
}

/// A UDP frame from `src_mac`/`src` to `dst_mac`/`dst`.
pub fn udp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    vlans: &[VlanTag],
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    let len = build_udp_frame(
        &mut buf,
        &UdpFrame {
            src_mac,
            dst_mac,
            vlans,
            src,
            dst,
            ttl: 64,
            dscp: 0,
            payload,
        },
    )
    .unwrap();
    buf.truncate(len);
    buf
}

/// The first fragment (more-fragments set, offset 0) of an IPv4 UDP datagram, untagged.
pub fn ipv4_first_fragment(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = udp_frame(src_mac, dst_mac, &[], src, dst, payload);
    let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
    ip.set_flags_and_offset(false, true, 0);
    ip.fill_checksum();
    f
}

/// The first fragment of an IPv6 UDP datagram: a fragment header (offset 0, M set) between the
/// IPv6 header and the UDP header, untagged.
pub fn ipv6_first_fragment(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv6 addresses needed");
    };
    let udp_len = 8 + payload.len();
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac.0);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&((8 + udp_len) as u16).to_be_bytes());
    f.extend_from_slice(&[44, 64]);
    f.extend_from_slice(&s.octets());
    f.extend_from_slice(&d.octets());
    f.extend_from_slice(&[17, 0, 0x00, 0x01, 0, 0, 0x12, 0x34]);
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    while f.len() < 60 {
        f.push(0);
    }
    f
}
