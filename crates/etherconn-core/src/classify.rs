//! One pass over a received frame: its dispatch key, addresses, VLAN stack and payload ranges.
//!
//! [`classify`] is what every relay runs once per received frame; the result is a small `Copy`
//! value that every consumer of the frame (the L2 dispatcher, the UDP demultiplexer, the
//! counters) shares, so no layer parses the frame a second time.
//!
//! It is a thin pass over the [`wire`](crate::wire) views: every validity rule (lengths, IHL,
//! checksums, extension headers, the destination port) is a method of a view, the same one the
//! protocol's `Repr::parse` calls, so the classifier accepts exactly the headers the `Repr`s
//! parse. The one thing decided here is which layers to look at: the IP layer after the last
//! VLAN tag, and UDP only inside an IP packet that is not a fragment. A fragment's IP layer is
//! reported with `fragment` set and no UDP layer (no reassembly; see
//! [the fragment policy](crate::wire::ipv4#fragments)).
//!
//! [`Classified`] stores each fact once, compactly (addresses as bytes, ports as `u16`, spans as
//! `u32`, the layers as flags): the relays copy it beside every received frame.
//! [`Classified::ip`] and [`Classified::udp`] expand it into [`IpInfo`] and [`UdpInfo`], with
//! `IpAddr`s and `SocketAddr`s, when a consumer asks.
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
//! assert!(c.ip().is_none());
//!
//! // A runt is an error value, never a panic.
//! assert_eq!(classify(&frame[..10], None), Err(Invalid::Truncated { layer: Layer::Ethernet }));
//! ```

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::key::{L2EndpointKey, VlanIds};
use crate::martian;
use crate::wire::vlan::{self, VlanStack};
use crate::wire::{
    arp, ethernet, ip_protocol, ipv4, ipv6, udp, Error, EtherType, MacAddr, Span, Tpid, VlanId,
    VlanTag,
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
    /// More than three VLAN tags ([`MAX_TAGS`](vlan::MAX_TAGS)), counting one the kernel
    /// stripped.
    #[error("more than three VLAN tags")]
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
    /// The classifier's reading of a view's error at `layer`.
    ///
    /// Out of line: inlined, its constants were set up on the success path of every check.
    #[cold]
    #[inline(never)]
    fn wire(layer: Layer, e: Error) -> Invalid {
        match e {
            Error::Checksum { .. } => Invalid::BadChecksum { layer },
            Error::Malformed { reason, .. } | Error::Unrepresentable { reason, .. } => {
                Invalid::Malformed { layer, reason }
            }
            Error::Truncated { .. } => Invalid::Truncated { layer },
        }
    }
}

/// The IP layer of a classified frame, as [`Classified::ip`] expands it.
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

/// The UDP layer of a classified frame, as [`Classified::udp`] expands it; its checksum has been
/// verified unless [`Options::verify_udp_checksum`] was off.
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

/// Which layers a [`Classified`] holds, as bits.
mod has {
    pub const IPV4: u8 = 1;
    pub const IPV6: u8 = 2;
    pub const FRAGMENT: u8 = 4;
    pub const UDP: u8 = 8;
}

/// A byte range within a frame, stored in half the room of a [`Span`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
struct Span32 {
    start: u32,
    end: u32,
}

impl Span32 {
    /// `start..end`, both at most the frame's length, which [`classify_with`] checked fits.
    #[inline(always)]
    fn new(start: usize, end: usize) -> Self {
        Span32 {
            start: start as u32,
            end: end as u32,
        }
    }

    #[inline(always)]
    fn get(self) -> Span {
        Span::new(self.start as usize, self.end as usize)
    }
}

/// Everything the relays need to know about a received frame.
///
/// The key and the source MAC are fields; everything else is read through methods, because it
/// is stored compactly (see [the module docs](self)). Equal frames classify to equal values.
///
/// The default value (all-zero addresses, no layers) is a placeholder for empty buffers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Classified {
    /// The dispatch key: destination MAC, VLAN ids and EtherType after the last tag.
    pub key: L2EndpointKey,
    /// Source (remote) MAC.
    pub src_mac: MacAddr,
    /// The VLAN tags' TPIDs and TCIs, outermost first; `key.vlans` says how many there are.
    tpids: [Tpid; vlan::MAX_TAGS],
    tcis: [u16; vlan::MAX_TAGS],
    /// `has::*` bits.
    layers: u8,
    /// IP: upper-layer protocol (after IPv6 extension headers).
    protocol: u8,
    /// IP: TTL or hop limit.
    ttl: u8,
    /// UDP: ports and the checksum field.
    src_port: u16,
    dst_port: u16,
    udp_checksum: u16,
    /// The Ethernet payload (trimmed to the IP length for IP packets).
    payload: Span32,
    /// IP: the upper-layer bytes.
    ip_payload: Span32,
    /// UDP: the end of the datagram (its payload starts 8 bytes after `ip_payload.start`).
    udp_end: u32,
    /// IP: the addresses, IPv4 in the first four bytes and the rest zero.
    src_ip: [u8; 16],
    dst_ip: [u8; 16],
}

impl Classified {
    /// Destination (local) MAC: the key's.
    #[inline]
    pub const fn dst_mac(&self) -> MacAddr {
        self.key.mac
    }

    /// The VLAN tags, outermost first, including one the kernel stripped.
    #[inline]
    pub fn vlans(&self) -> VlanStack {
        let mut stack = VlanStack::EMPTY;
        for i in 0..self.key.vlans.len() {
            // Never more than MAX_TAGS: classify_with stored them.
            let _ = stack.push(VlanTag::from_tci(self.tpids[i], self.tcis[i]));
        }
        stack
    }

    /// EtherType after the last tag: the key's.
    #[inline]
    pub const fn ethertype(&self) -> EtherType {
        self.key.ethertype
    }

    /// The Ethernet payload after the last tag (trimmed to the IP length for IP packets).
    #[inline]
    pub fn payload(&self) -> Span {
        self.payload.get()
    }

    /// The IPv4 or IPv6 layer, if the EtherType is IP.
    #[inline]
    pub fn ip(&self) -> Option<IpInfo> {
        if self.layers & (has::IPV4 | has::IPV6) == 0 {
            return None;
        }
        Some(IpInfo {
            src: self.ip_addr(&self.src_ip),
            dst: self.ip_addr(&self.dst_ip),
            protocol: self.protocol,
            ttl: self.ttl,
            fragment: self.layers & has::FRAGMENT != 0,
            payload: self.ip_payload.get(),
        })
    }

    /// The IP layer's upper-layer protocol (after IPv6 extension headers), if the EtherType is
    /// IP: [`ip`](Self::ip)'s `protocol` without building the addresses, for a relay that routes
    /// some protocols (ICMP, say) apart on every frame.
    #[inline]
    pub fn ip_protocol(&self) -> Option<u8> {
        (self.layers & (has::IPV4 | has::IPV6) != 0).then_some(self.protocol)
    }

    /// The UDP layer, if the packet is an unfragmented UDP datagram.
    #[inline]
    pub fn udp(&self) -> Option<UdpInfo> {
        if self.layers & has::UDP == 0 {
            return None;
        }
        let start = self.ip_payload.start as usize + udp::HEADER_LEN;
        Some(UdpInfo {
            remote: SocketAddr::new(self.ip_addr(&self.src_ip), self.src_port),
            local: SocketAddr::new(self.ip_addr(&self.dst_ip), self.dst_port),
            payload: Span::new(start, self.udp_end as usize),
            checksum: self.udp_checksum,
        })
    }

    /// Why a host would drop the frame's UDP datagram ([`martian`]); `None` when it would take
    /// it, or when the frame holds no UDP datagram. The verdict of [`martian::udp`] on
    /// [`udp`](Self::udp)'s addresses, read from the stored bytes: relays ask it for every
    /// datagram to a conn that drops martians, and building the `SocketAddr`s first cost a
    /// hundred instructions.
    #[inline]
    pub fn udp_martian(&self) -> Option<martian::Martian> {
        if self.layers & has::UDP == 0 {
            return None;
        }
        let address = if self.layers & has::IPV4 != 0 {
            let [s0, s1, s2, s3, ..] = self.src_ip;
            let [d0, d1, d2, d3, ..] = self.dst_ip;
            martian::ipv4(Ipv4Addr::new(s0, s1, s2, s3), Ipv4Addr::new(d0, d1, d2, d3))
        } else {
            martian::ipv6(Ipv6Addr::from(self.src_ip), Ipv6Addr::from(self.dst_ip))
        };
        martian::with_ports(address, self.src_port, self.dst_port)
    }

    #[inline(always)]
    fn ip_addr(&self, bytes: &[u8; 16]) -> IpAddr {
        if self.layers & has::IPV4 != 0 {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(*bytes))
        }
    }
}

/// Choices for [`classify_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Verify UDP checksums (default true). A relay turns this off for a frame whose checksum
    /// the kernel reports as already verified or not yet computed (AF_PACKET
    /// `TP_STATUS_CSUM_VALID` / `TP_STATUS_CSUMNOTREADY`, as for frames from a local veth peer).
    pub verify_udp_checksum: bool,
    /// Verify IPv4 header checksums (default true). Off only where the frames' integrity was
    /// established before (a capture already checked, say), or to compare the parse alone with
    /// parsers that verify no checksum.
    pub verify_ipv4_checksum: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// The defaults: verify everything.
    pub const fn new() -> Self {
        Options {
            verify_udp_checksum: true,
            verify_ipv4_checksum: true,
        }
    }

    /// These options with UDP checksum verification turned on or off.
    pub const fn verify_udp_checksum(mut self, on: bool) -> Self {
        self.verify_udp_checksum = on;
        self
    }

    /// These options with IPv4 header checksum verification turned on or off.
    pub const fn verify_ipv4_checksum(mut self, on: bool) -> Self {
        self.verify_ipv4_checksum = on;
        self
    }
}

/// Classifies a received frame with every check on.
///
/// `stripped_tag` is the outer VLAN tag when the kernel moved it out of the frame (AF_PACKET VLAN
/// offload); the frame is then keyed exactly as if the tag were still in it (the tag is kept as
/// its TCI, so a `pcp` above 7, which no TCI holds, keeps its low 3 bits).
#[inline]
pub fn classify(frame: &[u8], stripped_tag: Option<VlanTag>) -> Result<Classified, Invalid> {
    classify_with(frame, stripped_tag, Options::new())
}

/// Classifies a received frame with the given [`Options`].
///
/// A frame longer than `u32::MAX` bytes is malformed (no link carries one; the spans of a
/// [`Classified`] are 32-bit).
pub fn classify_with(
    frame: &[u8],
    stripped_tag: Option<VlanTag>,
    opts: Options,
) -> Result<Classified, Invalid> {
    if u32::try_from(frame.len()).is_err() {
        return Err(Invalid::Malformed {
            layer: Layer::Ethernet,
            reason: "frame longer than 4 GiB",
        });
    }
    let eth = ethernet::Frame::new_checked(frame).map_err(|e| Invalid::wire(Layer::Ethernet, e))?;
    let mut c = Classified {
        src_mac: eth.src_addr(),
        ..Classified::default()
    };
    let mut n = 0;
    if let Some(tag) = stripped_tag {
        c.tpids[0] = tag.tpid;
        c.tcis[0] = tag.tci();
        n = 1;
    }
    let mut ethertype = eth.ethertype();
    let mut at = ethernet::HEADER_LEN;
    while let Some(tpid) = Tpid::new(ethertype.0) {
        let tag =
            vlan::Packet::new_checked(&frame[at..]).map_err(|e| Invalid::wire(Layer::Vlan, e))?;
        if n == vlan::MAX_TAGS {
            return Err(Invalid::TooManyVlanTags);
        }
        c.tpids[n] = tpid;
        c.tcis[n] = tag.tci();
        n += 1;
        ethertype = tag.ethertype();
        at += vlan::HEADER_LEN;
    }
    let ids = match n {
        0 => VlanIds::NONE,
        1 => VlanIds::one(vlan_id(c.tcis[0])),
        2 => VlanIds::two(vlan_id(c.tcis[0]), vlan_id(c.tcis[1])),
        _ => VlanIds::three(vlan_id(c.tcis[0]), vlan_id(c.tcis[1]), vlan_id(c.tcis[2])),
    };
    c.key = L2EndpointKey::new(eth.dst_addr(), ids, ethertype);
    c.payload = Span32::new(at, frame.len());
    let l3 = &frame[at..];
    match ethertype {
        EtherType::IPV4 => classify_ipv4(&mut c, l3, at, opts)?,
        EtherType::IPV6 => classify_ipv6(&mut c, l3, at, opts)?,
        EtherType::ARP => {
            arp::Packet::new_checked(l3).map_err(|e| Invalid::wire(Layer::Arp, e))?;
        }
        _ => {}
    }
    Ok(c)
}

/// The id of a tag control information field.
#[inline(always)]
fn vlan_id(tci: u16) -> VlanId {
    VlanTag::from_tci(Tpid::DOT1Q, tci).id
}

/// The IPv4 layer of `c`, whose header starts at `at` in the frame.
fn classify_ipv4(c: &mut Classified, l3: &[u8], at: usize, opts: Options) -> Result<(), Invalid> {
    let p = ipv4::Packet::new_checked(l3).map_err(|e| Invalid::wire(Layer::Ipv4, e))?;
    if opts.verify_ipv4_checksum {
        p.check_checksum()
            .map_err(|e| Invalid::wire(Layer::Ipv4, e))?;
    }
    let end = at + usize::from(p.total_len());
    let (src, dst) = (p.src_addr(), p.dst_addr());
    c.payload = Span32::new(at, end);
    c.ip_payload = Span32::new(at + p.header_len(), end);
    c.src_ip[..4].copy_from_slice(&src.octets());
    c.dst_ip[..4].copy_from_slice(&dst.octets());
    c.protocol = p.protocol();
    c.ttl = p.ttl();
    c.layers = has::IPV4;
    if p.is_fragment() {
        c.layers |= has::FRAGMENT;
    } else if c.protocol == ip_protocol::UDP {
        classify_udp(c, p.payload(), src, dst, opts)?;
    }
    Ok(())
}

/// The IPv6 layer of `c`, whose header starts at `at` in the frame.
fn classify_ipv6(c: &mut Classified, l3: &[u8], at: usize, opts: Options) -> Result<(), Invalid> {
    let p = ipv6::Packet::new_checked(l3).map_err(|e| Invalid::wire(Layer::Ipv6, e))?;
    let upper = p.upper_layer().map_err(|e| Invalid::wire(Layer::Ipv6, e))?;
    let (src, dst) = (p.src_addr(), p.dst_addr());
    c.payload = Span32::new(at, at + ipv6::HEADER_LEN + usize::from(p.payload_len()));
    c.ip_payload = Span32::new(at + upper.span.start, at + upper.span.end);
    c.src_ip = src.octets();
    c.dst_ip = dst.octets();
    c.protocol = upper.protocol;
    c.ttl = p.hop_limit();
    c.layers = has::IPV6;
    if upper.fragment {
        c.layers |= has::FRAGMENT;
    } else if c.protocol == ip_protocol::UDP {
        let l4 = &l3[upper.span.range()];
        classify_udp(c, l4, src, dst, opts)?;
    }
    Ok(())
}

/// The UDP layer of `c`, inside the IP payload `l4` from `src` to `dst`.
///
/// Inlined into each IP version's pass; the checksum is a call of its own per address family,
/// so that neither pass carries the other family's pseudo header nor the summing loop's
/// registers (inlined with the rest, they spilled the pass's: callgrind counted about 75 more
/// instructions per frame).
#[inline(always)]
fn classify_udp<A: Into<IpAddr> + Copy>(
    c: &mut Classified,
    l4: &[u8],
    src: A,
    dst: A,
    opts: Options,
) -> Result<(), Invalid> {
    let udp_err = |e| Invalid::wire(Layer::Udp, e);
    let p = udp::Packet::new_checked(l4).map_err(udp_err)?;
    p.check_ports().map_err(udp_err)?;
    if opts.verify_udp_checksum {
        udp_checksum(&p, src, dst).map_err(udp_err)?;
    }
    c.layers |= has::UDP;
    c.src_port = p.src_port();
    c.dst_port = p.dst_port();
    c.udp_checksum = p.checksum();
    c.udp_end = c.ip_payload.start + u32::from(p.len());
    Ok(())
}

/// [`udp::Packet::check_checksum`] for one address family.
#[inline(never)]
fn udp_checksum<A: Into<IpAddr>>(p: &udp::Packet<&[u8]>, src: A, dst: A) -> Result<(), Error> {
    p.check_checksum(src.into(), dst.into())
}

impl fmt::Debug for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classified")
            .field("key", &self.key)
            .field("src_mac", &self.src_mac)
            .field("vlans", &self.vlans())
            .field("payload", &self.payload())
            .field("ip", &self.ip())
            .field("udp", &self.udp())
            .finish()
    }
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} from {}", self.key, self.src_mac)?;
        if let Some(u) = self.udp() {
            write!(
                f,
                " udp {} -> {} ({} bytes)",
                u.remote,
                u.local,
                u.payload.len()
            )?;
        } else if let Some(ip) = self.ip() {
            write!(f, " ip {} -> {} proto {}", ip.src, ip.dst, ip.protocol)?;
            if ip.fragment {
                write!(f, " fragment")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{build_udp_frame, UdpFrame};

    fn built(vlans: &[VlanTag], src: &str, dst: &str, payload: &[u8]) -> ([u8; 256], usize) {
        let f = UdpFrame {
            src_mac: "02:00:00:00:00:01".parse().unwrap(),
            dst_mac: "02:00:00:00:00:02".parse().unwrap(),
            vlans,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ttl: 9,
            dscp: 0,
            payload,
        };
        let mut buf = [0u8; 256];
        let len = build_udp_frame(&mut buf, &f).unwrap();
        (buf, len)
    }

    #[test]
    fn stays_compact() {
        // The relays keep one beside every pooled frame; it was 208 bytes with SocketAddrs,
        // 92 with room for two tags, 96 with three.
        assert!(core::mem::size_of::<Classified>() <= 96);
    }

    #[test]
    fn accessors_expand_what_was_stored() {
        let tags = [
            VlanTag::new(Tpid::QINQ_LEGACY, VlanId::new(7).unwrap()).with_pcp(5),
            VlanTag::dot1q(4095).unwrap(),
        ];
        let (buf, len) = built(&tags[1..], "[2001:db8::1]:546", "[ff02::1:2]:547", b"x");
        let c = classify(&buf[..len], Some(tags[0])).unwrap();
        assert_eq!(c.vlans().as_slice(), &tags);
        assert_eq!(c.key.vlans.as_slice(), &[7, 4095]);
        assert_eq!((c.dst_mac(), c.ethertype()), (c.key.mac, EtherType::IPV6));
        let ip = c.ip().unwrap();
        assert_eq!(ip.src, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (ip.protocol, ip.ttl, ip.fragment),
            (ip_protocol::UDP, 9, false)
        );
        let u = c.udp().unwrap();
        assert_eq!(u.local, "[ff02::1:2]:547".parse::<SocketAddr>().unwrap());
        assert_eq!(&buf[u.payload.range()], b"x");
        assert_eq!(c.payload(), Span::new(18, len));
        assert_eq!(
            alloc::format!("{c}"),
            "02:00:00:00:00:02|7|4095#0x86dd from 02:00:00:00:00:01 \
             udp [2001:db8::1]:546 -> [ff02::1:2]:547 (1 bytes)"
        );
        let none = Classified::default();
        assert_eq!(
            (none.ip(), none.udp(), none.vlans()),
            (None, None, VlanStack::EMPTY)
        );
    }

    #[test]
    fn three_tags_inline_or_one_stripped_key_alike() {
        let tags = [
            VlanTag::new(Tpid::QINQ, VlanId::new(10).unwrap()).with_pcp(2),
            VlanTag::new(Tpid::DOT1Q, VlanId::new(20).unwrap()),
            VlanTag::new(Tpid::DOT1Q, VlanId::new(0).unwrap()).with_pcp(7),
        ];
        let (buf, len) = built(&tags, "192.0.2.1:1", "192.0.2.2:2", b"abc");
        let inline = classify(&buf[..len], None).unwrap();
        assert_eq!(inline.key.to_string(), "02:00:00:00:00:02|10|20|0#0x0800");
        assert_eq!(inline.vlans().as_slice(), &tags);
        assert_eq!(&buf[inline.udp().unwrap().payload.range()], b"abc");
        let (buf2, len2) = built(&tags[1..], "192.0.2.1:1", "192.0.2.2:2", b"abc");
        let stripped = classify(&buf2[..len2], Some(tags[0])).unwrap();
        assert_eq!(stripped.key, inline.key);
        assert_eq!(stripped.vlans(), inline.vlans());
        // A fourth tag, inline or on top of three from offload, is refused.
        let mut four = [0u8; 256];
        four[..12].copy_from_slice(&buf[..12]);
        four[12..16].copy_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        four[16..len + 4].copy_from_slice(&buf[12..len]);
        assert_eq!(
            classify(&four[..len + 4], None),
            Err(Invalid::TooManyVlanTags)
        );
        assert_eq!(
            classify(&buf[..len], Some(tags[0])),
            Err(Invalid::TooManyVlanTags)
        );
    }

    /// The fragment policy of the ipv4 module: the header of a fragment is valid for both
    /// `Repr::parse` and the classifier, and neither reads its payload as UDP.
    #[test]
    fn fragments_agree_with_repr_parse() {
        let (mut buf, len) = built(&[], "192.0.2.1:1000", "192.0.2.2:2000", b"payload");
        for (more, offset) in [(true, 0), (false, 8), (true, 1480)] {
            let mut p = ipv4::Packet::new_unchecked(&mut buf[14..len]);
            p.set_flags_and_offset(false, more, offset);
            p.fill_checksum();
            let c = classify(&buf[..len], None).unwrap();
            let ip = c.ip().unwrap();
            assert!(ip.fragment && c.udp().is_none(), "{more} {offset}");
            let repr = ipv4::Repr::parse(&ipv4::Packet::new_checked(&buf[14..len]).unwrap());
            assert!(repr.unwrap().is_fragment(), "{more} {offset}");
        }
        // A fragment's header is checked like any other.
        buf[24] ^= 0xff;
        assert_eq!(
            classify(&buf[..len], None),
            Err(Invalid::BadChecksum { layer: Layer::Ipv4 })
        );
    }

    #[test]
    fn checksum_options() {
        let (mut buf, len) = built(&[], "192.0.2.1:1000", "192.0.2.2:2000", b"payload");
        buf[45] ^= 1; // in the UDP payload (42..49; the frame is padded to 60)
        let bad_udp = Err(Invalid::BadChecksum { layer: Layer::Udp });
        assert_eq!(classify(&buf[..len], None), bad_udp);
        let no_udp = Options::new().verify_udp_checksum(false);
        assert!(classify_with(&buf[..len], None, no_udp).is_ok());
        buf[24] ^= 1;
        let bad_ip = Err(Invalid::BadChecksum { layer: Layer::Ipv4 });
        assert_eq!(classify_with(&buf[..len], None, no_udp), bad_ip);
        let none = no_udp.verify_ipv4_checksum(false);
        assert!(classify_with(&buf[..len], None, none).is_ok());
    }
}
