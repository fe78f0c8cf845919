//! UDP through `etherconn-udp`'s [`RUdpConn`]: one conn per endpoint (its own MAC, VLAN stack,
//! address and port) on a relay, sending with `RUdpConn::send_batch` and receiving with
//! `RUdpConn::recv_batch`, [`BATCH`] datagrams per call at most, as the kernel baseline does
//! with `sendmmsg`/`recvmmsg`. Unlike [`L2UdpEndpoints`](crate::l2udp::L2UdpEndpoints), the
//! UDP/IP headers are built and checked by the library, not by this tool.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::wire::MacAddr;
use etherconn_relay::PacketRelay;
use etherconn_udp::{RUdpConfig, RUdpConn, RecvMeta};

use crate::addr::{addr_offset, ip_index};
use crate::endpoint::{EndpointSet, Peer, ReadyConns, RxDatagram, TxSpec, BATCH, FRAME_ROOM};
use crate::error::{Context, Failure, Result};
use crate::l2udp::{open_rawsock_relay, relay_counters, L2UdpConfig};

/// The endpoints of the other side: `count` of them, endpoint `i` at `base_ip + i` behind
/// `base_mac + i`. The conns' next-hop resolver answers from this.
#[derive(Clone, Copy, Debug)]
pub struct PeerRange {
    /// MAC of peer endpoint 0.
    pub base_mac: MacAddr,
    /// Address of peer endpoint 0.
    pub base_ip: Ipv4Addr,
    /// Number of peer endpoints.
    pub count: usize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    tx: u64,
    tx_calls: u64,
    rx: u64,
    rx_calls: u64,
}

/// A fleet of [`RUdpConn`]s on one relay.
pub struct RUdpEndpoints {
    relay: Arc<dyn PacketRelay>,
    /// The backend's name in results (`rudp`, `xdp-rudp`).
    backend: &'static str,
    conns: Vec<RUdpConn>,
    /// Which conns have datagrams.
    ready: ReadyConns,
    /// Payloads of a send burst, then received payloads: [`BATCH`] x [`FRAME_ROOM`].
    bufs: Box<[u8]>,
    meta: [RecvMeta; BATCH],
    c: Counters,
}

impl std::fmt::Debug for RUdpEndpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RUdpEndpoints")
            .field("relay", &self.relay)
            .field("endpoints", &self.conns.len())
            .finish()
    }
}

impl RUdpEndpoints {
    /// Opens an AF_PACKET relay on `ifname` (in the calling thread's network namespace) and
    /// creates the conns on it: MACs, addresses, port, VLAN stack, queue depth and nap from
    /// `cfg` (`answer_arp` and `tx_path` do not apply), next hops from `peers`.
    pub fn open_rawsock(ifname: &str, cfg: &L2UdpConfig, peers: PeerRange) -> Result<Self> {
        Self::on_relay(open_rawsock_relay(ifname, cfg)?, cfg, peers)
    }

    /// The backend's name in results, for a set made with [`on_relay`](Self::on_relay).
    #[cfg(feature = "xdp")]
    pub fn set_backend_name(&mut self, name: &'static str) {
        self.backend = name;
    }

    /// Creates the conns on `relay`.
    pub fn on_relay(
        relay: Arc<dyn PacketRelay>,
        cfg: &L2UdpConfig,
        peers: PeerRange,
    ) -> Result<Self> {
        if cfg.endpoints == 0 {
            return Err(Failure::new("at least one endpoint is needed"));
        }
        let udp_cfg =
            RUdpConfig::default()
                .queue_depth(cfg.queue_depth)
                .resolver(move |ip| match ip {
                    IpAddr::V4(v4) => ip_index(peers.base_ip, peers.count, v4)
                        .map(|i| peers.base_mac.offset(i as u64)),
                    IpAddr::V6(_) => None,
                });
        let mut conns = Vec::with_capacity(cfg.endpoints);
        let ready = ReadyConns::new(cfg.endpoints);
        for i in 0..cfg.endpoints {
            // As in L2UdpEndpoints::on_relay: Ctrl-C stops a long registration.
            if crate::sys::stop_requested() {
                return Err(Failure::interrupted(format_args!(
                    "creating RUdpConn {i} of {}",
                    cfg.endpoints
                )));
            }
            let mac = cfg.base_mac.offset(i as u64);
            let local = SocketAddr::new(addr_offset(cfg.base_ip, i), cfg.port);
            let conn = RUdpConn::new(Arc::clone(&relay), mac, &cfg.vlans, local, udp_cfg.clone())
                .context(|| format!("cannot create the RUdpConn of {mac} {local}"))?;
            // Read without waiting: the ReadySet does the waiting.
            conn.set_nonblocking(true)
                .context(|| "cannot make an RUdpConn non-blocking")?;
            ready.add(&conn, i);
            conns.push(conn);
        }
        Ok(RUdpEndpoints {
            backend: "rudp",
            relay,
            conns,
            ready,
            bufs: vec![0; BATCH * FRAME_ROOM].into_boxed_slice(),
            meta: [RecvMeta::default(); BATCH],
            c: Counters::default(),
        })
    }

    /// One non-blocking `recv_batch` of up to `want` datagrams on conn `i`; each datagram goes
    /// to `on`. `Ok(0)` when nothing was queued.
    fn pull(
        &mut self,
        i: usize,
        want: usize,
        on: &mut dyn FnMut(&RxDatagram<'_>),
    ) -> io::Result<usize> {
        let conn = &self.conns[i];
        let want = want.clamp(1, BATCH);
        let mut chunks = self.bufs.chunks_mut(FRAME_ROOM);
        let mut bufs: [&mut [u8]; BATCH] =
            std::array::from_fn(|_| chunks.next().unwrap_or_default());
        let result = conn.recv_batch(&mut bufs[..want], &mut self.meta[..want]);
        self.c.rx_calls += 1;
        let n = match result {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(0)
            }
            Err(e) => return Err(e),
        };
        // The relay delivers a frame to a conn only on an exact MAC + VLAN stack match, so the
        // datagram carried the conn's tags (RecvMeta does not repeat them).
        let vlans = conn.vlans();
        for (buf, meta) in bufs.iter().zip(&self.meta[..n]) {
            on(&RxDatagram {
                endpoint: i,
                from: Peer {
                    mac: meta.src_mac,
                    addr: meta.remote,
                },
                vlans,
                to: meta.local,
                payload: &buf[..meta.len],
            });
        }
        self.c.rx += n as u64;
        Ok(n)
    }
}

impl EndpointSet for RUdpEndpoints {
    fn backend(&self) -> &'static str {
        self.backend
    }

    fn endpoint_count(&self) -> usize {
        self.conns.len()
    }

    fn local_addr(&self, endpoint: usize) -> SocketAddr {
        self.conns[endpoint]
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
    }

    /// Runs of consecutive specs from the same endpoint go to that conn's `send_batch`
    /// together: one relay `send_batch` of up to [`BATCH`] frames when the burst is all from
    /// one endpoint, one call per datagram when every spec is from another endpoint
    /// (`RUdpConn` has no batch across conns). `spec.to.mac` is not used: the conn's resolver
    /// finds the same MAC from the address.
    fn send_burst(
        &mut self,
        specs: &[TxSpec],
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize> {
        let n = specs.len().min(BATCH);
        let mut lens = [0usize; BATCH];
        for (k, (len, buf)) in lens[..n]
            .iter_mut()
            .zip(self.bufs.chunks_mut(FRAME_ROOM))
            .enumerate()
        {
            *len = fill(k, buf);
        }
        let bufs = &self.bufs;
        let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let datagrams: [(&[u8], SocketAddr); BATCH] = std::array::from_fn(|k| {
            (
                &bufs[k * FRAME_ROOM..k * FRAME_ROOM + lens[k]],
                specs.get(k).map_or(unspecified, |s| s.to.addr),
            )
        });
        let mut sent = 0;
        let mut k = 0;
        while k < n {
            let from = specs[k].from;
            let run = specs[k..n].iter().take_while(|s| s.from == from).count();
            self.c.tx_calls += 1;
            match self.conns[from].send_batch(&datagrams[k..k + run]) {
                Ok(m) => {
                    sent += m;
                    if m < run {
                        break;
                    }
                }
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
            k += run;
        }
        self.c.tx += sent as u64;
        Ok(sent)
    }

    /// Serves the conns the `ReadySet` reports, draining each with non-blocking
    /// `recv_batch` calls ([`BATCH`] datagrams at most per call), until `max` datagrams; waits
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
            let want = (max - got).min(BATCH);
            let n = self.pull(i, want, on)?;
            got += n;
            if n < want {
                self.ready.drained();
            }
        }
        Ok(got)
    }

    fn counters(&self) -> Vec<(String, u64)> {
        let rx_filtered: u64 = self.conns.iter().map(RUdpConn::rx_filtered).sum();
        let mut v: Vec<(String, u64)> = [
            ("tx_datagrams", self.c.tx),
            ("tx_send_batch_calls", self.c.tx_calls),
            ("rx_datagrams", self.c.rx),
            ("rx_recv_batch_calls", self.c.rx_calls),
            ("rx_filtered", rx_filtered),
        ]
        .into_iter()
        .chain(relay_counters(&*self.relay))
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        v.retain(|(k, v)| *v != 0 || k.starts_with("tx") || k.starts_with("rx_d"));
        v
    }
}

impl Drop for RUdpEndpoints {
    fn drop(&mut self) {
        // As for L2UdpEndpoints: deregister, then join the relay's threads.
        self.conns.clear();
        self.relay.stop();
    }
}
