//! The DHCPv4 messages a client sends and the replies it reads, through `dhcproto`.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
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
const MAGIC_AT: usize = 236;

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
    /// Not a DHCP message at all (too short, no magic cookie, undecodable options).
    Malformed,
    /// A well-formed message that is not a BOOTREPLY OFFER/ACK/NAK for Ethernet (a request,
    /// another message type).
    Other,
}

/// Reads a server's reply.
pub(crate) fn decode_reply(payload: &[u8]) -> Result<Reply, NotAReply> {
    if payload.get(MAGIC_AT..MAGIC_AT + 4) != Some(&MAGIC[..]) {
        return Err(NotAReply::Malformed);
    }
    let msg = Message::decode(&mut Decoder::new(payload)).map_err(|_| NotAReply::Malformed)?;
    if msg.opcode() != Opcode::BootReply || msg.hlen() != 6 {
        return Err(NotAReply::Other);
    }
    let kind = match msg.opts().msg_type() {
        Some(MessageType::Offer) => ReplyKind::Offer,
        Some(MessageType::Ack) => ReplyKind::Ack,
        Some(MessageType::Nak) => ReplyKind::Nak,
        _ => return Err(NotAReply::Other),
    };
    // dhcproto's `chaddr()` slices its 16 bytes by `hlen`, so it panics on a reply with `hlen`
    // above 16: the `hlen` check above must come first (the `dhcp_reply` fuzz target holds it).
    let mac = MacAddr::from_bytes(&msg.chaddr()[..6]).map_err(|_| NotAReply::Malformed)?;
    let server = match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    let lease_secs = match msg.opts().get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(s)) => Some(*s),
        _ => None,
    };
    Ok(Reply {
        kind,
        xid: msg.xid(),
        mac,
        yiaddr: msg.yiaddr(),
        server,
        lease_secs,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
}
