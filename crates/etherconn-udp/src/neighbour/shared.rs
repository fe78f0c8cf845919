//! What a responder's worker thread, its handle, the registrations and the resolver closures
//! share: the relay, the responder's queue, the address table and the cache. The frames
//! received are handled here too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::classify::Classified;
use etherconn_core::key::VlanIds;
use etherconn_core::wire::vlan::VlanStack;
use etherconn_core::wire::{arp, checksum, icmpv6, ip_protocol, EtherType, MacAddr};
use etherconn_relay::{ConnEntry, PacketRelay, RxFrame};

use super::cache::{Asker, Cache, Known, Pending};
use super::config::{Counters, NeighbourConfig};
use super::frames::{self, ipv6_group_mac, Source, ND_HOP_LIMIT};
use super::table::{Added, AddrKey, AddressTable, Removed};
use crate::error::UdpError;

/// The all-nodes group, where unsolicited advertisements and answers to duplicate address
/// detection probes go.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The responder's state.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) relay: Arc<dyn PacketRelay>,
    /// The responder's queue: a member of the broadcast groups of the VLAN stacks served, and
    /// the tap every served conn diverts its ARP and ICMP frames to.
    pub(crate) entry: Arc<ConnEntry>,
    pub(crate) table: AddressTable,
    pub(crate) cache: Cache,
    pub(crate) config: NeighbourConfig,
    pub(crate) counters: Counters,
    pub(crate) stopping: AtomicBool,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The EtherType a family's neighbour discovery travels in.
fn nd_ethertype(ip: IpAddr) -> EtherType {
    if ip.is_ipv4() {
        EtherType::ARP
    } else {
        EtherType::IPV6
    }
}

impl Shared {
    pub(crate) fn new(relay: Arc<dyn PacketRelay>, config: NeighbourConfig) -> Shared {
        Shared {
            relay,
            entry: ConnEntry::new(config.queue_depth, true),
            table: AddressTable::default(),
            cache: Cache::new(config.max_unasked),
            config,
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
        }
    }

    pub(crate) fn lifetime_ms(&self) -> u64 {
        ms(self.config.lifetime)
    }

    pub(crate) fn retry_ms(&self) -> u64 {
        ms(self.config.retry_interval)
    }

    /// Answers for `ip` at `mac` on `vlans` from now on.
    pub(crate) fn add(
        &self,
        mac: MacAddr,
        vlans: &VlanStack,
        ip: IpAddr,
    ) -> Result<AddrKey, UdpError> {
        if ip.is_unspecified() || ip.is_multicast() || mac.is_multicast() {
            return Err(UdpError::InvalidConfig(
                "a neighbour address must be a unicast IP at a unicast MAC",
            ));
        }
        let key = (VlanIds::from_stack(vlans), ip);
        let added = self
            .table
            .add(key, mac)
            .map_err(|holder| UdpError::NeighbourInUse { ip, mac: holder })?;
        if let Added::First { first_on_stack } = added {
            if first_on_stack {
                let joined =
                    self.relay
                        .dispatcher()
                        .join_multicast(key.0, nd_ethertype(ip), &self.entry);
                if let Err(e) = joined {
                    self.remove(key);
                    return Err(UdpError::Relay(e));
                }
            }
            if self.config.announce {
                self.announce(mac, vlans, ip);
            }
        }
        Ok(key)
    }

    /// Stops answering for one holder of `key`.
    pub(crate) fn remove(&self, key: AddrKey) {
        if let Removed::Gone {
            last_on_stack: true,
        } = self.table.remove(key)
        {
            self.relay
                .dispatcher()
                .leave_multicast(key.0, nd_ethertype(key.1), &self.entry);
        }
    }

    fn sent(&self, r: std::io::Result<()>, counter: &std::sync::atomic::AtomicU64) {
        match r {
            Ok(()) => Counters::bump(counter),
            Err(_) => Counters::bump(&self.counters.send_errors),
        }
    }

    /// A gratuitous ARP request or an unsolicited advertisement for `ip`.
    fn announce(&self, mac: MacAddr, vlans: &VlanStack, ip: IpAddr) {
        let from = Source {
            mac,
            vlans: vlans.as_slice(),
        };
        let r = match ip {
            IpAddr::V4(a) => {
                let repr = arp::Repr {
                    operation: arp::Operation::Request,
                    source_hardware_addr: mac,
                    source_protocol_addr: a,
                    target_hardware_addr: MacAddr::UNSPECIFIED,
                    target_protocol_addr: a,
                };
                frames::arp(&*self.relay, from, MacAddr::BROADCAST, &repr)
            }
            IpAddr::V6(a) => {
                let repr = icmpv6::Repr::NeighborAdvert {
                    flags: icmpv6::NaFlags {
                        router: false,
                        solicited: false,
                        override_: true,
                    },
                    target: a,
                    target_lladdr: Some(mac),
                };
                let dst_mac = ipv6_group_mac(ALL_NODES);
                frames::icmpv6(&*self.relay, from, dst_mac, a, ALL_NODES, &repr)
            }
        };
        self.sent(r, &self.counters.announcements);
    }

    /// Sends a resolution's request: broadcast (ARP) or to the solicited-node group (ND), or
    /// unicast to the MAC being confirmed.
    pub(crate) fn request(&self, key: &AddrKey, p: &Pending) {
        let a = &p.asker;
        let from = Source {
            mac: a.mac,
            vlans: a.vlans.as_slice(),
        };
        let r = match (a.ip, key.1) {
            (IpAddr::V4(src), IpAddr::V4(target)) => {
                let repr = arp::Repr {
                    operation: arp::Operation::Request,
                    source_hardware_addr: a.mac,
                    source_protocol_addr: src,
                    target_hardware_addr: MacAddr::UNSPECIFIED,
                    target_protocol_addr: target,
                };
                frames::arp(
                    &*self.relay,
                    from,
                    p.probe.unwrap_or(MacAddr::BROADCAST),
                    &repr,
                )
            }
            (IpAddr::V6(src), IpAddr::V6(target)) => {
                let repr = icmpv6::Repr::NeighborSolicit {
                    target,
                    source_lladdr: Some(a.mac),
                };
                let (dst, dst_mac) = match p.probe {
                    Some(mac) => (target, mac),
                    None => {
                        let group = icmpv6::solicited_node(target);
                        (group, ipv6_group_mac(group))
                    }
                };
                frames::icmpv6(&*self.relay, from, dst_mac, src, dst, &repr)
            }
            // Never: the resolver asks only for its own family.
            _ => return,
        };
        self.sent(r, &self.counters.requests);
    }

    /// The MAC of `target` for `asker`: from the cache, or resolved (waiting up to `wait`).
    pub(crate) fn resolve(&self, asker: &Asker, target: IpAddr, wait: Duration) -> Option<MacAddr> {
        if target.is_ipv4() != asker.ip.is_ipv4() || target.is_unspecified() {
            return None;
        }
        let key = (VlanIds::from_stack(&asker.vlans), target);
        match self.cache.known(&key, self.lifetime_ms()) {
            Known::Fresh(mac) => Some(mac),
            Known::Stale(mac) => {
                if let Some(p) =
                    self.cache
                        .start(key, *asker, Some(mac), self.retry_ms(), self.lifetime_ms())
                {
                    self.request(&key, &p);
                }
                Some(mac)
            }
            Known::Unknown => {
                if let Some(p) =
                    self.cache
                        .start(key, *asker, None, self.retry_ms(), self.lifetime_ms())
                {
                    self.request(&key, &p);
                }
                if wait.is_zero() {
                    return None;
                }
                self.cache.wait(&key, self.lifetime_ms(), wait)
            }
        }
    }

    /// Sends the requests due and ends the resolutions that got no answer.
    pub(crate) fn retry(
        &self,
        now: u64,
        resend: &mut Vec<(AddrKey, Pending)>,
        failed: &mut Vec<AddrKey>,
    ) {
        resend.clear();
        failed.clear();
        self.cache.due(
            now,
            self.retry_ms(),
            self.config.max_requests.max(1),
            resend,
            failed,
        );
        for (key, p) in resend.iter() {
            self.request(key, p);
        }
        for key in failed.iter() {
            self.cache.forget(key);
            Counters::bump(&self.counters.failed);
        }
        if !failed.is_empty() {
            self.cache.failed();
        }
    }

    /// Handles one frame the responder received.
    pub(crate) fn handle(&self, rx: &RxFrame) {
        let info = &rx.info;
        let answered = if info.src_mac.is_multicast() || info.src_mac == MacAddr::UNSPECIFIED {
            false
        } else if info.ethertype() == EtherType::ARP {
            self.on_arp(rx)
        } else {
            match info.ip_protocol() {
                Some(ip_protocol::ICMPV6) => self.on_icmpv6(rx),
                Some(ip_protocol::ICMP) => self.on_icmpv4(rx),
                _ => false,
            }
        };
        if !answered {
            Counters::bump(&self.counters.ignored);
        }
    }

    /// Learns from an answer (or a request's sender) if it resolves or confirms something, or
    /// (`create`) is the sender of a request for one of our addresses.
    fn learn(&self, key: AddrKey, mac: MacAddr, create: bool) -> bool {
        if mac.is_multicast() || mac == MacAddr::UNSPECIFIED {
            return false;
        }
        let learned = self.cache.learn(key, mac, create);
        if learned {
            Counters::bump(&self.counters.learned);
        }
        learned
    }

    fn on_arp(&self, rx: &RxFrame) -> bool {
        let Some(req) = arp::Packet::new_checked(rx.payload())
            .ok()
            .and_then(|p| arp::Repr::parse(&p).ok())
        else {
            return false;
        };
        let vlans = rx.info.vlans();
        let ids = VlanIds::from_stack(&vlans);
        let spa = req.source_protocol_addr;
        let target = req.target_protocol_addr;
        // A request (not gratuitous) for one of our addresses: answered below.
        let ours = (req.operation == arp::Operation::Request && spa != target)
            .then(|| self.table.get(&(ids, IpAddr::V4(target))))
            .flatten();
        let mut useful = false;
        if !spa.is_unspecified() {
            let sender = (ids, IpAddr::V4(spa));
            useful = self.learn(sender, req.source_hardware_addr, ours.is_some());
        }
        let Some(mac) = ours else {
            return useful;
        };
        if req.source_hardware_addr.is_multicast() {
            return useful;
        }
        let reply = arp::Repr {
            operation: arp::Operation::Reply,
            source_hardware_addr: mac,
            source_protocol_addr: target,
            target_hardware_addr: req.source_hardware_addr,
            target_protocol_addr: spa,
        };
        let from = Source {
            mac,
            vlans: vlans.as_slice(),
        };
        let r = frames::arp(&*self.relay, from, req.source_hardware_addr, &reply);
        self.sent(r, &self.counters.arp_replies);
        true
    }

    fn on_icmpv6(&self, rx: &RxFrame) -> bool {
        let info: &Classified = &rx.info;
        let Some(ip) = info.ip() else { return false };
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip.src, ip.dst) else {
            return false;
        };
        if ip.fragment {
            return false;
        }
        let bytes = &rx.frame()[ip.payload.range()];
        let Ok(packet) = icmpv6::Packet::new_checked(bytes) else {
            return false;
        };
        let Ok(repr) = icmpv6::Repr::parse(&packet, src, dst) else {
            return false;
        };
        let vlans = info.vlans();
        let ids = VlanIds::from_stack(&vlans);
        let nd = matches!(
            repr,
            icmpv6::Repr::NeighborSolicit { .. } | icmpv6::Repr::NeighborAdvert { .. }
        );
        if nd && ip.ttl != ND_HOP_LIMIT {
            // Not from this link (RFC 4861 section 7.1).
            return false;
        }
        match repr {
            icmpv6::Repr::NeighborSolicit {
                target,
                source_lladdr,
            } => {
                let addressed = dst == target || dst == icmpv6::solicited_node(target);
                let ours = addressed
                    .then(|| self.table.get(&(ids, IpAddr::V6(target))))
                    .flatten();
                let mut useful = false;
                if let (false, Some(mac)) = (src.is_unspecified(), source_lladdr) {
                    useful = self.learn((ids, IpAddr::V6(src)), mac, ours.is_some());
                }
                let Some(mac) = ours else {
                    return useful;
                };
                // A duplicate address detection probe (from ::) is answered to all nodes.
                let (to, to_mac, solicited) = if src.is_unspecified() {
                    (ALL_NODES, ipv6_group_mac(ALL_NODES), false)
                } else {
                    (src, source_lladdr.unwrap_or(info.src_mac), true)
                };
                let reply = icmpv6::Repr::NeighborAdvert {
                    flags: icmpv6::NaFlags {
                        router: false,
                        solicited,
                        override_: true,
                    },
                    target,
                    target_lladdr: Some(mac),
                };
                let from = Source {
                    mac,
                    vlans: vlans.as_slice(),
                };
                let r = frames::icmpv6(&*self.relay, from, to_mac, target, to, &reply);
                self.sent(r, &self.counters.na_replies);
                true
            }
            icmpv6::Repr::NeighborAdvert {
                target,
                target_lladdr,
                ..
            } => self.learn(
                (ids, IpAddr::V6(target)),
                target_lladdr.unwrap_or(info.src_mac),
                false,
            ),
            icmpv6::Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } if self.config.answer_echo && !src.is_multicast() && !src.is_unspecified() => {
                let Some(mac) = self.table.get(&(ids, IpAddr::V6(dst))) else {
                    return false;
                };
                let reply = icmpv6::Repr::EchoReply {
                    ident,
                    seq_no,
                    data,
                };
                let from = Source {
                    mac,
                    vlans: vlans.as_slice(),
                };
                let r = frames::icmpv6(&*self.relay, from, info.src_mac, dst, src, &reply);
                self.sent(r, &self.counters.echo_replies);
                true
            }
            _ => false,
        }
    }

    fn on_icmpv4(&self, rx: &RxFrame) -> bool {
        if !self.config.answer_echo {
            return false;
        }
        let info = &rx.info;
        let Some(ip) = info.ip() else { return false };
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (ip.src, ip.dst) else {
            return false;
        };
        let bytes = &rx.frame()[ip.payload.range()];
        // An echo request (type 8, code 0) whose checksum verifies, from a unicast address.
        if ip.fragment
            || bytes.len() < 8
            || bytes[0] != 8
            || bytes[1] != 0
            || checksum::checksum(bytes) != 0
            || !is_unicast_v4(src)
        {
            return false;
        }
        let vlans = info.vlans();
        let Some(mac) = self
            .table
            .get(&(VlanIds::from_stack(&vlans), IpAddr::V4(dst)))
        else {
            return false;
        };
        let from = Source {
            mac,
            vlans: vlans.as_slice(),
        };
        let r = frames::icmpv4_echo_reply(&*self.relay, from, info.src_mac, dst, src, bytes);
        self.sent(r, &self.counters.echo_replies);
        true
    }
}

fn is_unicast_v4(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
}
