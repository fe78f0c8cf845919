//! One pass over a received frame: its dispatch key, addresses, VLAN stack and payload ranges.
//!
//! [`classify`] is what every relay runs once per received frame; the result is a small `Copy`
//! value that every consumer of the frame (the L2 dispatcher, the UDP demultiplexer, the
//! counters) shares, so no layer parses the frame a second time. It is a thin pass over the
//! [`wire`](crate::wire) views: the protocol rules live there.
//!
//! ```
//! use etherconn_core::classify::{classify, Invalid, Layer};
//!
//! // An ARP request from 02:00:00:00:00:01 for 192.0.2.2, broadcast.
//! let mut frame = [0u8; 60];
//! frame[..6].copy_from_slice(&[0xff; 6]);
//! frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
//! frame[12..14].copy_from_slice(&[0x08, 0x06]);
//! frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
//! let c = classify(&frame, None).unwrap();
//! assert_eq!(c.key.to_string(), "ff:ff:ff:ff:ff:ff#0x0806");
//! assert!(c.ip.is_none());
//!
//! // A runt is an error value, never a panic.
//! assert_eq!(classify(&frame[..10], None), Err(Invalid::Truncated { layer: Layer::Ethernet }));
//! ```

use core::fmt;
use core::net::{IpAddr, SocketAddr};

use crate::key::{L2EndpointKey, VlanIds};
use crate::wire::vlan::{self, VlanStack};
use crate::wire::{
    arp, ethernet, ip_protocol, ipv4, ipv6, udp, Error, EtherType, MacAddr, Span, Tpid, VlanTag,
};

/// The protocol layer at which a frame was found invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The Ethernet header.
    Ethernet,
    /// A VLAN tag.
    Vlan,
    /// An ARP packet.
    Arp,
    /// An IPv4 header.
    Ipv4,
    /// An IPv6 header or its extension headers.
    Ipv6,
    /// A UDP header.
    Udp,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::Ethernet => "Ethernet",
            Layer::Vlan => "VLAN",
            Layer::Arp => "ARP",
            Layer::Ipv4 => "IPv4",
            Layer::Ipv6 => "IPv6",
            Layer::Udp => "UDP",
        })
    }
}

/// Why a frame is invalid. Relays count these and drop the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// A header, or the length a header announces, runs past the end of the frame.
    #[error("truncated {layer} header or payload")]
    Truncated {
        /// Where.
        layer: Layer,
    },
    /// More than two VLAN tags (counting one the kernel stripped).
    #[error("more than two VLAN tags")]
    TooManyVlanTags,
    /// A field holds a value the protocol forbids (IHL below 5, UDP length below 8, ...).
    #[error("malformed {layer}: {reason}")]
    Malformed {
        /// Where.
        layer: Layer,
        /// What.
        reason: &'static str,
    },
    /// The IPv4 header checksum or the UDP checksum does not verify (or an IPv6 UDP checksum
    /// is zero).
    #[error("bad {layer} checksum")]
    BadChecksum {
        /// Which checksum.
        layer: Layer,
    },
}

impl Invalid {
    fn at(layer: Layer) -> impl Fn(Error) -> Invalid {
        move |e| match e {
            Error::Checksum { .. } => Invalid::BadChecksum { layer },
            Error::Malformed { reason, .. } | Error::Unrepresentable { reason, .. } => {
                Invalid::Malformed { layer, reason }
            }
            Error::Truncated { .. } => Invalid::Truncated { layer },
        }
    }
}

/// The IP layer of a classified frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpInfo {
    /// Source address (the remote end).
    pub src: IpAddr,
    /// Destination address (the local end).
    pub dst: IpAddr,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub protocol: u8,
    /// TTL or hop limit.
    pub ttl: u8,
    /// Whether the packet is a fragment; fragments carry no [`UdpInfo`] (no reassembly).
    pub fragment: bool,
    /// The upper-layer bytes within the frame (padding trimmed).
    pub payload: Span,
}

/// The UDP layer of a classified frame; its checksum has been verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpInfo {
    /// The sender's address and port.
    pub remote: SocketAddr,
    /// The destination address and port.
    pub local: SocketAddr,
    /// The UDP payload within the frame.
    pub payload: Span,
    /// The checksum field as received (0 over IPv4 when the sender computed none).
    pub checksum: u16,
}

/// Everything the relays need to know about a received frame.
///
/// The default value (all-zero addresses, no layers) is a placeholder for empty buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Classified {
    /// The dispatch key: destination MAC, VLAN ids and EtherType.
    pub key: L2EndpointKey,
    /// Destination (local) MAC.
    pub dst_mac: MacAddr,
    /// Source (remote) MAC.
    pub src_mac: MacAddr,
    /// The VLAN tags, outermost first, including one the kernel stripped.
    pub vlans: VlanStack,
    /// EtherType after the last tag.
    pub ethertype: EtherType,
    /// The Ethernet payload after the last tag (trimmed to the IP length for IP packets).
    pub payload: Span,
    /// The IPv4 or IPv6 layer, if the EtherType is IP.
    pub ip: Option<IpInfo>,
    /// The UDP layer, if the packet is an unfragmented UDP datagram.
    pub udp: Option<UdpInfo>,
}

/// Choices for [`classify_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Verify UDP checksums (default true). A relay turns this off for a frame whose checksum
    /// the kernel reports as already verified or not yet computed (AF_PACKET
    /// `TP_STATUS_CSUM_VALID` / `TP_STATUS_CSUMNOTREADY`, as for frames from a local veth peer).
    pub verify_udp_checksum: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            verify_udp_checksum: true,
        }
    }
}

impl Options {
    /// The defaults: verify everything.
    pub const fn new() -> Self {
        Options {
            verify_udp_checksum: true,
        }
    }

    /// These options with UDP checksum verification turned on or off.
    pub const fn verify_udp_checksum(mut self, on: bool) -> Self {
        self.verify_udp_checksum = on;
        self
    }
}

/// Classifies a received frame with every check on.
///
/// `stripped_tag` is the outer VLAN tag when the kernel moved it out of the frame (AF_PACKET VLAN
/// offload); the frame is then keyed exactly as if the tag were still in it.
pub fn classify(frame: &[u8], stripped_tag: Option<VlanTag>) -> Result<Classified, Invalid> {
    classify_with(frame, stripped_tag, Options::new())
}

/// Classifies a received frame with the given [`Options`].
pub fn classify_with(
    frame: &[u8],
    stripped_tag: Option<VlanTag>,
    opts: Options,
) -> Result<Classified, Invalid> {
    let eth = ethernet::Frame::new_checked(frame).map_err(Invalid::at(Layer::Ethernet))?;
    let mut vlans = VlanStack::EMPTY;
    if let Some(tag) = stripped_tag {
        vlans.push(tag).map_err(|_| Invalid::TooManyVlanTags)?;
    }
    let mut ethertype = eth.ethertype();
    let mut at = ethernet::HEADER_LEN;
    while let Some(tpid) = Tpid::new(ethertype.0) {
        let tag = vlan::Packet::new_checked(&frame[at..]).map_err(Invalid::at(Layer::Vlan))?;
        vlans
            .push(VlanTag::from_tci(tpid, tag.tci()))
            .map_err(|_| Invalid::TooManyVlanTags)?;
        ethertype = tag.ethertype();
        at += vlan::HEADER_LEN;
    }

    let dst_mac = eth.dst_addr();
    let mut c = Classified {
        key: L2EndpointKey::new(dst_mac, VlanIds::from_stack(&vlans), ethertype),
        dst_mac,
        src_mac: eth.src_addr(),
        vlans,
        ethertype,
        payload: Span::new(at, frame.len()),
        ip: None,
        udp: None,
    };
    let l3 = &frame[at..];
    match ethertype {
        EtherType::IPV4 => classify_ipv4(l3, at, opts, &mut c)?,
        EtherType::IPV6 => classify_ipv6(l3, at, opts, &mut c)?,
        EtherType::ARP => {
            arp::Packet::new_checked(l3).map_err(Invalid::at(Layer::Arp))?;
        }
        _ => {}
    }
    Ok(c)
}

fn classify_ipv4(l3: &[u8], at: usize, opts: Options, c: &mut Classified) -> Result<(), Invalid> {
    let p = ipv4::Packet::new_checked(l3).map_err(Invalid::at(Layer::Ipv4))?;
    if !p.verify_checksum() {
        return Err(Invalid::BadChecksum { layer: Layer::Ipv4 });
    }
    let end = at + usize::from(p.total_len());
    c.payload = Span::new(at, end);
    let ip = IpInfo {
        src: IpAddr::V4(p.src_addr()),
        dst: IpAddr::V4(p.dst_addr()),
        protocol: p.protocol(),
        ttl: p.ttl(),
        fragment: p.is_fragment(),
        payload: Span::new(at + p.header_len(), end),
    };
    c.ip = Some(ip);
    if ip.protocol == ip_protocol::UDP && !ip.fragment {
        c.udp = Some(classify_udp(p.payload(), &ip, opts)?);
    }
    Ok(())
}

fn classify_ipv6(l3: &[u8], at: usize, opts: Options, c: &mut Classified) -> Result<(), Invalid> {
    let p = ipv6::Packet::new_checked(l3).map_err(Invalid::at(Layer::Ipv6))?;
    let upper = p.upper_layer().map_err(Invalid::at(Layer::Ipv6))?;
    let end = at + ipv6::HEADER_LEN + usize::from(p.payload_len());
    c.payload = Span::new(at, end);
    let ip = IpInfo {
        src: IpAddr::V6(p.src_addr()),
        dst: IpAddr::V6(p.dst_addr()),
        protocol: upper.protocol,
        ttl: p.hop_limit(),
        fragment: upper.fragment,
        payload: Span::new(at + upper.span.start, at + upper.span.end),
    };
    c.ip = Some(ip);
    if ip.protocol == ip_protocol::UDP && !ip.fragment {
        c.udp = Some(classify_udp(&l3[upper.span.range()], &ip, opts)?);
    }
    Ok(())
}

fn classify_udp(l4: &[u8], ip: &IpInfo, opts: Options) -> Result<UdpInfo, Invalid> {
    let p = udp::Packet::new_checked(l4).map_err(Invalid::at(Layer::Udp))?;
    // The rules of udp::Repr::parse, applied to the already checked view without re-checking it.
    if p.dst_port() == 0 {
        return Err(Invalid::Malformed {
            layer: Layer::Udp,
            reason: "destination port 0",
        });
    }
    if opts.verify_udp_checksum {
        let good = match (p.checksum(), ip.dst) {
            (0, IpAddr::V4(_)) => true,
            (0, IpAddr::V6(_)) => false,
            _ => p.verify_checksum(ip.src, ip.dst),
        };
        if !good {
            return Err(Invalid::BadChecksum { layer: Layer::Udp });
        }
    }
    let start = ip.payload.start + udp::HEADER_LEN;
    Ok(UdpInfo {
        remote: SocketAddr::new(ip.src, p.src_port()),
        local: SocketAddr::new(ip.dst, p.dst_port()),
        payload: Span::new(start, ip.payload.start + usize::from(p.len())),
        checksum: p.checksum(),
    })
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {}", self.key, self.src_mac)?;
        if let Some(u) = &self.udp {
            write!(
                f,
                " udp {} -> {} ({} bytes)",
                u.remote,
                u.local,
                u.payload.len()
            )?;
        } else if let Some(ip) = &self.ip {
            write!(f, " ip {} -> {} proto {}", ip.src, ip.dst, ip.protocol)?;
            if ip.fragment {
                write!(f, " fragment")?;
            }
        }
        Ok(())
    }
}
