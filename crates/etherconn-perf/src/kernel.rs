//! The baseline: one kernel UDP socket, `sendmmsg` and `recvmmsg` in batches of [`BATCH`], as
//! the hand-written C movers that docs/performance.md compares with do.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use etherconn_core::wire::MacAddr;

use crate::endpoint::{EndpointSet, Peer, RxDatagram, TxSpec, BATCH, FRAME_ROOM};
use crate::sys;

/// A kernel UDP socket as a set of one endpoint.
#[derive(Debug)]
pub struct KernelUdp {
    sock: UdpSocket,
    local: SocketAddrV4,
    bufs: Box<[u8]>,
    lens: [usize; BATCH],
    froms: [SocketAddrV4; BATCH],
    read_timeout: Option<Duration>,
    sent: u64,
    received: u64,
}

impl KernelUdp {
    /// Binds a socket to `local` with the baseline's buffer sizes (32 MiB receive, 4 MiB send,
    /// forced when root).
    pub fn bind(local: SocketAddrV4) -> io::Result<KernelUdp> {
        let sock = UdpSocket::bind(local)?;
        sys::force_socket_buffer(&sock, false, 32 << 20)?;
        sys::force_socket_buffer(&sock, true, 4 << 20)?;
        let local = match sock.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to an IPv4 address"),
        };
        Ok(KernelUdp {
            sock,
            local,
            bufs: vec![0; BATCH * FRAME_ROOM].into_boxed_slice(),
            lens: [0; BATCH],
            froms: [SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0); BATCH],
            read_timeout: None,
            sent: 0,
            received: 0,
        })
    }
}

impl EndpointSet for KernelUdp {
    fn backend(&self) -> &'static str {
        "kernel"
    }

    fn endpoint_count(&self) -> usize {
        1
    }

    fn local_addr(&self, _endpoint: usize) -> SocketAddr {
        SocketAddr::V4(self.local)
    }

    fn send_burst(
        &mut self,
        specs: &[TxSpec],
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize> {
        let n = specs.len().min(BATCH);
        let mut dsts = [SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0); BATCH];
        for (k, spec) in specs[..n].iter().enumerate() {
            let buf = &mut self.bufs[k * FRAME_ROOM..(k + 1) * FRAME_ROOM];
            self.lens[k] = fill(k, buf);
            dsts[k] = match spec.to.addr {
                SocketAddr::V4(a) => a,
                SocketAddr::V6(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "the kernel baseline sends IPv4 only",
                    ))
                }
            };
        }
        let bufs = &self.bufs;
        let lens = &self.lens;
        let payloads: [&[u8]; BATCH] =
            std::array::from_fn(|k| &bufs[k * FRAME_ROOM..k * FRAME_ROOM + lens[k]]);
        let sent = sys::send_mmsg_v4(&self.sock, &payloads[..n], &dsts[..n])?;
        self.sent += sent as u64;
        Ok(sent)
    }

    fn recv_burst(
        &mut self,
        max: usize,
        wait: Duration,
        on: &mut dyn FnMut(&RxDatagram<'_>),
    ) -> io::Result<usize> {
        let max = max.clamp(1, BATCH);
        let dontwait = wait.is_zero();
        if !dontwait && self.read_timeout != Some(wait) {
            self.sock.set_read_timeout(Some(wait))?;
            self.read_timeout = Some(wait);
        }
        let n = match sys::recv_mmsg_v4(
            &self.sock,
            &mut self.bufs,
            FRAME_ROOM,
            &mut self.lens[..max],
            &mut self.froms[..max],
            dontwait,
        ) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(0)
            }
            Err(e) => return Err(e),
        };
        for k in 0..n {
            let start = k * FRAME_ROOM;
            on(&RxDatagram {
                endpoint: 0,
                from: Peer {
                    mac: MacAddr::UNSPECIFIED,
                    addr: SocketAddr::V4(self.froms[k]),
                },
                vlans: &[],
                to: SocketAddr::V4(self.local),
                payload: &self.bufs[start..start + self.lens[k].min(FRAME_ROOM)],
            });
        }
        self.received += n as u64;
        Ok(n)
    }

    fn counters(&self) -> Vec<(String, u64)> {
        vec![
            ("sent".to_owned(), self.sent),
            ("received".to_owned(), self.received),
        ]
    }
}
