//! [`UdpError`]: why a UDP endpoint could not be created, or a datagram not sent.

use std::io;
use std::net::{IpAddr, SocketAddr};

use etherconn_core::L4RecvKey;
use etherconn_relay::{RelayError, SizeLimit};

/// Why a UDP endpoint could not be created, or why a datagram was refused.
///
/// Constructors return it; the per-datagram calls, shaped like `std::net::UdpSocket`, return an
/// `io::Error` that carries it (get it back with `io::Error::get_ref` and `downcast_ref`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UdpError {
    /// The relay refused the L2 endpoint (its MAC and VLAN stack are taken, the relay
    /// stopped, ...).
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// Another conn on the shared L2 endpoint is bound to this address.
    #[error("UDP address {0} is already bound on this shared L2 endpoint")]
    AddrInUse(L4RecvKey),
    /// The shared L2 endpoint has a default receiver already.
    #[error("this shared L2 endpoint already has a default receiver")]
    DefaultInUse,
    /// No ephemeral port (49152 to 65535) is free for this address.
    #[error("no free ephemeral UDP port for {0}")]
    NoFreePort(IpAddr),
    /// Source and destination are of different IP families.
    #[error("{local} cannot send to {remote}: different IP families")]
    FamilyMismatch {
        /// The source address.
        local: SocketAddr,
        /// The destination address.
        remote: SocketAddr,
    },
    /// The datagram does not fit one frame; nothing is fragmented.
    #[error("{}", too_large_message(*len, *max, limit, *ipv6))]
    TooLarge {
        /// Payload length asked for.
        len: usize,
        /// The largest payload that fits.
        max: usize,
        /// The link's limit for the conn's VLAN stack (MTU, tags, the relay's buffers).
        limit: SizeLimit,
        /// Whether the datagram is IPv6 (40 bytes of IP header, else 20).
        ipv6: bool,
    },
    /// No receiver takes a datagram to this destination: port 0, or the unspecified address
    /// (`etherconn_core::build::udp_destination_problem`).
    #[error("cannot send to {dst}: {reason}")]
    BadDestination {
        /// The destination asked for.
        dst: SocketAddr,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The next-hop resolver knows no MAC for this destination.
    #[error("no next-hop MAC address for {0}: the resolver returned none")]
    NoNextHop(IpAddr),
    /// Another MAC holds this address on these VLANs in the neighbour responder.
    #[error("{ip} is already answered for at {mac} on these VLANs")]
    NeighbourInUse {
        /// The address.
        ip: IpAddr,
        /// The MAC that holds it.
        mac: etherconn_core::wire::MacAddr,
    },
    /// `send` or `peer_addr` on a conn that was never `connect`ed.
    #[error("the UDP conn is not connected: call connect first, or use send_to")]
    NotConnected,
    /// A conn's address cannot change to this one.
    #[error("cannot move the conn from {from} to {to}: {reason}")]
    BadLocalAddr {
        /// The conn's address.
        from: SocketAddr,
        /// The address asked for.
        to: SocketAddr,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An I/O error (a thread that could not be started).
    #[error(transparent)]
    Io(io::Error),
    /// The `EtherConn` handed over does not suit the conn (wrong EtherTypes, UDP demultiplexing
    /// on or off), or an option is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}

/// The message of [`UdpError::TooLarge`]: the payload's size, the limit and what sets it.
fn too_large_message(len: usize, max: usize, limit: &SizeLimit, ipv6: bool) -> String {
    let (family, ip) = if ipv6 { ("IPv6", 40) } else { ("IPv4", 20) };
    let why = if max < limit.payload().saturating_sub(ip + 8) {
        format!("the {family} length field")
    } else {
        format!("{limit}, less {ip} bytes of {family} header and 8 of UDP header")
    };
    format!(
        "UDP payload of {len} bytes does not fit one frame: at most {max} bytes here ({why}); \
         nothing is fragmented"
    )
}

impl From<UdpError> for io::Error {
    fn from(e: UdpError) -> io::Error {
        let kind = match e {
            UdpError::Relay(e) => return io::Error::from(e),
            UdpError::Io(e) => return e,
            UdpError::AddrInUse(_)
            | UdpError::DefaultInUse
            | UdpError::NoFreePort(_)
            | UdpError::NeighbourInUse { .. } => io::ErrorKind::AddrInUse,
            UdpError::NoNextHop(_) => io::ErrorKind::AddrNotAvailable,
            UdpError::NotConnected => io::ErrorKind::NotConnected,
            UdpError::FamilyMismatch { .. }
            | UdpError::TooLarge { .. }
            | UdpError::BadDestination { .. }
            | UdpError::BadLocalAddr { .. }
            | UdpError::InvalidConfig(_) => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds() {
        let key = L4RecvKey::udp("192.0.2.1".parse().unwrap(), 67);
        let any = "0.0.0.0:0".parse().unwrap();
        for (e, kind) in [
            (UdpError::AddrInUse(key), io::ErrorKind::AddrInUse),
            (
                UdpError::NoNextHop("192.0.2.1".parse().unwrap()),
                io::ErrorKind::AddrNotAvailable,
            ),
            (
                UdpError::TooLarge {
                    len: 2000,
                    max: 1472,
                    limit: SizeLimit::new(1500, &[], 2048),
                    ipv6: false,
                },
                io::ErrorKind::InvalidInput,
            ),
            (
                UdpError::FamilyMismatch {
                    local: any,
                    remote: any,
                },
                io::ErrorKind::InvalidInput,
            ),
            (
                UdpError::Relay(RelayError::Stopped),
                io::ErrorKind::NotConnected,
            ),
        ] {
            assert_eq!(io::Error::from(e).kind(), kind);
        }
        let e = io::Error::from(UdpError::TooLarge {
            len: 2000,
            max: 1472,
            limit: SizeLimit::new(1500, &[], 2048),
            ipv6: false,
        });
        assert_eq!(
            e.to_string(),
            "UDP payload of 2000 bytes does not fit one frame: at most 1472 bytes here (the \
             interface MTU of 1500 bytes, less 20 bytes of IPv4 header and 8 of UDP header); \
             nothing is fragmented"
        );
        assert!(e.get_ref().unwrap().downcast_ref::<UdpError>().is_some());
    }
}
