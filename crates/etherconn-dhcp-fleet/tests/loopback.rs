//! The fleet against a small in-process DHCP server on a loopback relay (no root, no
//! interface): VLAN and QinQ stacks, lost DISCOVERs, NAKs, unicast replies, a silent server.
//!
//! The server is written here with `dhcproto`; it hands out addresses by MAC, drops the
//! first DISCOVER of every client whose MAC's fifth octet is a multiple of 4, NAKs the first REQUEST of every client whose MAC ends in a
//! multiple of 5, and answers on the VLAN stack the request came on.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{EtherType, MacAddr, VlanTag};
use etherconn_dhcp_fleet::{FailReason, Fleet, FleetConfig, FleetReport, VlanPlan};
use etherconn_relay::{EtherConn, EtherConnConfig};
use etherconn_relay::{LoopbackRelay, PacketRelay};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SERVER_MAC: MacAddr = MacAddr([0x0a, 0, 0, 0, 0, 1]);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Drop the first DISCOVER of MACs whose fifth octet is a multiple of 4, NAK the first
    /// REQUEST of MACs ending in a multiple of 5.
    Lossy,
    /// Never answer.
    Silent,
}

#[derive(Default)]
struct ServerState {
    next_host: u32,
    by_mac: HashMap<MacAddr, Ipv4Addr>,
    naked: HashSet<MacAddr>,
    dropped: HashSet<MacAddr>,
    /// The VLAN ids each client's requests came on.
    vlans_seen: HashMap<MacAddr, HashSet<Vec<u16>>>,
}

struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    state: Arc<Mutex<ServerState>>,
}

impl Server {
    /// One server conn (and thread) per VLAN stack the fleet uses.
    fn start(relay: &Arc<dyn PacketRelay>, stacks: &[Vec<VlanTag>], how: Behaviour) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(ServerState::default()));
        let threads = stacks
            .iter()
            .map(|stack| {
                let conn = EtherConn::new(
                    relay.clone(),
                    SERVER_MAC,
                    stack,
                    EtherConnConfig::default()
                        .ethertypes(&[EtherType::IPV4])
                        .recv_multicast(true)
                        .queue_depth(4096),
                )
                .unwrap();
                let (stop, state) = (stop.clone(), state.clone());
                std::thread::spawn(move || serve(&conn, &stop, &state, how))
            })
            .collect();
        Server {
            stop,
            threads,
            state,
        }
    }

    fn stop(self) -> ServerState {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        Arc::try_unwrap(self.state)
            .ok()
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

fn serve(conn: &EtherConn, stop: &AtomicBool, state: &Mutex<ServerState>, how: Behaviour) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(rx) = conn.recv_frame_timeout(Some(Duration::from_millis(20))) else {
            continue;
        };
        let Some(udp) = rx.info.udp() else { continue };
        if udp.local.port() != 67 {
            continue;
        }
        let Ok(req) = Message::decode(&mut Decoder::new(&rx.frame()[udp.payload.range()])) else {
            continue;
        };
        if req.opcode() != Opcode::BootRequest {
            continue;
        }
        let mac = MacAddr::from_bytes(&req.chaddr()[..6]).unwrap();
        let vlans: Vec<u16> = rx
            .info
            .vlans()
            .as_slice()
            .iter()
            .map(|t| t.id.get())
            .collect();
        let mut st = state.lock().unwrap();
        st.vlans_seen.entry(mac).or_default().insert(vlans);
        let (kind, ip) = match req.opts().msg_type() {
            Some(MessageType::Discover) => {
                if how == Behaviour::Silent
                    || (mac.0[4].is_multiple_of(4) && st.dropped.insert(mac))
                {
                    continue;
                }
                let next = st.next_host;
                let ip = *st.by_mac.entry(mac).or_insert_with(|| {
                    Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 0, 2, 10)) + next)
                });
                st.next_host += 1;
                (MessageType::Offer, ip)
            }
            Some(MessageType::Request) => {
                let asked = match req.opts().get(OptionCode::RequestedIpAddress) {
                    Some(DhcpOption::RequestedIpAddress(ip)) => *ip,
                    _ => Ipv4Addr::UNSPECIFIED,
                };
                if mac.0[5].is_multiple_of(5) && st.naked.insert(mac) {
                    (MessageType::Nak, Ipv4Addr::UNSPECIFIED)
                } else if st.by_mac.get(&mac) == Some(&asked) {
                    (MessageType::Ack, asked)
                } else {
                    (MessageType::Nak, Ipv4Addr::UNSPECIFIED)
                }
            }
            _ => continue,
        };
        drop(st);
        let mut reply = Message::new_with_id(
            req.xid(),
            Ipv4Addr::UNSPECIFIED,
            ip,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &req.chaddr()[..6],
        );
        reply.set_opcode(Opcode::BootReply).set_flags(req.flags());
        reply.opts_mut().insert(DhcpOption::MessageType(kind));
        reply
            .opts_mut()
            .insert(DhcpOption::ServerIdentifier(SERVER_IP));
        if kind != MessageType::Nak {
            reply.opts_mut().insert(DhcpOption::AddressLeaseTime(600));
        }
        let mut payload = Vec::new();
        reply.encode(&mut Encoder::new(&mut payload)).unwrap();
        // RFC 2131 4.1: broadcast when the client asks for it (or for a NAK), else unicast
        // to the offered address at the client's MAC.
        let (dst_mac, dst_ip) = if req.flags().broadcast() || kind == MessageType::Nak {
            (MacAddr::BROADCAST, Ipv4Addr::BROADCAST)
        } else {
            (mac, ip)
        };
        let vlans = rx.info.vlans();
        let frame = UdpFrame {
            src_mac: SERVER_MAC,
            dst_mac,
            vlans: vlans.as_slice(),
            src: SocketAddr::from((SERVER_IP, 67)),
            dst: SocketAddr::from((dst_ip, 68)),
            ttl: 64,
            dscp: 0,
            payload: &payload,
        };
        conn.send_built(|buf| build_udp_frame(buf, &frame)).unwrap();
    }
}

fn run(
    plan: VlanPlan,
    clients: usize,
    config: FleetConfig,
    how: Behaviour,
) -> (FleetReport, ServerState) {
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
    let mut stacks: Vec<Vec<VlanTag>> = (0..clients)
        .map(|i| plan.stack(i).as_slice().to_vec())
        .collect();
    stacks.sort_by_key(|s| s.iter().map(|t| t.id.get()).collect::<Vec<_>>());
    stacks.dedup();
    let server = Server::start(&relay, &stacks, how);
    let report = Fleet::new(relay.clone(), config.clients(clients).vlans(plan))
        .unwrap()
        .run()
        .unwrap();
    let state = server.stop();
    relay.stop();
    (report, state)
}

fn fast() -> FleetConfig {
    FleetConfig::default()
        .rto(Duration::from_millis(30), Duration::from_millis(120))
        .client_timeout(Duration::from_secs(10))
}

fn check_all_leased(report: &FleetReport, plan: &VlanPlan, state: &ServerState) {
    assert!(report.all_leased(), "{report}\n{:?}", report.failures);
    let ips: HashSet<Ipv4Addr> = report.leases.iter().map(|l| l.ip).collect();
    assert_eq!(ips.len(), report.clients);
    for l in &report.leases {
        let want: Vec<u16> = plan
            .stack(l.client)
            .as_slice()
            .iter()
            .map(|t| t.id.get())
            .collect();
        assert_eq!(l.vlans, want, "client {}", l.client);
        let seen = &state.vlans_seen[&l.mac];
        assert_eq!(seen.len(), 1, "{} sent on several stacks: {seen:?}", l.mac);
        assert!(seen.contains(&want));
        assert_eq!(state.by_mac[&l.mac], l.ip);
        assert_eq!(
            (l.server, l.server_mac, l.lease_secs),
            (SERVER_IP, SERVER_MAC, Some(600))
        );
    }
    let c = &report.counters;
    assert_eq!((c.stray, c.malformed, c.send_errors), (0, 0, 0), "{report}");
    assert_eq!(report.relay.rx_queue_full, 0, "{report}");
}

#[test]
fn qinq_clients_survive_loss_and_naks() {
    let plan = VlanPlan::qinq("7-8".parse().unwrap(), "100-102".parse().unwrap());
    let (report, state) = run(plan.clone(), 300, fast().window(50), Behaviour::Lossy);
    check_all_leased(&report, &plan, &state);
    let c = &report.counters;
    // Clients whose first DISCOVER was dropped retransmitted it.
    let dropped = report.leases.iter().filter(|l| l.mac.0[4] % 4 == 0).count() as u64;
    assert!(dropped > 0);
    // (More only when a loaded machine delays the server past a retransmission timer.)
    assert!(c.retransmits >= dropped, "{report}");
    assert_eq!(state.dropped.len() as u64, dropped);
    // Each MAC ending in a multiple of 5 was NAKed once and started over at DISCOVER.
    let naked = report.leases.iter().filter(|l| l.mac.0[5] % 5 == 0).count() as u64;
    assert!(naked > 0);
    assert_eq!(c.naks, naked, "{report}");
    assert_eq!(c.restarts, naked, "{report}");
    for l in &report.leases {
        assert_eq!(l.naks, u32::from(l.mac.0[5] % 5 == 0), "{l:?}");
    }
    // One ACK per client, except that a machine loaded enough to delay the server past a
    // REQUEST retransmission gets a second ACK for that client: counted as late, and possible
    // only for a retransmission beyond the designed drops.
    assert!(c.acks >= 300, "{report}");
    let duplicate_acks = c.acks - 300;
    assert!(duplicate_acks <= c.late, "{report}");
    assert!(duplicate_acks <= c.retransmits - dropped, "{report}");
    assert!(report.setups_per_sec > 0.0);
}

#[test]
fn three_tag_clients_lease_on_their_own_stacks() {
    // 2 × 2 × 3 = 12 stacks, 0x88a8 / 0x8100 / 0x8100; the server answers on each stack only.
    let plan: VlanPlan = "7-8.20-21.100-102".parse().unwrap();
    assert_eq!(plan.tags(), 3);
    let (report, state) = run(plan.clone(), 120, fast().window(24), Behaviour::Lossy);
    check_all_leased(&report, &plan, &state);
    let stacks: HashSet<Vec<u16>> = report.leases.iter().map(|l| l.vlans.clone()).collect();
    assert_eq!(stacks.len(), 12, "every combination of ids used");
}

#[test]
fn unicast_replies_on_dot1q() {
    let plan = VlanPlan::dot1q("200-215".parse().unwrap());
    let config = fast().window(16).broadcast_flag(false).mac_seed(99);
    let (report, state) = run(plan.clone(), 120, config, Behaviour::Lossy);
    check_all_leased(&report, &plan, &state);
    assert!(!report.broadcast_flag);
}

#[test]
fn silent_server_fails_every_client_after_its_retries() {
    let config = fast().window(4).retries(2, 0);
    let (report, state) = run(VlanPlan::untagged(), 10, config, Behaviour::Silent);
    assert_eq!(report.leased, 0);
    assert_eq!(report.failed, 10);
    assert!(report
        .failures
        .iter()
        .all(|f| f.reason == FailReason::NoOffer));
    // The first DISCOVER and two retransmissions each.
    assert_eq!(report.counters.discovers, 30, "{report}");
    assert_eq!(report.counters.retransmits, 20);
    assert_eq!(state.vlans_seen.len(), 10);
    assert_eq!(report.failures_by_reason, vec![(FailReason::NoOffer, 10)]);
}

#[test]
fn deadline_bounds_a_client() {
    let config = fast()
        .window(2)
        .retries(1000, 0)
        .client_timeout(Duration::from_millis(200));
    let (report, _) = run(VlanPlan::untagged(), 3, config, Behaviour::Silent);
    assert_eq!(report.failed, 3);
    assert!(report
        .failures
        .iter()
        .all(|f| f.reason == FailReason::Deadline));
    assert!(report.run_secs < 2.0, "{report}");
}

#[test]
fn a_second_default_conn_is_refused() {
    let relay: Arc<dyn PacketRelay> = LoopbackRelay::new(Default::default());
    let _first = Fleet::new(relay.clone(), FleetConfig::default()).unwrap();
    let second = FleetConfig::default();
    assert!(Fleet::new(relay.clone(), second).is_err());
    assert!(Fleet::new(relay, FleetConfig::default().window(0)).is_err());
}
