//! The DHCPv4 messages a client sends, encoded by `dhcproto`, and the replies it reads, decoded
//! here by offset (see [`decode_reply`] for why not by `dhcproto`).

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, OptionCode};
use dhcproto::{Encodable, Encoder};
use etherconn_core::wire::MacAddr;

/// UDP port of DHCP servers.
pub const SERVER_PORT: u16 = 67;
/// UDP port of DHCP clients.
pub const CLIENT_PORT: u16 = 68;

/// BOOTP's minimum message length (RFC 1542 section 3.2): some servers and relay agents drop
/// shorter requests, so requests are padded to it.
const MIN_BOOTP_LEN: usize = 300;
/// The DHCP magic cookie (RFC 2131 section 3), which `dhcproto` does not check.
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Offsets in the fixed BOOTP header (RFC 2131 section 2).
const OP_AT: usize = 0;
const HTYPE_AT: usize = 1;
const HLEN_AT: usize = 2;
const XID_AT: usize = 4;
const YIADDR_AT: usize = 16;
const CHADDR_AT: usize = 28;
const MAGIC_AT: usize = 236;
/// The options field: after the fixed BOOTP header and the magic cookie.
const OPTIONS_AT: usize = MAGIC_AT + MAGIC.len();
const BOOTREPLY: u8 = 2;
/// ARP hardware type of Ethernet, and its address length.
const HTYPE_ETHERNET: u8 = 1;
const HLEN_ETHERNET: u8 = 6;
/// Option codes a client acts on (RFC 2132).
const OPT_LEASE_TIME: u8 = 51;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;

/// The options a client asks for: subnet mask, router, DNS, lease time, server id.
const PARAMETERS: [OptionCode; 5] = [
    OptionCode::SubnetMask,
    OptionCode::Router,
    OptionCode::DomainNameServer,
    OptionCode::AddressLeaseTime,
    OptionCode::ServerIdentifier,
];

/// A request a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// DHCPDISCOVER.
    Discover,
    /// DHCPREQUEST in the SELECTING state: the offered address and the chosen server.
    Select {
        /// `yiaddr` of the chosen offer (option 50).
        ip: Ipv4Addr,
        /// The chosen server (option 54).
        server: Ipv4Addr,
    },
}

/// The fields of a request that are not in [`Request`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestHeader {
    pub(crate) mac: MacAddr,
    pub(crate) xid: u32,
    pub(crate) secs: u16,
    pub(crate) broadcast: bool,
}

/// Encodes `request` into `out` (cleared first), padded to the BOOTP minimum.
pub(crate) fn encode_request(
    out: &mut Vec<u8>,
    header: &RequestHeader,
    request: Request,
) -> Result<(), dhcproto::error::EncodeError> {
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut msg = Message::new_with_id(
        header.xid,
        unspecified,
        unspecified,
        unspecified,
        unspecified,
        &header.mac.0,
    );
    msg.set_secs(header.secs);
    if header.broadcast {
        msg.set_flags(Flags::default().set_broadcast());
    }
    let opts = msg.opts_mut();
    match request {
        Request::Discover => {
            opts.insert(DhcpOption::MessageType(MessageType::Discover));
        }
        Request::Select { ip, server } => {
            opts.insert(DhcpOption::MessageType(MessageType::Request));
            opts.insert(DhcpOption::RequestedIpAddress(ip));
            opts.insert(DhcpOption::ServerIdentifier(server));
        }
    }
    opts.insert(DhcpOption::ParameterRequestList(PARAMETERS.to_vec()));
    opts.insert(DhcpOption::MaxMessageSize(1500));
    out.clear();
    msg.encode(&mut Encoder::new(out))?;
    if out.len() < MIN_BOOTP_LEN {
        // Zeros after the End option are PAD options.
        out.resize(MIN_BOOTP_LEN, 0);
    }
    Ok(())
}

/// What kind of reply a server sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyKind {
    Offer,
    Ack,
    Nak,
}

/// The parts of a server's reply a client acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) kind: ReplyKind,
    pub(crate) xid: u32,
    /// The first six octets of `chaddr` (Ethernet hardware type and length checked).
    pub(crate) mac: MacAddr,
    pub(crate) yiaddr: Ipv4Addr,
    /// Option 54, when present.
    pub(crate) server: Option<Ipv4Addr>,
    /// Option 51 in seconds, when present.
    pub(crate) lease_secs: Option<u32>,
}

/// Why a datagram to the client port is not a reply a client acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotAReply {
    /// Not a DHCP message at all (too short, no magic cookie, an option running past the end,
    /// a message type, server identifier or lease time of the wrong length).
    Malformed,
    /// A well-formed message that is not a BOOTREPLY OFFER/ACK/NAK for Ethernet (a request,
    /// another message type).
    Other,
}

/// Reads a server's reply.
///
/// By offset rather than through dhcproto's decoder, which a hostile reply can panic or
/// mislead: `Message::chaddr()` slices its 16 bytes by `hlen` (a panic above 16), several
/// options are checked with `debug_assert!` (option 94 of a length other than 3 panics a debug
/// build), and option decoding stops silently at the first option it cannot decode (a
/// zero-length subnet mask, say), dropping the server identifier and lease time after it. A
/// client needs six fixed fields and three options, all read here.
pub(crate) fn decode_reply(payload: &[u8]) -> Result<Reply, NotAReply> {
    let Some(header) = payload.get(..OPTIONS_AT) else {
        return Err(NotAReply::Malformed);
    };
    if header[MAGIC_AT..] != MAGIC {
        return Err(NotAReply::Malformed);
    }
    if header[OP_AT] != BOOTREPLY
        || header[HTYPE_AT] != HTYPE_ETHERNET
        || header[HLEN_AT] != HLEN_ETHERNET
    {
        return Err(NotAReply::Other);
    }
    let opts = &payload[OPTIONS_AT..];
    let kind = match option::<1>(opts, OPT_MESSAGE_TYPE)? {
        Some([2]) => ReplyKind::Offer,
        Some([5]) => ReplyKind::Ack,
        Some([6]) => ReplyKind::Nak,
        _ => return Err(NotAReply::Other),
    };
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    Ok(Reply {
        kind,
        xid: be32(XID_AT),
        mac: MacAddr::from_bytes(&header[CHADDR_AT..CHADDR_AT + 6])
            .map_err(|_| NotAReply::Malformed)?,
        yiaddr: Ipv4Addr::from(be32(YIADDR_AT)),
        server: option::<4>(opts, OPT_SERVER_ID)?.map(Ipv4Addr::from),
        lease_secs: option::<4>(opts, OPT_LEASE_TIME)?.map(u32::from_be_bytes),
    })
}

/// The `N`-byte value of option `code` in an options field, every occurrence joined (RFC 3396);
/// `None` when it is absent. Malformed when an option runs past the end of the field, or this
/// one's value is not `N` bytes long. Options after the End option are not read, nor those an
/// overload (option 52) moves into `sname` or `file`.
fn option<const N: usize>(mut opts: &[u8], code: u8) -> Result<Option<[u8; N]>, NotAReply> {
    const PAD: u8 = 0;
    const END: u8 = 255;
    let mut value = [0u8; N];
    let mut len = 0;
    let mut found = false;
    while let Some((&c, rest)) = opts.split_first() {
        match c {
            PAD => opts = rest,
            END => break,
            _ => {
                let (&n, rest) = rest.split_first().ok_or(NotAReply::Malformed)?;
                let n = usize::from(n);
                let v = rest.get(..n).ok_or(NotAReply::Malformed)?;
                if c == code {
                    let to = value.get_mut(len..len + n).ok_or(NotAReply::Malformed)?;
                    to.copy_from_slice(v);
                    len += n;
                    found = true;
                }
                opts = &rest[n..];
            }
        }
    }
    match (found, len == N) {
        (false, _) => Ok(None),
        (true, true) => Ok(Some(value)),
        (true, false) => Err(NotAReply::Malformed),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dhcproto::v4::Opcode;
    use dhcproto::{Decodable, Decoder};

    /// A server's reply to `request_bytes`, as a test server would build it.
    pub(crate) fn reply_to(
        request_bytes: &[u8],
        kind: MessageType,
        yiaddr: Ipv4Addr,
        server: Ipv4Addr,
    ) -> Vec<u8> {
        let req = Message::decode(&mut Decoder::new(request_bytes)).unwrap();
        let mut msg = Message::new_with_id(
            req.xid(),
            Ipv4Addr::UNSPECIFIED,
            yiaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &req.chaddr()[..6],
        );
        msg.set_opcode(Opcode::BootReply).set_flags(req.flags());
        msg.opts_mut().insert(DhcpOption::MessageType(kind));
        msg.opts_mut().insert(DhcpOption::ServerIdentifier(server));
        msg.opts_mut().insert(DhcpOption::AddressLeaseTime(3600));
        let mut out = Vec::new();
        msg.encode(&mut Encoder::new(&mut out)).unwrap();
        out
    }

    fn header() -> RequestHeader {
        RequestHeader {
            mac: "02:11:22:33:44:55".parse().unwrap(),
            xid: 0x1234_5678,
            secs: 3,
            broadcast: true,
        }
    }

    #[test]
    fn discover_fields() {
        let mut out = Vec::new();
        encode_request(&mut out, &header(), Request::Discover).unwrap();
        assert_eq!(out.len(), MIN_BOOTP_LEN);
        let m = Message::decode(&mut Decoder::new(&out)).unwrap();
        assert_eq!(m.opcode(), Opcode::BootRequest);
        assert_eq!(m.xid(), 0x1234_5678);
        assert_eq!(m.secs(), 3);
        assert!(m.flags().broadcast());
        assert_eq!(&m.chaddr()[..6], &header().mac.0);
        assert_eq!(m.hlen(), 6);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(&out[MAGIC_AT..MAGIC_AT + 4], &MAGIC);
    }

    #[test]
    fn select_request_and_reply() {
        let ip = Ipv4Addr::new(10, 0, 0, 9);
        let server = Ipv4Addr::new(10, 0, 0, 1);
        let mut out = Vec::new();
        let mut h = header();
        h.broadcast = false;
        encode_request(&mut out, &h, Request::Select { ip, server }).unwrap();
        let m = Message::decode(&mut Decoder::new(&out)).unwrap();
        assert!(!m.flags().broadcast());
        assert_eq!(m.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(
            m.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(ip))
        );
        let ack = reply_to(&out, MessageType::Ack, ip, server);
        let r = decode_reply(&ack).unwrap();
        assert_eq!(r.kind, ReplyKind::Ack);
        assert_eq!((r.xid, r.mac, r.yiaddr), (h.xid, h.mac, ip));
        assert_eq!((r.server, r.lease_secs), (Some(server), Some(3600)));
        // A request is not a reply; garbage is malformed.
        assert_eq!(decode_reply(&out), Err(NotAReply::Other));
        assert_eq!(decode_reply(&out[..100]), Err(NotAReply::Malformed));
        let mut bad = ack.clone();
        bad[MAGIC_AT] = 0;
        assert_eq!(decode_reply(&bad), Err(NotAReply::Malformed));
        let mut truncated = ack;
        truncated.truncate(MAGIC_AT + 6);
        assert!(decode_reply(&truncated).is_err());
    }

    /// `reply` with `opts` in place of its options.
    fn with_options(reply: &[u8], opts: &[u8]) -> Vec<u8> {
        let mut out = reply[..OPTIONS_AT].to_vec();
        out.extend_from_slice(opts);
        out
    }

    /// Found by the `dhcp_reply` fuzz target: dhcproto stops decoding options at the first one
    /// it cannot decode (here a zero-length subnet mask) and drops the rest, so the server
    /// identifier and lease time after it were lost.
    #[test]
    fn options_are_read_off_the_wire() {
        let ip = Ipv4Addr::new(10, 0, 0, 9);
        let server = Ipv4Addr::new(10, 0, 0, 1);
        let mut out = Vec::new();
        encode_request(&mut out, &header(), Request::Discover).unwrap();
        let offer = reply_to(&out, MessageType::Offer, ip, server);
        let opts = [
            &[1, 0][..],
            &[53, 1, 2],
            &[54, 4, 10, 0, 0, 1],
            &[51, 4, 0, 0, 0x0e, 0x10],
            &[255],
        ]
        .concat();
        let odd = with_options(&offer, &opts);
        let m = Message::decode(&mut Decoder::new(&odd)).unwrap();
        assert_eq!(m.opts().get(OptionCode::ServerIdentifier), None);
        let r = decode_reply(&odd).unwrap();
        assert_eq!(r.kind, ReplyKind::Offer);
        assert_eq!((r.server, r.lease_secs), (Some(server), Some(3600)));

        // An option split in two (RFC 3396); pads; nothing read after End.
        let split = [
            53, 1, 5, 0, 0, 54, 2, 10, 0, 54, 2, 0, 1, 255, 51, 4, 0, 0, 0, 1,
        ];
        let r = decode_reply(&with_options(&offer, &split)).unwrap();
        assert_eq!(
            (r.kind, r.server, r.lease_secs),
            (ReplyKind::Ack, Some(server), None)
        );

        // Not for Ethernet (hardware type 6, IEEE 802), or a longer hardware address: not a
        // reply a client acts on. dhcproto's `chaddr()` panics for `hlen` above 16.
        let mut token_ring = offer.clone();
        token_ring[HTYPE_AT] = 6;
        assert_eq!(decode_reply(&token_ring), Err(NotAReply::Other));
        for hlen in [0, 16, 17, 255] {
            let mut long = offer.clone();
            long[HLEN_AT] = hlen;
            assert_eq!(decode_reply(&long), Err(NotAReply::Other));
        }

        // Found by the fuzz target too: option 94 (client network interface) of a length other
        // than 3 fails a `debug_assert!` in dhcproto's decoder, so it panicked a debug build.
        let nii = [&[94, 1, 0][..], &[53, 1, 2, 54, 4, 10, 0, 0, 1, 255]].concat();
        let r = decode_reply(&with_options(&offer, &nii)).unwrap();
        assert_eq!((r.kind, r.server), (ReplyKind::Offer, Some(server)));

        // A server identifier of three bytes, a message type of two, an option running past
        // the end: malformed. No message type: not a reply.
        for bad in [
            &[53, 1, 2, 54, 3, 10, 0, 0, 255][..],
            &[53, 2, 2, 0, 255],
            &[53, 1, 2, 12, 9, b'h'],
        ] {
            let r = decode_reply(&with_options(&offer, bad));
            assert_eq!(r, Err(NotAReply::Malformed), "{bad:?}");
        }
        let r = decode_reply(&with_options(&offer, &[54, 4, 10, 0, 0, 1, 255]));
        assert_eq!(r, Err(NotAReply::Other));
    }
}
