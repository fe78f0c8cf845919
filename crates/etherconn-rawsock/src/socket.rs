//! [`PacketSocket`]: one AF_PACKET socket bound to one interface, with its receive ring, its
//! filter, and a [`StopHandle`] that wakes the thread polling it.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::ring::{RingConfig, RxMeta, RxRing};
use crate::sys::{self, EventFd, PollFd, SockFilter, Socket};

/// How a fanout group spreads frames over its sockets (`PACKET_FANOUT_*`).
///
/// IP defragmentation before hashing (`PACKET_FANOUT_FLAG_DEFRAG`) is never requested: the
/// relays want every frame as it was on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FanoutMode {
    /// By flow hash: all frames of one flow go to the same socket (`PACKET_FANOUT_HASH`).
    Hash,
    /// Round robin (`PACKET_FANOUT_LB`).
    LoadBalance,
    /// By the CPU the frame arrived on (`PACKET_FANOUT_CPU`).
    Cpu,
    /// By the frame's receive queue (`PACKET_FANOUT_QM`).
    QueueMapping,
}

impl FanoutMode {
    fn raw(self) -> u16 {
        match self {
            FanoutMode::Hash => sys::PACKET_FANOUT_HASH,
            FanoutMode::LoadBalance => sys::PACKET_FANOUT_LB,
            FanoutMode::Cpu => sys::PACKET_FANOUT_CPU,
            FanoutMode::QueueMapping => sys::PACKET_FANOUT_QM,
        }
    }
}

/// Membership of a `PACKET_FANOUT` group: sockets of one process bound to the same interface
/// with the same group id and mode share its received frames instead of each getting a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fanout {
    /// Group id (per network namespace).
    pub group: u16,
    /// How frames are spread.
    pub mode: FanoutMode,
}

/// Options for [`PacketSocket::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketConfig {
    /// The receive ring; `None` makes a send-only socket that receives nothing.
    pub ring: Option<RingConfig>,
    /// Put the interface in promiscuous mode while the socket is open (so frames to the
    /// emulated endpoints' MAC addresses are received). Default on; ignored without a ring.
    pub promiscuous: bool,
    /// Do not receive frames sent from this host, our own included
    /// (`PACKET_IGNORE_OUTGOING`). Default on.
    pub ignore_outgoing: bool,
    /// Send straight to the driver, skipping the qdisc layer (`PACKET_QDISC_BYPASS`): faster,
    /// but traffic shaping and local captures (tcpdump on this host) do not see sent frames.
    /// Default on.
    pub qdisc_bypass: bool,
    /// Join a fanout group (needs a ring). Default none.
    pub fanout: Option<Fanout>,
    /// Classic BPF receive filter, attached before the first frame can arrive. Default none.
    pub filter: Option<Vec<SockFilter>>,
    /// `SO_RCVBUF` (forced if allowed). Unused by the ring; default `None` (kernel default).
    pub recv_buffer: Option<usize>,
    /// `SO_SNDBUF` (forced if allowed): how many bytes of sent frames may be in flight.
    /// Default 4 MiB.
    pub send_buffer: Option<usize>,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            ring: Some(RingConfig::default()),
            promiscuous: true,
            ignore_outgoing: true,
            qdisc_bypass: true,
            fanout: None,
            filter: None,
            recv_buffer: None,
            send_buffer: Some(4 << 20),
        }
    }
}

impl SocketConfig {
    /// A send-only socket: no ring, no promiscuous mode, otherwise the defaults.
    pub fn send_only() -> Self {
        SocketConfig {
            ring: None,
            promiscuous: false,
            ..SocketConfig::default()
        }
    }
}

/// Counters of the kernel's receive path for one socket, summed since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PacketStats {
    /// Frames that passed the filter (`tp_packets`), dropped ones included.
    pub packets: u64,
    /// Frames dropped because the ring was full (`tp_drops`).
    pub drops: u64,
    /// Times the ring was found full (`tp_freeze_q_cnt`).
    pub freeze_q_cnt: u64,
}

impl PacketStats {
    /// Frames that reached the ring: `packets - drops`.
    pub fn delivered(&self) -> u64 {
        self.packets.saturating_sub(self.drops)
    }
}

#[derive(Debug)]
struct Wakeup {
    event: EventFd,
    stopped: AtomicBool,
}

/// Wakes, or stops for good, the thread blocked in [`PacketSocket::poll_batch`]. Cheap to
/// clone; usable from any thread.
#[derive(Clone, Debug)]
pub struct StopHandle {
    shared: Arc<Wakeup>,
}

impl StopHandle {
    /// Stops the socket: a `poll_batch` in progress returns [`Error::Stopped`] promptly, and so
    /// does every later one.
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        // The eventfd is never drained once stopped, so every later poll sees it readable.
        let _ = self.shared.event.notify();
    }

    /// Makes a `poll_batch` in progress (or the next one) return early, with whatever frames
    /// are ready (possibly none), without stopping the socket: for a relay thread that has
    /// other work, such as frames to send.
    pub fn wake(&self) {
        let _ = self.shared.event.notify();
    }

    /// Whether [`StopHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }
}

/// An AF_PACKET `SOCK_RAW` socket bound to one interface: receives whole Ethernet frames
/// through a `TPACKET_V3` ring and sends frames with any source MAC and VLAN stack.
#[derive(Debug)]
pub struct PacketSocket {
    sock: Socket,
    ring: Option<RxRing>,
    wakeup: Arc<Wakeup>,
    name: String,
    ifindex: u32,
    totals: [AtomicU64; 3],
}

fn interface_error(name: &str, op: &'static str, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENODEV | libc::ENXIO) => Error::NoSuchInterface {
            name: name.to_owned(),
        },
        Some(libc::ENETDOWN) => Error::InterfaceDown {
            name: name.to_owned(),
        },
        _ => Error::io(op, e),
    }
}

fn set_buffer(sock: &Socket, bytes: usize, send: bool) -> Result<()> {
    let set = |force| {
        if send {
            sock.set_send_buffer(bytes, force)
        } else {
            sock.set_recv_buffer(bytes, force)
        }
    };
    let op = if send { "SO_SNDBUF" } else { "SO_RCVBUF" };
    // The FORCE variant ignores net.core.[rw]mem_max but needs CAP_NET_ADMIN.
    match set(true) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => set(false).map_err(|e| Error::io(op, e)),
        other => other.map_err(|e| Error::io(op, e)),
    }
}

impl PacketSocket {
    /// Opens a packet socket on interface `ifname` of the calling thread's network namespace.
    ///
    /// Fails with [`Error::NoSuchInterface`], [`Error::InterfaceDown`] (not administratively
    /// up), [`Error::PermissionDenied`] (needs `CAP_NET_RAW`), [`Error::RingSetup`],
    /// [`Error::FilterRejected`] or [`Error::InvalidConfig`].
    pub fn open(ifname: &str, cfg: &SocketConfig) -> Result<PacketSocket> {
        if let Some(ring) = &cfg.ring {
            ring.validate()?;
        } else if cfg.fanout.is_some() {
            return Err(Error::InvalidConfig("fanout needs a receive ring"));
        }
        let ifindex = sys::if_nametoindex(ifname)
            .map_err(|e| interface_error(ifname, "if_nametoindex", e))?;

        // Protocol 0: the kernel registers no receive hook for the socket until it is bound
        // with a protocol below. A socket created with ETH_P_ALL starts queueing frames from
        // every interface at once, before its filter and interface are set, and would have to
        // attach a reject-all filter, bind, drain the queue and then attach the real filter.
        // Created with 0, the filter and ring are in place before the first frame arrives.
        let sock = Socket::packet_raw(0).map_err(|e| Error::io("socket(AF_PACKET)", e))?;
        // Asked of the socket, not of /sys: /sys shows the namespace it was mounted in, which
        // need not be this thread's.
        let flags = sock
            .interface_flags(ifname)
            .map_err(|e| interface_error(ifname, "SIOCGIFFLAGS", e))?;
        if !flags.is_up() {
            return Err(Error::InterfaceDown {
                name: ifname.to_owned(),
            });
        }

        sock.set_auxdata(true)
            .map_err(|e| Error::io("PACKET_AUXDATA", e))?;
        if cfg.ignore_outgoing {
            sock.set_ignore_outgoing(true)
                .map_err(|e| Error::io("PACKET_IGNORE_OUTGOING", e))?;
        }
        if cfg.qdisc_bypass {
            sock.set_qdisc_bypass(true)
                .map_err(|e| Error::io("PACKET_QDISC_BYPASS", e))?;
        }
        if let Some(bytes) = cfg.recv_buffer {
            set_buffer(&sock, bytes, false)?;
        }
        if let Some(bytes) = cfg.send_buffer {
            set_buffer(&sock, bytes, true)?;
        }
        if let Some(program) = &cfg.filter {
            attach(&sock, program)?;
        }
        let ring = match &cfg.ring {
            Some(ring_cfg) => Some(RxRing::new(&sock, ring_cfg)?),
            None => None,
        };
        if ring.is_some() && cfg.promiscuous {
            sock.add_promiscuous_membership(ifindex)
                .map_err(|e| interface_error(ifname, "PACKET_ADD_MEMBERSHIP", e))?;
        }

        // Binding with protocol 0 (send-only) selects the interface without receiving.
        let protocol = if ring.is_some() { sys::ETH_P_ALL } else { 0 };
        sock.bind_link(ifindex, protocol)
            .map_err(|e| interface_error(ifname, "bind", e))?;
        // bind() on an interface that went down since the check succeeds but leaves ENETDOWN
        // pending.
        if let Some(e) = sock.take_error().map_err(|e| Error::io("SO_ERROR", e))? {
            return Err(interface_error(ifname, "bind", e));
        }
        if let Some(fanout) = cfg.fanout {
            // The kernel accepts fanout only on a bound socket.
            sock.join_fanout(fanout.group, fanout.mode.raw())
                .map_err(|e| Error::io("PACKET_FANOUT", e))?;
        }

        let wakeup = Arc::new(Wakeup {
            event: EventFd::new().map_err(|e| Error::io("eventfd", e))?,
            stopped: AtomicBool::new(false),
        });
        Ok(PacketSocket {
            sock,
            ring,
            wakeup,
            name: ifname.to_owned(),
            ifindex,
            totals: Default::default(),
        })
    }

    /// The interface's name.
    pub fn interface_name(&self) -> &str {
        &self.name
    }

    /// The interface's index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The receive ring's configuration, if the socket has one.
    pub fn ring_config(&self) -> Option<&RingConfig> {
        self.ring.as_ref().map(RxRing::config)
    }

    /// The underlying socket, for calls this type does not make.
    pub fn socket(&self) -> &Socket {
        &self.sock
    }

    /// A handle that wakes or stops [`PacketSocket::poll_batch`] from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            shared: Arc::clone(&self.wakeup),
        }
    }

    /// Waits up to `timeout` for received frames, then calls `f` once per frame of every ready
    /// ring block (bytes from the destination MAC on, and their [`RxMeta`]) and returns how
    /// many there were.
    ///
    /// Returns `Ok(0)` on timeout, after a [`StopHandle::wake`] or a signal;
    /// [`Error::Stopped`] once the socket is stopped; [`Error::InterfaceDown`] once each time
    /// the interface goes down (the socket receives again when it comes back up). A zero
    /// `timeout` does not wait. Allocates nothing.
    pub fn poll_batch<F>(&mut self, timeout: Duration, mut f: F) -> Result<usize>
    where
        F: FnMut(&[u8], RxMeta),
    {
        let ring = self
            .ring
            .as_mut()
            .ok_or(Error::InvalidConfig("this socket has no receive ring"))?;
        if self.wakeup.stopped.load(Ordering::Acquire) {
            return Err(Error::Stopped);
        }
        let frames = ring.drain(&mut f);
        if frames > 0 || timeout.is_zero() {
            return Ok(frames);
        }

        let mut fds = [
            PollFd::new(self.sock.as_fd(), sys::POLLIN | sys::POLLERR),
            PollFd::new(self.wakeup.event.as_fd(), sys::POLLIN),
        ];
        match sys::poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(Error::io("poll", e)),
        }
        if self.wakeup.stopped.load(Ordering::Acquire) {
            return Err(Error::Stopped);
        }
        if fds[1].revents() != 0 {
            self.wakeup
                .event
                .drain()
                .map_err(|e| Error::io("eventfd read", e))?;
        }
        let socket_error = fds[0].revents() & sys::POLLERR != 0;
        let frames = ring.drain(&mut f);
        if frames == 0 && socket_error {
            if let Some(e) = self
                .sock
                .take_error()
                .map_err(|e| Error::io("SO_ERROR", e))?
            {
                return Err(interface_error(&self.name, "poll", e));
            }
        }
        Ok(frames)
    }

    /// Replaces the receive filter. The kernel swaps filters atomically; frames the old filter
    /// accepted that are already in the ring are still delivered.
    pub fn set_filter(&self, program: &[SockFilter]) -> Result<()> {
        attach(&self.sock, program)
    }

    /// Removes the receive filter, if any.
    pub fn clear_filter(&self) -> Result<()> {
        match self.sock.detach_filter() {
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                Err(Error::io("SO_DETACH_FILTER", e))
            }
            _ => Ok(()),
        }
    }

    /// Sends one frame (a batch of one; see [`TxBatcher`](crate::TxBatcher) for batches).
    /// `WouldBlock` / `ENOBUFS` come back as [`Error::Io`]: the caller decides whether to retry.
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        self.sock
            .send(frame)
            .map(drop)
            .map_err(|e| self.send_error("send", e))
    }

    pub(crate) fn send_error(&self, op: &'static str, e: io::Error) -> Error {
        interface_error(&self.name, op, e)
    }

    /// The kernel's receive counters, summed since the socket was opened.
    pub fn stats(&self) -> Result<PacketStats> {
        // PACKET_STATISTICS resets the kernel's counters on every read, so keep the sums here.
        let (packets, drops, freezes) = self
            .sock
            .packet_stats_v3()
            .map_err(|e| Error::io("PACKET_STATISTICS", e))?;
        let [p, d, q] = &self.totals;
        Ok(PacketStats {
            packets: p.fetch_add(u64::from(packets), Ordering::Relaxed) + u64::from(packets),
            drops: d.fetch_add(u64::from(drops), Ordering::Relaxed) + u64::from(drops),
            freeze_q_cnt: q.fetch_add(u64::from(freezes), Ordering::Relaxed) + u64::from(freezes),
        })
    }
}

fn attach(sock: &Socket, program: &[SockFilter]) -> Result<()> {
    sock.attach_filter(program)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::EPERM) => Error::PermissionDenied {
                op: "SO_ATTACH_FILTER",
            },
            _ => Error::FilterRejected {
                instructions: program.len(),
                source,
            },
        })
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
