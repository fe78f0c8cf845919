//! ICMPv6 (RFC 4443) as far as an emulated host needs it: echo, and the neighbour solicitations
//! and advertisements of IPv6 neighbour discovery (RFC 4861) with their link-layer address
//! options.
//!
//! [`Repr::parse`] verifies the checksum over the IPv6 pseudo header and applies the message
//! rules RFC 4861 section 7.1 gives a receiver that the message alone can check (code 0, a
//! long enough body, a unicast target, no option of length 0, no source link-layer address
//! from the unspecified address). The hop limit of 255, which proves the sender is on the
//! link, is the IPv6 header's: the caller checks it.

use core::fmt;
use core::net::Ipv6Addr;

use super::checksum;
use super::error::check_len;
use super::error::{Error, Result};
use super::ethernet::MacAddr;
use super::field::{be16, put_be16};
use super::ip_protocol;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    /// Echo: identifier and sequence number.
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const ECHO_DATA: usize = 8;
    /// Neighbour advertisement flags (R, S, O in the top bits).
    pub const NA_FLAGS: usize = 4;
    /// Neighbour solicitation and advertisement: the target address, then options.
    pub const TARGET: Range<usize> = 8..24;
    pub const ND_OPTIONS: usize = 24;
}

/// Length of the fixed ICMPv6 header (type, code, checksum).
pub const HEADER_LEN: usize = 4;
/// Length of a neighbour solicitation or advertisement without options.
pub const ND_LEN: usize = field::ND_OPTIONS;
/// Length of a link-layer address option for Ethernet.
pub const LLADDR_OPTION_LEN: usize = 8;

const PROTO: &str = "ICMPv6";

/// ICMPv6 message types handled here.
pub mod msg_type {
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

const OPT_SOURCE_LLADDR: u8 = 1;
const OPT_TARGET_LLADDR: u8 = 2;

const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// A zero-copy view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer that holds at least the fixed header; the buffer is the whole message
    /// (the IPv6 payload), which the checksum covers.
    pub fn new_checked(buffer: T) -> Result<Self> {
        check_len(PROTO, buffer.as_ref(), HEADER_LEN)?;
        Ok(Packet { buffer })
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Whether the checksum verifies for a message from `src` to `dst`.
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let Ok(len) = u32::try_from(data.len()) else {
            return false;
        };
        let acc = checksum::pseudo_header_v6(src, dst, ip_protocol::ICMPV6, len);
        checksum::fold(checksum::sum(acc, data)) == 0xffff
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes and writes the checksum of a message from `src` to `dst`.
    pub fn fill_checksum(&mut self, src: Ipv6Addr, dst: Ipv6Addr) {
        let data = self.buffer.as_mut();
        put_be16(data, field::CHECKSUM, 0);
        // Emitted messages are a few hundred bytes at most: the length fits.
        let len = data.len() as u32;
        let acc = checksum::pseudo_header_v6(src, dst, ip_protocol::ICMPV6, len);
        let sum = !checksum::fold(checksum::sum(acc, data));
        put_be16(data, field::CHECKSUM, sum);
    }
}

/// The flags of a neighbour advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NaFlags {
    /// The sender is a router.
    pub router: bool,
    /// An answer to a solicitation.
    pub solicited: bool,
    /// The receiver should replace a link-layer address it has cached.
    pub override_: bool,
}

/// The owned contents of an ICMPv6 message handled here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repr<'a> {
    /// Echo request (ping).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data, echoed back.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Who has `target`? (Sent to its solicited-node group, or unicast to refresh.)
    NeighborSolicit {
        /// The address asked for.
        target: Ipv6Addr,
        /// The sender's MAC (absent from a duplicate address detection probe).
        source_lladdr: Option<MacAddr>,
    },
    /// `target` is at `target_lladdr`.
    NeighborAdvert {
        /// Router, solicited and override flags.
        flags: NaFlags,
        /// The address advertised.
        target: Ipv6Addr,
        /// Its MAC.
        target_lladdr: Option<MacAddr>,
    },
}

impl<'a> Repr<'a> {
    /// Parses a message from `src` to `dst`, verifying its checksum; a type not handled here is
    /// `Malformed` with reason "unsupported ICMPv6 type".
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &'a Packet<&'a T>,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Result<Repr<'a>> {
        let data = packet.buffer.as_ref();
        check_len(PROTO, data, HEADER_LEN)?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::Checksum { protocol: PROTO });
        }
        match packet.msg_type() {
            t @ (msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY) => {
                check_len(PROTO, data, field::ECHO_DATA)?;
                let (ident, seq_no) = (be16(data, field::ECHO_IDENT), be16(data, field::ECHO_SEQ));
                let data = &data[field::ECHO_DATA..];
                Ok(if t == msg_type::ECHO_REQUEST {
                    Repr::EchoRequest {
                        ident,
                        seq_no,
                        data,
                    }
                } else {
                    Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    }
                })
            }
            t @ (msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT) => {
                check_len(PROTO, data, ND_LEN)?;
                if packet.code() != 0 {
                    return Err(Error::malformed(PROTO, "neighbour discovery code not 0"));
                }
                let mut t16 = [0u8; 16];
                t16.copy_from_slice(&data[field::TARGET]);
                let target = Ipv6Addr::from(t16);
                if target.is_multicast() {
                    return Err(Error::malformed(PROTO, "multicast target"));
                }
                let want = if t == msg_type::NEIGHBOR_SOLICIT {
                    OPT_SOURCE_LLADDR
                } else {
                    OPT_TARGET_LLADDR
                };
                let lladdr = lladdr_option(&data[field::ND_OPTIONS..], want)?;
                if t == msg_type::NEIGHBOR_SOLICIT {
                    if src.is_unspecified() && lladdr.is_some() {
                        return Err(Error::malformed(
                            PROTO,
                            "source link-layer address from the unspecified address",
                        ));
                    }
                    Ok(Repr::NeighborSolicit {
                        target,
                        source_lladdr: lladdr,
                    })
                } else {
                    let f = data[field::NA_FLAGS];
                    let flags = NaFlags {
                        router: f & FLAG_ROUTER != 0,
                        solicited: f & FLAG_SOLICITED != 0,
                        override_: f & FLAG_OVERRIDE != 0,
                    };
                    if flags.solicited && dst.is_multicast() {
                        return Err(Error::malformed(
                            PROTO,
                            "solicited advertisement to a group",
                        ));
                    }
                    Ok(Repr::NeighborAdvert {
                        flags,
                        target,
                        target_lladdr: lladdr,
                    })
                }
            }
            _ => Err(Error::malformed(PROTO, "unsupported ICMPv6 type")),
        }
    }

    /// Length of the emitted message.
    pub const fn buffer_len(&self) -> usize {
        match self {
            Repr::EchoRequest { data, .. } | Repr::EchoReply { data, .. } => {
                field::ECHO_DATA + data.len()
            }
            Repr::NeighborSolicit { source_lladdr, .. } => {
                ND_LEN
                    + if source_lladdr.is_some() {
                        LLADDR_OPTION_LEN
                    } else {
                        0
                    }
            }
            Repr::NeighborAdvert { target_lladdr, .. } => {
                ND_LEN
                    + if target_lladdr.is_some() {
                        LLADDR_OPTION_LEN
                    } else {
                        0
                    }
            }
        }
    }

    /// Writes the message into the start of `packet`'s buffer, with its checksum for `src` to
    /// `dst`; the buffer must be exactly [`buffer_len`](Self::buffer_len) long (the checksum
    /// covers all of it).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Result<()> {
        let len = self.buffer_len();
        let b = packet.buffer.as_mut();
        check_len(PROTO, b, len)?;
        if b.len() != len {
            return Err(Error::Unrepresentable {
                protocol: PROTO,
                reason: "buffer longer than the message",
            });
        }
        b[field::CODE] = 0;
        match *self {
            Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                b[field::TYPE] = if matches!(self, Repr::EchoRequest { .. }) {
                    msg_type::ECHO_REQUEST
                } else {
                    msg_type::ECHO_REPLY
                };
                put_be16(b, field::ECHO_IDENT, ident);
                put_be16(b, field::ECHO_SEQ, seq_no);
                b[field::ECHO_DATA..].copy_from_slice(data);
            }
            Repr::NeighborSolicit {
                target,
                source_lladdr,
            } => {
                b[field::TYPE] = msg_type::NEIGHBOR_SOLICIT;
                b[4..8].fill(0);
                b[field::TARGET].copy_from_slice(&target.octets());
                put_lladdr(&mut b[ND_LEN..], OPT_SOURCE_LLADDR, source_lladdr);
            }
            Repr::NeighborAdvert {
                flags,
                target,
                target_lladdr,
            } => {
                b[field::TYPE] = msg_type::NEIGHBOR_ADVERT;
                b[4..8].fill(0);
                b[field::NA_FLAGS] = (if flags.router { FLAG_ROUTER } else { 0 })
                    | (if flags.solicited { FLAG_SOLICITED } else { 0 })
                    | (if flags.override_ { FLAG_OVERRIDE } else { 0 });
                b[field::TARGET].copy_from_slice(&target.octets());
                put_lladdr(&mut b[ND_LEN..], OPT_TARGET_LLADDR, target_lladdr);
            }
        }
        packet.fill_checksum(src, dst);
        Ok(())
    }
}

/// Writes a link-layer address option of `kind` into `b` (exactly 8 bytes) if there is one.
fn put_lladdr(b: &mut [u8], kind: u8, mac: Option<MacAddr>) {
    if let Some(mac) = mac {
        b[0] = kind;
        b[1] = 1;
        b[2..8].copy_from_slice(&mac.0);
    }
}

/// The Ethernet address in the first option of `kind` among `options`; every option is
/// walked, and one of length 0 or running past the end is malformed (RFC 4861 section 4.6).
fn lladdr_option(mut options: &[u8], kind: u8) -> Result<Option<MacAddr>> {
    let mut found = None;
    while !options.is_empty() {
        check_len(PROTO, options, 2)?;
        let len = usize::from(options[1]) * 8;
        if len == 0 {
            return Err(Error::malformed(PROTO, "option of length 0"));
        }
        check_len(PROTO, options, len)?;
        if options[0] == kind && found.is_none() && len >= LLADDR_OPTION_LEN {
            found = MacAddr::from_bytes(&options[2..8]).ok();
        }
        options = &options[len..];
    }
    Ok(found)
}

/// The solicited-node multicast group of `addr` (`ff02::1:ffXX:XXXX`, RFC 4291 section
/// 2.7.1): where a neighbour solicitation for `addr` is sent.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

impl fmt::Display for Repr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Repr::EchoRequest { ident, seq_no, .. } => {
                write!(f, "ICMPv6 echo request id={ident} seq={seq_no}")
            }
            Repr::EchoReply { ident, seq_no, .. } => {
                write!(f, "ICMPv6 echo reply id={ident} seq={seq_no}")
            }
            Repr::NeighborSolicit {
                target,
                source_lladdr,
            } => write!(f, "ICMPv6 NS who has {target} (from {source_lladdr:?})"),
            Repr::NeighborAdvert {
                flags,
                target,
                target_lladdr,
            } => write!(f, "ICMPv6 NA {target} is at {target_lladdr:?} {flags:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bytes from scapy 2.8 (not this code):
    //   raw(ICMPv6ND_NS(tgt="2001:db8::2")/ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01"))
    //   inside IPv6(src="2001:db8::1", dst="ff02::1:ff00:2").
    const NS: [u8; 32] = [
        0x87, 0x00, 0x1c, 0x27, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x01,
    ];
    // raw(ICMPv6ND_NA(tgt="2001:db8::2", R=0, S=1, O=1)/ICMPv6NDOptDstLLAddr(lladdr=
    //   "02:00:00:00:00:02")) inside IPv6(src="2001:db8::2", dst="2001:db8::1").
    const NA: [u8; 32] = [
        0x88, 0x00, 0x8a, 0x71, 0x60, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x02,
    ];

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn solicitation_round_trip() {
        let (src, dst) = (a("2001:db8::1"), a("ff02::1:ff00:2"));
        assert_eq!(solicited_node(a("2001:db8::2")), dst);
        let p = Packet::new_checked(&NS[..]).unwrap();
        let r = Repr::parse(&p, src, dst).unwrap();
        assert_eq!(
            r,
            Repr::NeighborSolicit {
                target: a("2001:db8::2"),
                source_lladdr: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            }
        );
        let mut out = [0u8; 32];
        assert_eq!(r.buffer_len(), 32);
        r.emit(&mut Packet::new_unchecked(&mut out[..]), src, dst)
            .unwrap();
        assert_eq!(out, NS);
    }

    #[test]
    fn advertisement_round_trip() {
        let (src, dst) = (a("2001:db8::2"), a("2001:db8::1"));
        let p = Packet::new_checked(&NA[..]).unwrap();
        let r = Repr::parse(&p, src, dst).unwrap();
        let flags = NaFlags {
            router: false,
            solicited: true,
            override_: true,
        };
        assert_eq!(
            r,
            Repr::NeighborAdvert {
                flags,
                target: a("2001:db8::2"),
                target_lladdr: Some(MacAddr([2, 0, 0, 0, 0, 2])),
            }
        );
        let mut out = [0u8; 32];
        r.emit(&mut Packet::new_unchecked(&mut out[..]), src, dst)
            .unwrap();
        assert_eq!(out, NA);
    }

    #[test]
    fn echo_round_trip() {
        let (src, dst) = (a("2001:db8::1"), a("2001:db8::2"));
        let r = Repr::EchoRequest {
            ident: 7,
            seq_no: 9,
            data: b"abc",
        };
        let mut out = [0u8; 11];
        r.emit(&mut Packet::new_unchecked(&mut out[..]), src, dst)
            .unwrap();
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(Repr::parse(&p, src, dst).unwrap(), r);
        // The same bytes from another source fail the checksum.
        assert!(Repr::parse(&p, a("2001:db8::3"), dst).is_err());
    }

    #[test]
    fn malformed() {
        let (src, dst) = (a("2001:db8::1"), a("ff02::1:ff00:2"));
        for n in [0, 3, 23] {
            let p = Packet::new_unchecked(&NS[..n]);
            assert!(Repr::parse(&p, src, dst).is_err(), "{n} bytes");
        }
        let mut b = NS;
        b[30] ^= 1;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            Repr::parse(&p, src, dst),
            Err(Error::Checksum { protocol: PROTO })
        );
        // An option of length 0 (checksum refilled so that only the option is wrong).
        let mut b = NS;
        b[25] = 0;
        Packet::new_unchecked(&mut b[..]).fill_checksum(src, dst);
        assert!(Repr::parse(&Packet::new_checked(&b[..]).unwrap(), src, dst).is_err());
        // A source link-layer address from the unspecified address (a DAD probe has none).
        let mut b = NS;
        Packet::new_unchecked(&mut b[..]).fill_checksum(Ipv6Addr::UNSPECIFIED, dst);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(Repr::parse(&p, Ipv6Addr::UNSPECIFIED, dst).is_err());
        // A multicast target.
        let mut b = NS;
        b[8] = 0xff;
        Packet::new_unchecked(&mut b[..]).fill_checksum(src, dst);
        assert!(Repr::parse(&Packet::new_checked(&b[..]).unwrap(), src, dst).is_err());
        // Unsupported type.
        let mut b = NS;
        b[0] = 1;
        Packet::new_unchecked(&mut b[..]).fill_checksum(src, dst);
        assert!(Repr::parse(&Packet::new_checked(&b[..]).unwrap(), src, dst).is_err());
    }
}
