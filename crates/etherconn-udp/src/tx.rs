//! The send path every conn shares: checks, next-hop MAC, building into pooled buffers, batches.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::build::{build_udp_frame, max_udp_payload, udp_destination_problem, UdpFrame};
use etherconn_core::wire::{ipv4, ipv6, udp, MacAddr, VlanTag};
use etherconn_relay::{PacketRelay, PooledBuf, SizeLimit};
use smallvec::SmallVec;

use crate::config::{multicast_mac, NextHopResolver};
use crate::error::UdpError;

/// Datagrams built before handing them to the relay in one `send_batch` call.
pub const BATCH_SIZE: usize = 32;

/// The largest UDP payload one frame carries on `relay` behind the VLAN stack `vlans`, and
/// the link limit it comes from.
pub(crate) fn payload_limit(
    relay: &dyn PacketRelay,
    vlans: &[VlanTag],
    ipv6: bool,
) -> (usize, SizeLimit) {
    let limit = relay.size_limit(vlans);
    let max = limit
        .payload()
        .saturating_sub(ip_udp_header_len(ipv6))
        .min(max_udp_payload(ipv6));
    (max, limit)
}

/// The largest UDP payload one frame carries on `relay` behind the VLAN stack `vlans`.
pub(crate) fn max_payload(relay: &dyn PacketRelay, vlans: &[VlanTag], ipv6: bool) -> usize {
    payload_limit(relay, vlans, ipv6).0
}

/// Bytes of IP and UDP header in a datagram.
pub(crate) const fn ip_udp_header_len(ipv6: bool) -> usize {
    let ip = if ipv6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
    ip + udp::HEADER_LEN
}

/// What every datagram a conn sends shares: where it leaves from and how it is addressed.
pub(crate) struct Egress<'a> {
    pub(crate) relay: &'a Arc<dyn PacketRelay>,
    pub(crate) src_mac: MacAddr,
    pub(crate) vlans: &'a [VlanTag],
    pub(crate) ttl: u8,
    pub(crate) dscp: u8,
    pub(crate) resolver: &'a NextHopResolver,
}

impl Egress<'_> {
    /// The destination MAC of a datagram to `dst`, once its size and addresses are checked.
    fn check(&self, len: usize, src: SocketAddr, dst: SocketAddr) -> Result<MacAddr, UdpError> {
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(UdpError::FamilyMismatch {
                local: src,
                remote: dst,
            });
        }
        if let Some(reason) = udp_destination_problem(dst) {
            return Err(UdpError::BadDestination { dst, reason });
        }
        let (max, limit) = payload_limit(&**self.relay, self.vlans, dst.is_ipv6());
        if len > max {
            return Err(UdpError::TooLarge {
                len,
                max,
                limit,
                ipv6: dst.is_ipv6(),
            });
        }
        let ip = dst.ip();
        multicast_mac(ip)
            .or_else(|| (self.resolver)(ip))
            .ok_or(UdpError::NoNextHop(ip))
    }

    /// Builds the frame of one datagram in a pooled buffer; returns the buffer and the frame
    /// length.
    fn build(
        &self,
        payload: &[u8],
        src: SocketAddr,
        dst: SocketAddr,
    ) -> io::Result<(PooledBuf, usize)> {
        let dst_mac = self.check(payload.len(), src, dst)?;
        let mut buf = self.relay.dispatcher().tx_buffer().ok_or_else(|| {
            io::Error::new(io::ErrorKind::WouldBlock, "every transmit buffer is in use")
        })?;
        let frame = UdpFrame {
            src_mac: self.src_mac,
            dst_mac,
            vlans: self.vlans,
            src,
            dst,
            ttl: self.ttl,
            dscp: self.dscp,
            payload,
        };
        let len = build_udp_frame(&mut buf, &frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok((buf, len))
    }

    /// Sends one datagram; returns the payload length.
    pub(crate) fn send(
        &self,
        payload: &[u8],
        src: SocketAddr,
        dst: SocketAddr,
        wait: Option<Duration>,
    ) -> io::Result<usize> {
        let (buf, len) = self.build(payload, src, dst)?;
        self.relay.send(&buf[..len], wait)?;
        Ok(payload.len())
    }

    /// Sends datagrams from `src`, [`BATCH_SIZE`] frames per relay call; returns how many were
    /// sent before the first failure, which is returned only when none was sent.
    pub(crate) fn send_batch(
        &self,
        datagrams: &[(&[u8], SocketAddr)],
        src: SocketAddr,
        wait: Option<Duration>,
    ) -> io::Result<usize> {
        let mut sent = 0;
        let partial = |sent: usize, e: io::Error| if sent == 0 { Err(e) } else { Ok(sent) };
        for chunk in datagrams.chunks(BATCH_SIZE) {
            let mut built: SmallVec<[(PooledBuf, usize); BATCH_SIZE]> = SmallVec::new();
            let mut failure = None;
            for &(payload, dst) in chunk {
                match self.build(payload, src, dst) {
                    Ok(b) => built.push(b),
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            if !built.is_empty() {
                let frames: SmallVec<[&[u8]; BATCH_SIZE]> =
                    built.iter().map(|(buf, len)| &buf[..*len]).collect();
                match self.relay.send_batch(&frames, wait) {
                    Ok(n) => {
                        sent += n;
                        if n < frames.len() {
                            return Ok(sent);
                        }
                    }
                    Err(e) => return partial(sent, e),
                }
            }
            if let Some(e) = failure {
                return partial(sent, e);
            }
        }
        Ok(sent)
    }
}
