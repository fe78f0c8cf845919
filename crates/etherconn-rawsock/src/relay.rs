//! [`RawSocketRelay`]: the AF_PACKET backend of etherconn's relay layer.
//!
//! One or more engine threads each own a [`PacketSocket`] with a TPACKET_V3 ring (joined in a
//! `PACKET_FANOUT` group when there are several) and hand every frame to the shared
//! [`Dispatcher`]; senders on any thread write through one send-only socket, which needs no lock
//! (`send(2)` on a packet socket is thread-safe).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use etherconn_core::bpf::{ethertype_filter, FilterOptions, Program};
use etherconn_core::wire::EtherType;
use etherconn_relay::{sending, timeouts};
use etherconn_relay::{
    CaptureConfig, Direction, Dispatcher, DispatcherConfig, PacketRelay, RelayCounters,
};

use crate::error::{Error, Result};
use crate::ring::RxMeta;
use crate::socket::{Fanout, FanoutMode, PacketSocket, SocketConfig, StopHandle};
use crate::sys::{self, PollFd, SockFilter};

/// Settings of a [`RawSocketRelay`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RawSocketRelayConfig {
    /// EtherTypes the kernel filter passes (untagged, behind one tag or two). Default ARP, IPv4,
    /// IPv6. Ignored when `filter` is set. An `EtherConn` for an EtherType not listed here is
    /// refused (`RelayError::EtherTypeFiltered`): the relay would never see its frames.
    pub ethertypes: Vec<EtherType>,
    /// A classic BPF program that replaces the one built from `ethertypes`. The relay cannot
    /// tell what such a program passes, so it refuses no EtherType.
    pub filter: Option<Program>,
    /// The dispatch table's settings (buffers, mirroring, checksum verification).
    pub dispatcher: DispatcherConfig,
    /// Receive engine threads; more than one joins them in a `PACKET_FANOUT` hash group.
    pub threads: usize,
    /// Socket settings of the receive sockets (ring size and block timeout, promiscuous mode,
    /// ignore-outgoing); `filter` and `fanout` in it are set by the relay.
    pub socket: SocketConfig,
    /// Send straight to the driver (`PACKET_QDISC_BYPASS`). Default on.
    pub qdisc_bypass: bool,
}

impl Default for RawSocketRelayConfig {
    fn default() -> Self {
        RawSocketRelayConfig {
            ethertypes: vec![EtherType::ARP, EtherType::IPV4, EtherType::IPV6],
            filter: None,
            dispatcher: DispatcherConfig::default(),
            threads: 1,
            socket: SocketConfig::default(),
            qdisc_bypass: true,
        }
    }
}

impl RawSocketRelayConfig {
    /// These settings with the EtherTypes the filter passes.
    pub fn ethertypes(mut self, ethertypes: &[EtherType]) -> Self {
        self.ethertypes = ethertypes.to_vec();
        self
    }

    /// These settings with a user filter program.
    pub fn filter(mut self, program: Program) -> Self {
        self.filter = Some(program);
        self
    }

    /// These settings with the dispatcher's settings.
    pub fn dispatcher(mut self, config: DispatcherConfig) -> Self {
        self.dispatcher = config;
        self
    }

    /// These settings with `n` receive threads.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }
}

fn to_sock_filter(program: &Program) -> Vec<SockFilter> {
    program
        .as_slice()
        .iter()
        .map(|i| SockFilter::from((i.code, i.jt, i.jf, i.k)))
        .collect()
}

/// The AF_PACKET relay: one interface, any number of [`EtherConn`](etherconn_relay::EtherConn)s.
///
/// ```no_run
/// use std::sync::Arc;
/// use etherconn_relay::PacketRelay;
/// use etherconn_core::wire::{EtherType, VlanTag};
/// use etherconn_relay::{EtherConn, EtherConnConfig};
/// use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
///
/// let relay: Arc<dyn PacketRelay> = RawSocketRelay::new("eth0", RawSocketRelayConfig::default())?;
/// let conn = EtherConn::new(
///     relay.clone(),
///     "02:00:00:00:00:01".parse()?,
///     &[VlanTag::dot1q(100).unwrap()],
///     EtherConnConfig::default(),
/// )?;
/// conn.send_to(b"any payload", EtherType(0x88b5), "ff:ff:ff:ff:ff:ff".parse()?)?;
/// let mut buf = [0u8; 1500];
/// let (n, peer) = conn.recv_from(&mut buf)?;
/// println!("{n} bytes from {peer}");
/// relay.stop();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RawSocketRelay {
    ifname: String,
    dispatcher: Arc<Dispatcher>,
    tx: PacketSocket,
    stops: Vec<StopHandle>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
    /// The interface's MTU when the relay was made.
    mtu: usize,
    /// What the kernel filter passes; `None` for a user's program.
    ethertypes: Option<Vec<EtherType>>,
}

impl RawSocketRelay {
    /// `NotConnected` (counted as a send error) once the relay has stopped.
    fn refuse_if_stopped(&self) -> io::Result<()> {
        sending::refuse_if_stopped(&self.stopped, &self.dispatcher)
    }

    /// Opens the interface and starts the receive threads.
    ///
    /// Errors: [`Error::NoSuchInterface`], [`Error::InterfaceDown`],
    /// [`Error::PermissionDenied`] (needs root or `CAP_NET_RAW`), [`Error::RingSetup`],
    /// [`Error::FilterRejected`], [`Error::InvalidConfig`].
    pub fn new(ifname: &str, config: RawSocketRelayConfig) -> Result<Arc<RawSocketRelay>> {
        Self::open(ifname, config, None)
    }

    /// [`new`](Self::new) with a capture of every frame from the first one on
    /// ([`Dispatcher::start_capture`] on a running relay may miss the frames of a receive
    /// batch already under way). Also [`Error::Capture`] when the capture cannot start.
    pub fn with_capture(
        ifname: &str,
        config: RawSocketRelayConfig,
        capture: CaptureConfig,
    ) -> Result<Arc<RawSocketRelay>> {
        Self::open(ifname, config, Some(capture))
    }

    fn open(
        ifname: &str,
        config: RawSocketRelayConfig,
        capture: Option<CaptureConfig>,
    ) -> Result<Arc<RawSocketRelay>> {
        if config.threads == 0 {
            return Err(Error::InvalidConfig(
                "a relay needs at least one receive thread",
            ));
        }
        let (program, ethertypes) = match config.filter {
            Some(p) => (p, None),
            None => (
                ethertype_filter(&config.ethertypes, FilterOptions::default()).map_err(|_| {
                    Error::InvalidConfig("cannot build a filter for these EtherTypes")
                })?,
                Some(config.ethertypes),
            ),
        };
        let mut sock_cfg = config.socket.clone();
        sock_cfg.filter = Some(to_sock_filter(&program));
        if config.threads > 1 {
            // Group ids are per network namespace; the low bits of the pid keep two processes
            // on one interface apart.
            let group = (std::process::id() & 0xffff) as u16;
            sock_cfg.fanout = Some(Fanout {
                group,
                mode: FanoutMode::Hash,
            });
        }
        let mut rx = Vec::with_capacity(config.threads);
        for _ in 0..config.threads {
            rx.push(PacketSocket::open(ifname, &sock_cfg)?);
        }
        let tx_cfg = SocketConfig {
            qdisc_bypass: config.qdisc_bypass,
            ..SocketConfig::send_only()
        };
        let tx = PacketSocket::open(ifname, &tx_cfg)?;
        let mtu = tx
            .socket()
            .interface_mtu(ifname)
            .map_err(|e| Error::io("SIOCGIFMTU", e))? as usize;
        let dispatcher = Dispatcher::new(config.dispatcher);
        if let Some(capture) = capture {
            dispatcher.start_capture(capture)?;
        }
        let ring = sock_cfg.ring.clone().unwrap_or_default();
        tracing::debug!(
            interface = ifname,
            instructions = program.len(),
            ethertypes = ?ethertypes,
            "AF_PACKET relay: receive filter attached"
        );
        tracing::info!(
            interface = ifname,
            mtu,
            threads = config.threads,
            ring_block_size = ring.block_size,
            ring_block_count = ring.block_count,
            ring_frame_size = ring.frame_size,
            ring_block_timeout_us = ring.block_timeout.as_micros() as u64,
            filter = if ethertypes.is_some() {
                "ethertypes"
            } else {
                "user program"
            },
            promiscuous = sock_cfg.promiscuous,
            capture = dispatcher.capture().is_some(),
            "AF_PACKET relay opened"
        );
        let stops = rx.iter().map(PacketSocket::stop_handle).collect();
        let mut threads = Vec::with_capacity(rx.len());
        for (i, sock) in rx.into_iter().enumerate() {
            let d = Arc::clone(&dispatcher);
            let name = format!("etherconn-rx{i}");
            let relay_name = ifname.to_owned();
            let h = std::thread::Builder::new()
                .name(name)
                .spawn(move || engine(sock, &d, &relay_name))
                .map_err(|e| Error::io("spawn receive thread", e))?;
            threads.push(h);
        }
        Ok(Arc::new(RawSocketRelay {
            ifname: ifname.to_owned(),
            dispatcher,
            tx,
            stops,
            threads: Mutex::new(threads),
            stopped: AtomicBool::new(false),
            mtu,
            ethertypes,
        }))
    }

    /// The interface name.
    pub fn interface_name(&self) -> &str {
        &self.ifname
    }

    fn send_once(&self, frame: &[u8], deadline: Option<Instant>) -> io::Result<()> {
        loop {
            match self.tx.socket().send(frame) {
                Ok(_) => return Ok(()),
                Err(e) if is_transient(&e) => {
                    // ENOBUFS does not make the socket unwritable, so wait at most 1 ms per try.
                    let wait = sending::retry_wait(deadline)?;
                    let mut fds = [PollFd::new(
                        std::os::fd::AsFd::as_fd(self.tx.socket()),
                        sys::POLLOUT,
                    )];
                    let _ = sys::poll(&mut fds, wait);
                }
                Err(e) => return Err(self.explain(e, frame.len())),
            }
            if self.stopped.load(Ordering::Relaxed) {
                return Err(sending::stopped_error());
            }
        }
    }
}

impl RawSocketRelay {
    /// The kernel's `EMSGSIZE` for a frame past the link's MTU (one built by hand, or after the
    /// MTU shrank under the relay), said in the link's terms; other errors unchanged. Only on
    /// the error path, so the formatting costs nothing per frame sent.
    fn explain(&self, e: io::Error, len: usize) -> io::Error {
        if e.raw_os_error() != Some(libc::EMSGSIZE) {
            return e;
        }
        sending::frame_too_large(len, self.mtu, &self.ifname, Some(&e))
    }
}

/// Frames one `sendmmsg(2)` takes.
const SEND_BATCH: usize = 32;

thread_local! {
    // The mmsghdr/iovec arrays of `sendmmsg`, made once per sending thread: no allocation per
    // batch, and no lock shared between senders.
    static SEND_SCRATCH: std::cell::RefCell<sys::SendScratch> =
        std::cell::RefCell::new(sys::SendScratch::new(SEND_BATCH));
}

fn is_transient(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// One receive thread: drain the ring into the dispatcher until stopped.
fn engine(mut sock: PacketSocket, dispatcher: &Dispatcher, ifname: &str) {
    let mut last_stats = Instant::now();
    let mut reported_drops = 0u64;
    // Frames are delivered in batches (`Dispatcher::delivery`): the ring hands over whole
    // blocks, and a batch overlaps the cache misses of many endpoints' lookups and queues.
    let mut batch = dispatcher.delivery();
    loop {
        // Looked up once per ring drain: without a capture, one untaken branch per frame.
        let capture = dispatcher.capture();
        let polled = sock.poll_batch(Duration::from_millis(100), |frame: &[u8], meta: RxMeta| {
            if let Some(cap) = capture {
                cap.record(Direction::Inbound, frame, meta.vlan, Some(meta.timestamp));
            }
            // A frame from a local sender (a veth peer) may carry only a partial UDP checksum
            // that the kernel will never complete; one the driver verified needs no second
            // check.
            let trusted =
                meta.status & (sys::TP_STATUS_CSUMNOTREADY | sys::TP_STATUS_CSUM_VALID) != 0;
            batch.push(frame, meta.vlan, trusted);
        });
        // Nothing waits in the batch while the thread polls for more.
        batch.flush();
        match polled {
            Ok(_) => {}
            Err(Error::Stopped) => break,
            // The interface went down or a transient error: keep serving once it is back.
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
        if dispatcher.is_stopped() {
            break;
        }
        // Frames the kernel dropped because the ring was full never reach `deliver`: fold them
        // into the relay's counters a few times a second.
        if last_stats.elapsed() >= Duration::from_millis(200) {
            last_stats = Instant::now();
            if let Ok(st) = sock.stats() {
                let new = st.drops.saturating_sub(reported_drops);
                reported_drops = st.drops;
                dispatcher
                    .counters()
                    .rx_backend_dropped
                    .fetch_add(new, Ordering::Relaxed);
            }
            // At most once a second, and only for a subscriber that listens.
            dispatcher.summarise_drops(ifname);
        }
    }
}

impl PacketRelay for RawSocketRelay {
    fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// The interface's MTU, read (`SIOCGIFMTU`) when the relay was made. A later change of the
    /// MTU is not seen: make a new relay after `ip link set IF mtu N`.
    fn mtu(&self) -> usize {
        self.mtu
    }

    /// Whether the kernel filter built from `RawSocketRelayConfig::ethertypes` passes
    /// `ethertype`; always `true` under a user's filter program.
    fn receives(&self, ethertype: EtherType) -> bool {
        match &self.ethertypes {
            Some(list) => list.contains(&ethertype),
            None => true,
        }
    }

    fn send(&self, frame: &[u8], timeout: Option<Duration>) -> io::Result<()> {
        self.refuse_if_stopped()?;
        let sent = self.send_once(frame, timeouts::deadline(timeout));
        sending::account_send(&self.dispatcher, frame, sent)
    }

    /// Sends up to 32 frames per `sendmmsg(2)`; on a full transmit path it waits as `send`
    /// does, then sends the rest.
    fn send_batch(&self, frames: &[&[u8]], timeout: Option<Duration>) -> io::Result<usize> {
        let c = self.dispatcher.counters();
        self.refuse_if_stopped()?;
        let deadline = timeouts::deadline(timeout);
        let capture = self.dispatcher.capture();
        let mut done = 0;
        while done < frames.len() {
            let chunk = &frames[done..frames.len().min(done + SEND_BATCH)];
            let sent = SEND_SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                self.tx
                    .socket()
                    .send_batch(&mut scratch, chunk.iter().copied())
            });
            match sent {
                Ok(n) if n > 0 => {
                    c.tx.fetch_add(n as u64, Ordering::Relaxed);
                    if let Some(cap) = capture {
                        sending::record_sent(cap, &chunk[..n]);
                    }
                    done += n;
                }
                // Nothing went (EAGAIN/ENOBUFS, or a zero count): fall back to one `send` with
                // the waiting logic; it fails only when the wait expires or the error is real.
                Ok(_) | Err(_) => match self.send_once(chunk[0], deadline) {
                    Ok(()) => {
                        RelayCounters::bump(&c.tx);
                        if let Some(cap) = capture {
                            sending::record_sent(cap, &chunk[..1]);
                        }
                        done += 1;
                    }
                    Err(e) => {
                        RelayCounters::bump(&c.tx_errors);
                        return if done == 0 { Err(e) } else { Ok(done) };
                    }
                },
            }
        }
        Ok(done)
    }

    fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        for s in &self.stops {
            s.stop();
        }
        self.dispatcher.stop();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            let _ = t.join();
        }
        // After the receive threads ended: every frame they took is in the file.
        let _ = self.dispatcher.close_capture();
        // The totals: drops since the last summary are in them.
        tracing::info!(
            interface = self.ifname.as_str(),
            stats = %self.dispatcher.stats(),
            "AF_PACKET relay stopped"
        );
    }
}

impl Drop for RawSocketRelay {
    fn drop(&mut self) {
        self.stop();
    }
}
