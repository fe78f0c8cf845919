//! Fleets of endpoints on one relay: how they are laid out (MACs, addresses), registering them
//! with what it costs in time and heap, and reaching each endpoint by its index.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etherconn_core::wire::{MacAddr, VlanTag};
use etherconn_relay::{
    DispatcherConfig, EtherConn, EtherConnConfig, Inbox, LoopbackRelay, PacketRelay, ReadySet,
    Watchable,
};
use etherconn_udp::{SharedConfig, SharedEtherConn, SharingConfig, SharingRUdpConn};

use super::procfs::rss_bytes;
use crate::sys::live_heap_bytes;

/// The VLAN every endpoint and every test frame uses.
pub const VLAN: u16 = 100;

/// The VLAN stack of every endpoint and every test frame.
pub fn vlans() -> [VlanTag; 1] {
    [VlanTag::dot1q(VLAN).expect("VLAN id in range")]
}

/// The MAC of the `s`-th L2 endpoint of a fleet.
pub fn fleet_mac(s: usize) -> MacAddr {
    MacAddr([
        0x02,
        0x5c,
        (s >> 24) as u8,
        (s >> 16) as u8,
        (s >> 8) as u8,
        s as u8,
    ])
}

/// How a fleet of endpoints is laid out on one relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `macs` `SharedEtherConn`s with distinct MACs, `ports` `SharingRUdpConn`s on each (one IP
    /// per MAC, ports 10000 and up).
    Shared {
        /// L2 endpoints.
        macs: usize,
        /// UDP endpoints per L2 endpoint.
        ports: usize,
    },
    /// One `SharedEtherConn`, one `SharingRUdpConn` per IP (10.0.0.0 + i, port 68).
    OneMacIps(usize),
    /// One `SharedEtherConn`, `SharingRUdpConn`s on ports 1 to 65535 of 10.255.0.1, then of
    /// 10.255.0.2.
    OneMacPorts(usize),
    /// `EtherConn`s with distinct MACs, default EtherTypes (ARP, IPv4, IPv6: three keys each).
    EtherConns(usize),
}

impl Layout {
    /// Number of receiving endpoints.
    pub fn endpoints(self) -> usize {
        match self {
            Layout::Shared { macs, ports } => macs * ports,
            Layout::OneMacIps(n) | Layout::OneMacPorts(n) | Layout::EtherConns(n) => n,
        }
    }

    /// Number of L2 endpoints (`SharedEtherConn`s or `EtherConn`s).
    pub fn l2_endpoints(self) -> usize {
        match self {
            Layout::Shared { macs, .. } => macs,
            Layout::OneMacIps(_) | Layout::OneMacPorts(_) => 1,
            Layout::EtherConns(n) => n,
        }
    }

    /// A short description.
    pub fn describe(self) -> String {
        match self {
            Layout::Shared { macs, ports } => {
                format!("{macs} SharedEtherConn x {ports} SharingRUdpConn")
            }
            Layout::OneMacIps(n) => format!("1 SharedEtherConn x {n} SharingRUdpConn (IPs)"),
            Layout::OneMacPorts(n) => format!("1 SharedEtherConn x {n} SharingRUdpConn (ports)"),
            Layout::EtherConns(n) => format!("{n} EtherConn"),
        }
    }

    /// The MAC endpoint `i` receives on.
    pub fn mac(self, i: usize) -> MacAddr {
        match self {
            Layout::Shared { ports, .. } => fleet_mac(i / ports),
            Layout::OneMacIps(_) | Layout::OneMacPorts(_) => fleet_mac(0),
            Layout::EtherConns(_) => fleet_mac(i),
        }
    }

    /// The UDP address endpoint `i` receives on (any address on its MAC for `EtherConns`).
    pub fn addr(self, i: usize) -> SocketAddr {
        let (ip, port) = match self {
            Layout::Shared { ports, .. } => (
                0x0a40_0000 + (i / ports) as u32,
                10_000 + (i % ports) as u16,
            ),
            Layout::OneMacIps(_) => (0x0a00_0000 + i as u32, 68),
            Layout::OneMacPorts(_) => (0x0aff_0001 + (i / 65_535) as u32, 1 + (i % 65_535) as u16),
            Layout::EtherConns(_) => (0x0a80_0000 + i as u32, 68),
        };
        SocketAddr::from((Ipv4Addr::from(ip), port))
    }
}

/// The receiving endpoints of a fleet.
pub enum Endpoints {
    /// UDP endpoints on shared L2 endpoints.
    Sharing(Vec<SharingRUdpConn>),
    /// L2 endpoints.
    Ether(Vec<EtherConn>),
}

/// A fleet of endpoints registered on one relay.
pub struct Fleet {
    /// How it is laid out.
    pub layout: Layout,
    /// The relay.
    pub relay: Arc<dyn PacketRelay>,
    /// The endpoints, index-aligned with [`Layout::mac`] and [`Layout::addr`].
    pub endpoints: Endpoints,
    shared: Vec<Arc<SharedEtherConn>>,
}

impl Fleet {
    /// A `ReadySet` watching every endpoint; token `i` is endpoint `i`.
    pub fn ready_set(&self) -> ReadySet {
        let set = ReadySet::new();
        for i in 0..self.len() {
            let t = match &self.endpoints {
                Endpoints::Sharing(v) => set.add(&v[i]),
                Endpoints::Ether(v) => set.add(&v[i]),
            };
            assert_eq!(t, i, "tokens are handed out in order");
        }
        set
    }

    /// Number of receiving endpoints.
    pub fn len(&self) -> usize {
        match &self.endpoints {
            Endpoints::Sharing(v) => v.len(),
            Endpoints::Ether(v) => v.len(),
        }
    }

    /// Makes every endpoint non-blocking.
    pub fn set_nonblocking(&self) {
        match &self.endpoints {
            Endpoints::Sharing(v) => v.iter().for_each(|c| c.set_nonblocking(true).unwrap()),
            Endpoints::Ether(v) => v.iter().for_each(|c| c.set_nonblocking(true).unwrap()),
        }
    }

    /// Endpoint `i`, as a `ReadySet` sees it.
    pub fn watchable(&self, i: usize) -> &dyn Watchable {
        match &self.endpoints {
            Endpoints::Sharing(v) => &v[i],
            Endpoints::Ether(v) => &v[i],
        }
    }

    /// An inbox of `capacity` frames every endpoint is attached to; token `i` is endpoint `i`.
    pub fn inbox(&self, capacity: usize) -> Inbox {
        let inbox = Inbox::with_capacity(capacity);
        for i in 0..self.len() {
            inbox.attach(self.watchable(i), i).expect("attach");
        }
        inbox
    }

    /// Whether endpoint `i` has something queued.
    #[inline]
    pub fn ready(&self, i: usize) -> bool {
        match &self.endpoints {
            Endpoints::Sharing(v) => v[i].queued() > 0,
            Endpoints::Ether(v) => v[i].queued() > 0,
        }
    }

    /// Receives one datagram (UDP payload) or frame (Ethernet payload) of endpoint `i` into
    /// `buf`; `None` when nothing is queued. Call [`set_nonblocking`](Self::set_nonblocking)
    /// first.
    #[inline]
    pub fn take(&self, i: usize, buf: &mut [u8]) -> Option<usize> {
        if !self.ready(i) {
            return None;
        }
        match &self.endpoints {
            Endpoints::Sharing(v) => v[i].recv_from(buf).ok().map(|(n, _)| n),
            Endpoints::Ether(v) => v[i].recv_from(buf).ok().map(|(n, _)| n),
        }
    }

    /// UDP endpoints bound on the shared L2 endpoints.
    pub fn l4_keys(&self) -> usize {
        self.shared.iter().map(|s| s.bound()).sum()
    }
}

/// What registering a fleet cost.
pub struct Registered {
    /// The fleet.
    pub fleet: Fleet,
    /// Wall time to create every endpoint.
    pub elapsed: Duration,
    /// Heap bytes allocated during registration and still live (endpoints, queues, table
    /// entries, the vectors holding them); 0 unless [`count_heap`](crate::sys::count_heap) was
    /// called first.
    pub live_bytes: usize,
    /// Resident-set growth during registration.
    pub rss_bytes: Option<usize>,
}

impl Registered {
    /// Heap bytes per receiving endpoint.
    pub fn bytes_per_endpoint(&self) -> f64 {
        self.live_bytes as f64 / self.fleet.len() as f64
    }
}

/// The fleet of 100,000 UDP endpoints most scenarios measure.
pub const SHARED_1000X100: Layout = Layout::Shared {
    macs: 1000,
    ports: 100,
};

/// The one-endpoint fleet compared with `layout` (same endpoint type).
pub fn single_of(layout: Layout) -> Layout {
    match layout {
        Layout::EtherConns(_) => Layout::EtherConns(1),
        _ => Layout::Shared { macs: 1, ports: 1 },
    }
}

/// A relay with no interface, for in-process figures.
pub fn loopback() -> Arc<dyn PacketRelay> {
    LoopbackRelay::new(DispatcherConfig::default())
}

/// Registers `layout` on `relay`; `depth` is each endpoint's queue depth (`None`: the default of
/// its type, 4 for a `SharingRUdpConn`, 64 for an `EtherConn`).
pub fn register(relay: Arc<dyn PacketRelay>, layout: Layout, depth: Option<usize>) -> Registered {
    let vl = vlans();
    let rss0 = rss_bytes();
    let live0 = live_heap_bytes();
    let t0 = Instant::now();
    let mut shared: Vec<Arc<SharedEtherConn>> = Vec::with_capacity(layout.l2_endpoints());
    let endpoints = if let Layout::EtherConns(n) = layout {
        let mut cfg = EtherConnConfig::default();
        if let Some(d) = depth {
            cfg = cfg.queue_depth(d);
        }
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            v.push(EtherConn::new(relay.clone(), layout.mac(i), &vl, cfg.clone()).unwrap());
        }
        Endpoints::Ether(v)
    } else {
        let mut cfg = SharingConfig::default();
        if let Some(d) = depth {
            cfg = cfg.queue_depth(d);
        }
        let n = layout.endpoints();
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            let mac = layout.mac(i);
            let new_mac = match shared.last() {
                Some(s) => s.local_mac() != mac,
                None => true,
            };
            if new_mac {
                let s = SharedEtherConn::new(relay.clone(), mac, &vl, SharedConfig::default());
                shared.push(s.unwrap());
            }
            let s = shared.last().expect("pushed above");
            v.push(s.bind(layout.addr(i), cfg).unwrap());
        }
        Endpoints::Sharing(v)
    };
    let elapsed = t0.elapsed();
    let live_bytes = usize::try_from(live_heap_bytes() - live0).unwrap_or(0);
    let rss_bytes = rss0.zip(rss_bytes()).map(|(a, b)| b.saturating_sub(a));
    Registered {
        fleet: Fleet {
            layout,
            relay,
            endpoints,
            shared,
        },
        elapsed,
        live_bytes,
        rss_bytes,
    }
}

/// Drops a fleet (deregistering every endpoint); returns how long it took.
pub fn unregister(fleet: Fleet) -> Duration {
    let t0 = Instant::now();
    drop(fleet);
    t0.elapsed()
}
