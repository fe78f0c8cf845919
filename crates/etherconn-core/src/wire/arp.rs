//! ARP over Ethernet for IPv4 (RFC 826).

use core::fmt;
use core::net::Ipv4Addr;

use super::error::check_len;
use super::error::{Error, Result};
use super::ethernet::{EtherType, MacAddr};
use super::field::{be16, put_be16};

mod field {
    use core::ops::Range;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;

const PROTO: &str = "ARP";

/// ARP operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Who has the target protocol address?
    Request,
    /// The sender has the sender protocol address.
    Reply,
    /// Any other operation code.
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(v: u16) -> Self {
        match v {
            1 => Operation::Request,
            2 => Operation::Reply,
            v => Operation::Unknown(v),
        }
    }
}

impl From<Operation> for u16 {
    fn from(v: Operation) -> Self {
        match v {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(v) => v,
        }
    }
}

/// A zero-copy view of an ARP packet; only Ethernet/IPv4 ARP has typed address getters.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps a buffer that holds at least an Ethernet/IPv4 ARP packet.
    pub fn new_checked(buffer: T) -> Result<Self> {
        check_len(PROTO, buffer.as_ref(), PACKET_LEN)?;
        Ok(Packet { buffer })
    }

    /// Hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (0x0800 for IPv4).
    pub fn protocol_type(&self) -> EtherType {
        EtherType(be16(self.buffer.as_ref(), field::PTYPE))
    }

    /// Hardware address length.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation.
    pub fn operation(&self) -> Operation {
        be16(self.buffer.as_ref(), field::OPER).into()
    }

    /// Sender hardware address.
    pub fn sender_hardware_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::SHA]).unwrap_or_default()
    }

    /// Sender protocol address.
    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SPA];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buffer.as_ref()[field::THA]).unwrap_or_default()
    }

    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::TPA];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_fixed(&mut self, operation: Operation) {
        let b = self.buffer.as_mut();
        put_be16(b, field::HTYPE, 1);
        put_be16(b, field::PTYPE, EtherType::IPV4.0);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        put_be16(b, field::OPER, operation.into());
    }

    fn set_addrs(&mut self, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) {
        let b = self.buffer.as_mut();
        b[field::SHA].copy_from_slice(&sha.0);
        b[field::SPA].copy_from_slice(&spa.octets());
        b[field::THA].copy_from_slice(&tha.0);
        b[field::TPA].copy_from_slice(&tpa.octets());
    }
}

/// The owned contents of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Operation.
    pub operation: Operation,
    /// Sender hardware address.
    pub source_hardware_addr: MacAddr,
    /// Sender protocol address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target hardware address.
    pub target_hardware_addr: MacAddr,
    /// Target protocol address.
    pub target_protocol_addr: Ipv4Addr,
}

impl Repr {
    /// Parses an Ethernet/IPv4 ARP packet; other hardware or protocol types are malformed here.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        check_len(PROTO, packet.buffer.as_ref(), PACKET_LEN)?;
        if packet.hardware_type() != 1
            || packet.protocol_type() != EtherType::IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::malformed(PROTO, "not Ethernet/IPv4 ARP"));
        }
        Ok(Repr {
            operation: packet.operation(),
            source_hardware_addr: packet.sender_hardware_addr(),
            source_protocol_addr: packet.sender_protocol_addr(),
            target_hardware_addr: packet.target_hardware_addr(),
            target_protocol_addr: packet.target_protocol_addr(),
        })
    }

    /// Length of the emitted packet.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        check_len(PROTO, packet.buffer.as_ref(), PACKET_LEN)?;
        packet.set_fixed(self.operation);
        packet.set_addrs(
            self.source_hardware_addr,
            self.source_protocol_addr,
            self.target_hardware_addr,
            self.target_protocol_addr,
        );
        Ok(())
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ARP {:?} {} ({}) -> {} ({})",
            self.operation,
            self.source_protocol_addr,
            self.source_hardware_addr,
            self.target_protocol_addr,
            self.target_hardware_addr
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Who has 192.168.1.2? Tell 192.168.1.1 (52:54:00:12:34:56).
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0,
        0xa8, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x02,
    ];

    #[test]
    fn parse_and_emit() {
        let p = Packet::new_checked(&REQUEST[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.operation, Operation::Request);
        assert_eq!(r.source_hardware_addr.to_string(), "52:54:00:12:34:56");
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(192, 168, 1, 2));
        let mut out = [0u8; 28];
        r.emit(&mut Packet::new_unchecked(&mut out[..])).unwrap();
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn malformed() {
        assert!(Packet::new_checked(&REQUEST[..27]).is_err());
        let mut b = REQUEST;
        b[5] = 16; // protocol length of IPv6
        assert!(Repr::parse(&Packet::new_checked(&b[..]).unwrap()).is_err());
        let mut b = REQUEST;
        b[7] = 9;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap().operation(),
            Operation::Unknown(9)
        );
    }
}
