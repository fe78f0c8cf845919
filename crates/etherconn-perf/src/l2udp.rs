//! UDP over etherconn's L2 endpoints: one [`EtherConn`] per endpoint (its own MAC and VLAN
//! stack) on a relay, UDP over IPv4 or IPv6 built with `build_udp_frame` and taken apart by the
//! relay's one-pass classification. Optionally answers ARP and IPv6 neighbour discovery (and
//! pings) for the endpoints' addresses through etherconn-udp's [`Neighbours`] responder, so a
//! kernel peer can reach them without static neighbour entries, and resolves peers with it.
//!
//! A datagram whose IPv4 reserved flag is set is not handed over (counted as
//! `rx_reserved_flag`): RFC 791 makes senders clear it, so it marks a forged or broken frame,
//! which a measurement should count, not answer. The library's conns take such datagrams, as
//! Linux does.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::build::{build_udp_frame, UdpFrame};
use etherconn_core::wire::{ipv4, EtherType, MacAddr, VlanTag};
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig, RingConfig};
use etherconn_relay::{CaptureConfig, EtherConn, EtherConnConfig};
use etherconn_relay::{PacketRelay, RxFrame};

use etherconn_udp::{NeighbourAddr, NeighbourConfig, Neighbours};

use crate::addr::addr_offset;
use crate::endpoint::{EndpointSet, Peer, ReadyConns, RxDatagram, TxSpec, BATCH, FRAME_ROOM};
use crate::error::{Context, Failure, Result};
use crate::sys;

/// Time between two requests when resolving a peer, and the longest wait of one attempt.
const RESOLVE_RETRY: Duration = Duration::from_millis(300);

/// How a burst reaches the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TxPath {
    /// Frames built into the set's own buffers, handed to `PacketRelay::send_batch` together.
    Batch,
    /// One `EtherConn::send_built` per datagram (the relay's pooled buffer, `PacketRelay::send`).
    Conn,
}

/// How to lay out a set of endpoints.
#[derive(Clone, Debug)]
pub struct L2UdpConfig {
    /// MAC of endpoint 0; endpoint `i` has `base_mac + i`.
    pub base_mac: MacAddr,
    /// Address of endpoint 0 (IPv4 or IPv6); endpoint `i` has `base_ip + i`.
    pub base_ip: IpAddr,
    /// Number of endpoints.
    pub endpoints: usize,
    /// UDP port of every endpoint.
    pub port: u16,
    /// VLAN stack of every endpoint, outermost first.
    pub vlans: Vec<VlanTag>,
    /// Answer ARP requests or IPv6 neighbour solicitations (and pings) for the endpoints'
    /// addresses, and resolve peers, with a [`Neighbours`] responder.
    pub neighbours: bool,
    /// Receive queue depth of each endpoint's conn.
    pub queue_depth: usize,
    /// How bursts are sent.
    pub tx_path: TxPath,
    /// A pcapng file the relay writes every frame it sends and receives to.
    pub pcap: Option<PathBuf>,
    /// The AF_PACKET relay's receive ring; `None` for the relay's default.
    pub ring: Option<RingConfig>,
    /// The AF_PACKET relay's receive threads (a PACKET_FANOUT group when more than one).
    pub relay_threads: usize,
    /// CPUs the AF_PACKET relay's receive threads may run on; empty: the opening thread's.
    pub relay_cpus: Vec<usize>,
}

impl L2UdpConfig {
    /// A queue depth that gives a fleet about 64k frames of queueing in all (the relay's
    /// buffers), 64 to 16384 each. A lone endpoint gets 16384 frames: 32 MiB of 2 KiB buffers,
    /// the receive buffer `bench` gives the kernel's UDP socket. Its reader shares a CPU with
    /// the relay thread (and other work), and a queue of 4096 (3 ms at 1.4 M frames/s) was
    /// shorter than the times that reader waited for the CPU while the relay kept pushing.
    pub fn default_queue_depth(endpoints: usize) -> usize {
        (65_536 / endpoints.max(1)).clamp(64, 16_384)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    rx_udp: u64,
    rx_not_ours: u64,
    rx_reserved_flag: u64,
    rx_other: u64,
    tx: u64,
}

/// A fleet of etherconn L2 endpoints on one relay, speaking UDP.
pub struct L2UdpEndpoints {
    relay: Arc<dyn PacketRelay>,
    /// The backend's name in results (`rawsock`, `pcap`).
    backend: &'static str,
    conns: Vec<EtherConn>,
    base_ip: IpAddr,
    port: u16,
    /// The responder and resolver, and the endpoints' addresses in it.
    nd: Option<(Neighbours, Vec<NeighbourAddr>)>,
    tx_path: TxPath,
    /// Which conns have frames.
    ready: ReadyConns,
    frames: Box<[u8]>,
    scratch: Box<[u8]>,
    c: Counters,
}

impl std::fmt::Debug for L2UdpEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2UdpEndpoints")
            .field("relay", &self.relay)
            .field("endpoints", &self.conns.len())
            .finish()
    }
}

impl L2UdpEndpoints {
    /// Opens an AF_PACKET relay on `ifname` (in the calling thread's network namespace) and
    /// registers the endpoints on it.
    pub fn open_rawsock(ifname: &str, cfg: &L2UdpConfig) -> Result<L2UdpEndpoints> {
        Self::on_relay(open_rawsock_relay(ifname, cfg)?, cfg)
    }

    /// Opens a libpcap relay on `ifname` (in the calling thread's network namespace),
    /// capturing to `cfg.pcap` when given, and registers the endpoints on it.
    #[cfg(feature = "pcap")]
    pub fn open_pcap(ifname: &str, cfg: &L2UdpConfig) -> Result<L2UdpEndpoints> {
        use etherconn_pcap::{PcapRelay, PcapRelayConfig};
        let relay_cfg = PcapRelayConfig::default().ethertypes(&[EtherType::ARP, EtherType::IPV4]);
        let relay = match cfg.pcap.as_deref() {
            None => PcapRelay::new(ifname, relay_cfg),
            Some(path) => {
                let capture = CaptureConfig::file(path).interface_name(ifname);
                PcapRelay::with_capture(ifname, relay_cfg, capture)
            }
        };
        let relay = relay.map_err(|e| Failure::new(format!("cannot open a libpcap relay: {e}")))?;
        let mut set = Self::on_relay(relay, cfg)?;
        set.backend = "pcap";
        Ok(set)
    }

    /// The backend's name in results, for a set made with [`on_relay`](Self::on_relay).
    #[cfg(feature = "xdp")]
    pub fn set_backend_name(&mut self, name: &'static str) {
        self.backend = name;
    }

    /// Registers the endpoints on `relay` (results name the backend `rawsock`).
    pub fn on_relay(relay: Arc<dyn PacketRelay>, cfg: &L2UdpConfig) -> Result<L2UdpEndpoints> {
        if cfg.endpoints == 0 {
            return Err(Failure::new("at least one endpoint is needed"));
        }
        let mut conns = Vec::with_capacity(cfg.endpoints);
        let ready = ReadyConns::new(cfg.endpoints);
        let mut nd = if cfg.neighbours {
            // Short waits and retries, so that Ctrl-C is seen while resolving.
            let nd_cfg = NeighbourConfig::default()
                .retry_interval(RESOLVE_RETRY)
                .max_requests(10)
                .resolve_wait(RESOLVE_RETRY)
                .queue_depth(cfg.endpoints.clamp(1024, 65_536));
            let nd = Neighbours::new(Arc::clone(&relay), nd_cfg)
                .context(|| "cannot start the neighbour responder")?;
            Some((nd, Vec::with_capacity(cfg.endpoints)))
        } else {
            None
        };
        let ethertypes: &[EtherType] = if cfg.base_ip.is_ipv4() {
            &[EtherType::IPV4, EtherType::ARP]
        } else {
            &[EtherType::IPV6]
        };
        for i in 0..cfg.endpoints {
            // A large fleet takes seconds to register; Ctrl-C must not wait for the end of it.
            if crate::sys::stop_requested() {
                return Err(Failure::interrupted(format_args!(
                    "registering endpoint {i} of {}",
                    cfg.endpoints
                )));
            }
            let conn_cfg = EtherConnConfig::default()
                .ethertypes(ethertypes)
                .queue_depth(cfg.queue_depth);
            let mac = cfg.base_mac.offset(i as u64);
            let conn = EtherConn::new(Arc::clone(&relay), mac, &cfg.vlans, conn_cfg)
                .context(|| format!("cannot register endpoint {mac}"))?;
            if let Some((nd, held)) = &mut nd {
                // The responder takes the conn's ARP and ICMP frames and answers for its
                // address; broadcast requests reach it through the VLAN stack's group.
                let ip = addr_offset(cfg.base_ip, i);
                nd.serve(&conn)
                    .and_then(|()| nd.add(mac, &cfg.vlans, ip))
                    .map(|a| held.push(a))
                    .context(|| format!("cannot answer for {ip} at {mac}"))?;
            }
            ready.add(&conn, i);
            conns.push(conn);
        }
        Ok(L2UdpEndpoints {
            relay,
            backend: "rawsock",
            conns,
            base_ip: cfg.base_ip,
            port: cfg.port,
            nd,
            tx_path: cfg.tx_path,
            ready,
            frames: vec![0; BATCH * FRAME_ROOM].into_boxed_slice(),
            scratch: vec![0; FRAME_ROOM].into_boxed_slice(),
            c: Counters::default(),
        })
    }

    /// MAC of endpoint `i`.
    pub fn mac(&self, i: usize) -> MacAddr {
        self.conns[i].local_mac()
    }

    /// Finds the MAC of `target` with an ARP request or a neighbour solicitation from endpoint
    /// `from` (on its VLAN stack), retried every 300 ms until `timeout` or Ctrl-C; `None`
    /// when nothing answered (or the set has no responder).
    pub fn resolve(&self, from: usize, target: IpAddr, timeout: Duration) -> Option<MacAddr> {
        let (nd, _) = self.nd.as_ref()?;
        let conn = &self.conns[from];
        let src = addr_offset(self.base_ip, from);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !crate::sys::stop_requested() {
            if let Some(mac) = nd.resolve(conn.local_mac(), conn.vlans(), src, target) {
                return Some(mac);
            }
        }
        None
    }

    /// Hands a frame that arrived at endpoint `i` to `on` if it is a datagram for it; returns
    /// whether it was.
    fn handle(&mut self, i: usize, rx: &RxFrame, on: &mut dyn FnMut(&RxDatagram<'_>)) -> bool {
        let info = &rx.info;
        match info.udp() {
            Some(udp) => {
                let local = SocketAddr::new(addr_offset(self.base_ip, i), self.port);
                if udp.local != local {
                    self.c.rx_not_ours += 1;
                    return false;
                }
                // A UDP layer in an IPv4 frame means a classified IPv4 header: the view's
                // reads are in bounds.
                if udp.local.is_ipv4() && ipv4::Packet::new_unchecked(rx.payload()).reserved_flag()
                {
                    self.c.rx_reserved_flag += 1;
                    return false;
                }
                on(&RxDatagram {
                    endpoint: i,
                    from: Peer {
                        mac: info.src_mac,
                        addr: udp.remote,
                    },
                    vlans: info.vlans().as_slice(),
                    to: udp.local,
                    payload: &rx.frame()[udp.payload.range()],
                });
                self.c.rx_udp += 1;
                true
            }
            None => {
                self.c.rx_other += 1;
                false
            }
        }
    }
}

/// Opens an AF_PACKET relay for ARP, IPv4 and IPv6 on `ifname` (in the calling thread's
/// network namespace), with `cfg.relay_threads` receive threads, `cfg.ring` as their receive
/// ring when given, capturing to `cfg.pcap` when given. The receive threads inherit the calling
/// thread's CPU pinning, or may run on `cfg.relay_cpus` when that is not empty.
pub fn open_rawsock_relay(ifname: &str, cfg: &L2UdpConfig) -> Result<Arc<dyn PacketRelay>> {
    let mut relay_cfg = RawSocketRelayConfig::default()
        .ethertypes(&[EtherType::ARP, EtherType::IPV4, EtherType::IPV6])
        .threads(cfg.relay_threads.max(1));
    if let Some(ring) = &cfg.ring {
        relay_cfg.socket.ring = Some(ring.clone());
    }
    // The relay's threads inherit the affinity of the thread that spawns them: widen it for
    // the spawn, then put it back.
    let own_cpus = if cfg.relay_cpus.is_empty() {
        None
    } else {
        let own = sys::allowed_cpus().context(|| "cannot read this thread's CPUs")?;
        sys::pin_current_thread_to(&cfg.relay_cpus)
            .context(|| format!("cannot let this thread run on CPUs {:?}", cfg.relay_cpus))?;
        Some(own)
    };
    let relay = match cfg.pcap.as_deref() {
        None => RawSocketRelay::new(ifname, relay_cfg),
        Some(path) => {
            let capture = CaptureConfig::file(path).interface_name(ifname);
            RawSocketRelay::with_capture(ifname, relay_cfg, capture)
        }
    };
    if let Some(own) = own_cpus {
        sys::pin_current_thread_to(&own)
            .context(|| format!("cannot pin this thread back to CPUs {own:?}"))?;
    }
    let relay = relay.map_err(|e| Failure::new(format!("cannot open an AF_PACKET relay: {e}")))?;
    Ok(relay)
}

/// A relay's counters under the names the results use (`relay_...`).
pub fn relay_counters(relay: &dyn PacketRelay) -> Vec<(&'static str, u64)> {
    let s = relay.stats();
    vec![
        ("relay_tx", s.tx),
        ("relay_tx_errors", s.tx_errors),
        ("relay_rx_offered", s.rx_offered),
        ("relay_rx_delivered", s.rx_delivered),
        ("relay_rx_invalid", s.rx_invalid),
        ("relay_rx_group_source", s.rx_group_source),
        ("relay_rx_martian", s.rx_martian),
        ("relay_rx_queue_full", s.rx_queue_full),
        ("relay_rx_no_buffer", s.rx_no_buffer),
        ("relay_rx_miss", s.rx_miss),
        ("relay_rx_multicast_delivered", s.rx_multicast_delivered),
        ("relay_rx_multicast_ignored", s.rx_multicast_ignored),
        ("relay_captured", s.captured),
        ("relay_capture_dropped", s.capture_dropped),
    ]
}

/// The frame endpoint `conn` (number `spec.from`, address `base_ip + spec.from`) sends.
fn udp_frame<'a>(
    spec: &TxSpec,
    conn: &'a EtherConn,
    base_ip: IpAddr,
    port: u16,
    payload: &'a [u8],
) -> UdpFrame<'a> {
    UdpFrame {
        src_mac: conn.local_mac(),
        dst_mac: spec.to.mac,
        vlans: conn.vlans(),
        src: SocketAddr::new(addr_offset(base_ip, spec.from), port),
        dst: spec.to.addr,
        ttl: 64,
        dscp: 0,
        payload,
    }
}

impl EndpointSet for L2UdpEndpoints {
    fn backend(&self) -> &'static str {
        self.backend
    }

    fn endpoint_count(&self) -> usize {
        self.conns.len()
    }

    fn local_addr(&self, endpoint: usize) -> SocketAddr {
        SocketAddr::new(addr_offset(self.base_ip, endpoint), self.port)
    }

    fn send_burst(
        &mut self,
        specs: &[TxSpec],
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize> {
        let n = specs.len().min(BATCH);
        let mut lens = [0usize; BATCH];
        let (base_ip, port) = (self.base_ip, self.port);
        let sent = match self.tx_path {
            TxPath::Batch => {
                // Each payload is written to the scratch buffer and built into frame k.
                for (k, spec) in specs[..n].iter().enumerate() {
                    let plen = fill(k, &mut self.scratch);
                    let conn = &self.conns[spec.from];
                    let frame = udp_frame(spec, conn, base_ip, port, &self.scratch[..plen]);
                    let buf = &mut self.frames[k * FRAME_ROOM..(k + 1) * FRAME_ROOM];
                    lens[k] = build_udp_frame(buf, &frame)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                }
                let frames = &self.frames;
                let refs: [&[u8]; BATCH] =
                    std::array::from_fn(|k| &frames[k * FRAME_ROOM..k * FRAME_ROOM + lens[k]]);
                self.relay.send_batch(&refs[..n], None)?
            }
            TxPath::Conn => {
                // Payloads first (the contract: every fill before any send), staged in the
                // frame buffers; then one EtherConn::send_built each.
                for (k, len) in lens[..n].iter_mut().enumerate() {
                    *len = fill(k, &mut self.frames[k * FRAME_ROOM..(k + 1) * FRAME_ROOM]);
                }
                let mut sent = 0;
                for (k, spec) in specs[..n].iter().enumerate() {
                    let payload = &self.frames[k * FRAME_ROOM..k * FRAME_ROOM + lens[k]];
                    let conn = &self.conns[spec.from];
                    let frame = udp_frame(spec, conn, base_ip, port, payload);
                    match conn.send_built(|buf| build_udp_frame(buf, &frame)) {
                        Ok(_) => sent += 1,
                        Err(e) if k == 0 => return Err(e),
                        Err(_) => break,
                    }
                }
                sent
            }
        };
        self.c.tx += sent as u64;
        Ok(sent)
    }

    /// Serves the conns the `ReadySet` reports, draining each, until `max` datagrams; waits
    /// up to `wait` only when nothing at all was ready. Conns left unserved when `max` is
    /// reached are served first by the next call.
    fn recv_burst(
        &mut self,
        max: usize,
        wait: Duration,
        on: &mut dyn FnMut(&RxDatagram<'_>),
    ) -> io::Result<usize> {
        let mut got = 0;
        while got < max {
            let Some(i) = self.ready.next(got, wait)? else {
                break;
            };
            match self.conns[i].recv_frame_timeout(Some(Duration::ZERO)) {
                Ok(rx) => {
                    if self.handle(i, &rx, on) {
                        got += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.ready.drained(),
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    fn counters(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = [
            ("tx_datagrams", self.c.tx),
            ("rx_datagrams", self.c.rx_udp),
            ("rx_not_ours", self.c.rx_not_ours),
            ("rx_reserved_flag", self.c.rx_reserved_flag),
            ("rx_other", self.c.rx_other),
        ]
        .into_iter()
        .chain(self.nd.iter().flat_map(|(nd, _)| {
            let s = nd.stats();
            [
                ("arp_replies", s.arp_replies),
                ("na_replies", s.na_replies),
                ("echo_replies", s.echo_replies),
                ("nd_requests", s.requests),
                ("nd_failed", s.failed),
                ("nd_ignored", s.ignored),
            ]
        }))
        .chain(relay_counters(&*self.relay))
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        v.retain(|(k, v)| *v != 0 || k.starts_with("tx") || k.starts_with("rx_d"));
        v
    }
}

impl Drop for L2UdpEndpoints {
    fn drop(&mut self) {
        // Deregister first (cheap with the relay alive), then join the relay's threads; the
        // relay is also stopped when its last handle goes, this just makes it deterministic.
        self.nd = None;
        self.conns.clear();
        self.relay.stop();
    }
}
