//! The frames neighbour discovery sends: ARP requests and replies, neighbour solicitations and
//! advertisements, echo replies, each built in one of the relay's pooled transmit buffers.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use etherconn_core::build::L2Header;
use etherconn_core::wire::{arp, checksum, ethernet, icmpv6, ip_protocol, ipv4, ipv6};
use etherconn_core::wire::{EtherType, MacAddr, VlanTag};
use etherconn_relay::PacketRelay;

/// How long a send waits for room in the transmit path: answers are worth little late, and
/// the one thread that sends them must not stall behind a full device queue.
const SEND_WAIT: Duration = Duration::from_millis(20);

/// Hop limit of every neighbour discovery message (RFC 4861: receivers drop any other).
pub(crate) const ND_HOP_LIMIT: u8 = 255;

/// Where a frame leaves from: the endpoint's MAC and VLAN stack.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) mac: MacAddr,
    pub(crate) vlans: &'a [VlanTag],
}

fn build_error(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

/// Builds a frame (the L2 header, then what `body` writes after it, padded to 60 bytes) in a
/// pooled buffer and sends it.
fn send(
    relay: &dyn PacketRelay,
    header: &L2Header<'_>,
    body: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> io::Result<()> {
    let mut buf = relay.dispatcher().tx_buffer().ok_or_else(|| {
        io::Error::new(io::ErrorKind::WouldBlock, "every transmit buffer is in use")
    })?;
    let at = header.write(&mut buf).map_err(build_error)?;
    let n = body(&mut buf[at..])?;
    let mut len = at + n;
    if len < ethernet::MIN_FRAME_LEN {
        buf[len..ethernet::MIN_FRAME_LEN].fill(0);
        len = ethernet::MIN_FRAME_LEN;
    }
    relay.send(&buf[..len], Some(SEND_WAIT))
}

/// Sends an ARP packet from `from` to `dst_mac`.
pub(crate) fn arp(
    relay: &dyn PacketRelay,
    from: Source<'_>,
    dst_mac: MacAddr,
    repr: &arp::Repr,
) -> io::Result<()> {
    let header = L2Header {
        src_mac: from.mac,
        dst_mac,
        vlans: from.vlans,
        ethertype: EtherType::ARP,
    };
    send(relay, &header, |b| {
        let n = repr.buffer_len();
        let b = b.get_mut(..n).ok_or_else(too_small)?;
        repr.emit(&mut arp::Packet::new_unchecked(b))
            .map_err(build_error)?;
        Ok(n)
    })
}

fn too_small() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "frame buffer too small")
}

/// Sends an ICMPv6 message from `src` to `dst` (hop limit 255) from `from` to `dst_mac`.
pub(crate) fn icmpv6(
    relay: &dyn PacketRelay,
    from: Source<'_>,
    dst_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    repr: &icmpv6::Repr<'_>,
) -> io::Result<()> {
    let header = L2Header {
        src_mac: from.mac,
        dst_mac,
        vlans: from.vlans,
        ethertype: EtherType::IPV6,
    };
    send(relay, &header, |b| {
        let n = repr.buffer_len();
        let ip = ipv6::Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: ip_protocol::ICMPV6,
            payload_len: n,
            hop_limit: ND_HOP_LIMIT,
            traffic_class: 0,
        };
        let total = ipv6::HEADER_LEN + n;
        let b = b.get_mut(..total).ok_or_else(too_small)?;
        let (head, body) = b.split_at_mut(ipv6::HEADER_LEN);
        ip.emit(&mut ipv6::Packet::new_unchecked(head))
            .map_err(build_error)?;
        repr.emit(&mut icmpv6::Packet::new_unchecked(body), src, dst)
            .map_err(build_error)?;
        Ok(total)
    })
}

/// Sends an ICMP (IPv4) echo reply to a request whose ICMP message is `request` (type 8,
/// checksum already verified by the caller), from `src` to `dst`.
pub(crate) fn icmpv4_echo_reply(
    relay: &dyn PacketRelay,
    from: Source<'_>,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    request: &[u8],
) -> io::Result<()> {
    let header = L2Header {
        src_mac: from.mac,
        dst_mac,
        vlans: from.vlans,
        ethertype: EtherType::IPV4,
    };
    send(relay, &header, |b| {
        let total = ipv4::HEADER_LEN + request.len();
        let b = b.get_mut(..total).ok_or_else(too_small)?;
        let (head, body) = b.split_at_mut(ipv4::HEADER_LEN);
        let ip = ipv4::Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: ip_protocol::ICMP,
            payload_len: request.len(),
            ttl: 64,
            dscp: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
        };
        ip.emit(&mut ipv4::Packet::new_unchecked(head))
            .map_err(build_error)?;
        body.copy_from_slice(request);
        body[0] = 0; // echo reply
        body[2..4].fill(0);
        let c = checksum::checksum(body);
        body[2..4].copy_from_slice(&c.to_be_bytes());
        Ok(total)
    })
}

/// The MAC an IPv6 multicast group maps to (RFC 2464).
pub(crate) fn ipv6_group_mac(group: Ipv6Addr) -> MacAddr {
    let o = group.octets();
    MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
}
