//! [`XdpRelay`]: the AF_XDP backend of etherconn's relay layer.
//!
//! Our XDP program (`etherconnkern/`) redirects the frames of registered endpoints to the
//! AF_XDP socket of the queue they arrive on and passes the rest to the kernel; one thread per
//! queue takes them from its socket's receive ring in batches and delivers them through the
//! shared [`Dispatcher`]. The dispatcher tells the program's maps of every registration
//! through one hook (a [`RegistrationObserver`](etherconn_relay::RegistrationObserver) that
//! writes the program's maps), so what the kernel redirects and what the table
//! delivers follow the same registrations. Senders on any thread copy their frames into the
//! send ring of one queue (picked per sending thread), under that queue's own lock.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use libbpf_rs::{Link, MapHandle};

use etherconn_core::wire::EtherType;
use etherconn_relay::{sending, timeouts};
use etherconn_relay::{CaptureConfig, Dispatcher, PacketRelay, RelayCounters};

use crate::config::{XdpMode, XdpRelayConfig};
use crate::error::{Error, Result};
use crate::maps::MapMirror;
use crate::program::{self, Loaded};
use crate::queue::{engine, Pace, QueueShared, QueueStats};
use crate::sys::{self, BindMode, TxFull, XskSetupError, XskSizes};

/// What the XDP program did with the frames it saw, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgramStats {
    /// Frames redirected to the relay's sockets.
    pub redirected: u64,
    /// Frames passed to the kernel.
    pub passed: u64,
}

/// The AF_XDP relay: one interface, one AF_XDP socket and thread per queue, any number of
/// [`EtherConn`](etherconn_relay::EtherConn)s.
///
/// ```no_run
/// use std::sync::Arc;
/// use etherconn_core::wire::EtherType;
/// use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
/// use etherconn_xdp::{XdpRelay, XdpRelayConfig};
///
/// let relay = XdpRelay::new("eth0", XdpRelayConfig::default())?;
/// println!("{} queue(s), {:?} mode", relay.queues().len(), relay.mode());
/// let relay: Arc<dyn PacketRelay> = relay;
/// let conn = EtherConn::new(relay.clone(), "02:00:00:00:00:01".parse()?, &[], EtherConnConfig::default())?;
/// conn.send_to(b"any payload", EtherType(0x88b5), "ff:ff:ff:ff:ff:ff".parse()?)?;
/// relay.stop(); // or drop it: the program is detached either way, and when the process dies
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct XdpRelay {
    ifname: String,
    dispatcher: Arc<Dispatcher>,
    queues: Vec<Arc<QueueShared>>,
    queue_ids: Vec<u32>,
    mode: BindMode,
    /// The interface's MTU when the relay was made.
    mtu: usize,
    /// Usable bytes of a UMEM frame: the largest frame sent or received.
    frame_room: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stopped: Arc<AtomicBool>,
    link: Mutex<Option<Link>>,
    stats_map: MapHandle,
    // Kept for the life of the relay: the maps and program the link and handles refer to.
    _program: Loaded,
}

/// The queue a sending thread uses: threads are spread over the queues in the order they
/// first send.
fn sender_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}

impl XdpRelay {
    /// Loads and attaches the XDP program to `ifname`, opens an AF_XDP socket on each queue
    /// and starts one thread per queue.
    ///
    /// Errors: [`Error::NoSuchInterface`], [`Error::InterfaceDown`],
    /// [`Error::QueueOutOfRange`], [`Error::PermissionDenied`],
    /// [`Error::ForeignProgramAttached`], [`Error::XdpNotSupported`], [`Error::UmemSetup`],
    /// [`Error::Program`], [`Error::InvalidConfig`].
    pub fn new(ifname: &str, config: XdpRelayConfig) -> Result<Arc<XdpRelay>> {
        Self::open(ifname, config, None)
    }

    /// [`new`](Self::new) with a capture of every frame the relay receives and sends from
    /// the first one on (the capture is there before the queue threads start). Also
    /// [`Error::Capture`] when the capture cannot start. Only frames the XDP program
    /// redirects reach the relay, so only those are in the file.
    pub fn with_capture(
        ifname: &str,
        config: XdpRelayConfig,
        capture: CaptureConfig,
    ) -> Result<Arc<XdpRelay>> {
        Self::open(ifname, config, Some(capture))
    }

    fn open(
        ifname: &str,
        config: XdpRelayConfig,
        capture: Option<CaptureConfig>,
    ) -> Result<Arc<XdpRelay>> {
        if config.rx_batch == 0 {
            return Err(Error::InvalidConfig("rx_batch must be at least 1"));
        }
        let no_such = || Error::NoSuchInterface {
            name: ifname.to_owned(),
        };
        let ifindex = sys::if_nametoindex(ifname).map_err(|_| no_such())?;
        let info = sys::interface_info(ifname).map_err(|_| no_such())?;
        if !info.up {
            return Err(Error::InterfaceDown {
                name: ifname.to_owned(),
            });
        }
        let queue_ids = match &config.queues {
            Some(q) if q.is_empty() => {
                return Err(Error::InvalidConfig("the queue list is empty"));
            }
            Some(q) => q.clone(),
            None => (0..info.rx_queues).collect(),
        };
        for (i, &q) in queue_ids.iter().enumerate() {
            if queue_ids[..i].contains(&q) {
                return Err(Error::InvalidConfig("a queue is listed twice"));
            }
            if q >= info.rx_queues {
                return Err(Error::QueueOutOfRange {
                    name: ifname.to_owned(),
                    queue: q,
                    queues: info.rx_queues,
                });
            }
        }
        let max_queue = queue_ids.iter().copied().max().unwrap_or(0);

        let mut loaded = program::load(max_queue, config.max_keys)?;
        if let Some(prog_id) = loaded.attached_id(ifindex)? {
            if !config.replace_foreign_program {
                return Err(Error::ForeignProgramAttached {
                    name: ifname.to_owned(),
                    prog_id,
                });
            }
            loaded.detach_foreign(ifindex)?;
            // A program attached through a BPF link (another relay's) cannot be detached
            // through netlink: it stays, and so does the refusal.
            if let Some(prog_id) = loaded.attached_id(ifindex)? {
                return Err(Error::ForeignProgramAttached {
                    name: ifname.to_owned(),
                    prog_id,
                });
            }
        }

        let mirror = MapMirror {
            endpoints: loaded.map("endpoints")?,
            groups: loaded.map("groups")?,
            config: loaded.map("config")?,
            own_mac: info.mac,
            untagged_group: config.default_takes_untagged_group,
            max_keys: config.max_keys.max(1),
        };
        mirror
            .write_config(false)
            .map_err(|e| Error::program("write config", &e))?;
        let dispatcher = Dispatcher::with_observer(config.dispatcher, Arc::new(mirror));
        if let Some(capture) = capture {
            dispatcher.start_capture(capture)?;
        }
        let xsks = loaded.map("xsks")?;
        let stats_map = loaded.map("stats")?;

        let sizes = XskSizes {
            frame_size: config.frame_size,
            rx_frames: config.rx_ring,
            tx_frames: config.tx_ring,
        };
        let zero_copy = match config.mode {
            XdpMode::Auto => None,
            XdpMode::ZeroCopy => Some(true),
            XdpMode::Copy => Some(false),
        };
        let mut queues = Vec::with_capacity(queue_ids.len());
        let mut rx_halves = Vec::with_capacity(queue_ids.len());
        let mut mode = BindMode::Copy;
        let mut frame_room = usize::MAX;
        for &q in &queue_ids {
            let (rx, tx, fd, m) = open_xsk_retrying(ifname, q, sizes, zero_copy, &config)?;
            program::put_socket(&xsks, q, fd)?;
            mode = m;
            frame_room = frame_room.min(tx.room());
            queues.push(Arc::new(QueueShared::new(q, tx)));
            rx_halves.push(rx);
        }

        // Attached last: by now every queue's socket is in the map.
        let link = loaded.attach(ifindex, ifname)?;
        tracing::debug!(
            interface = ifname,
            ifindex,
            prog_id = loaded.attached_id(ifindex).ok().flatten().unwrap_or(0),
            max_keys = config.max_keys,
            "AF_XDP relay: program attached"
        );
        tracing::info!(
            interface = ifname,
            mtu = info.mtu,
            queues = ?queue_ids,
            mode = ?mode,
            frame_size = config.frame_size,
            rx_ring = config.rx_ring,
            tx_ring = config.tx_ring,
            rx_batch = config.rx_batch,
            need_wakeup = config.need_wakeup,
            capture = dispatcher.capture().is_some(),
            "AF_XDP relay opened"
        );

        let stopped = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(queues.len());
        for (rx, q) in rx_halves.into_iter().zip(&queues) {
            let d = Arc::clone(&dispatcher);
            let q = Arc::clone(q);
            let stop = Arc::clone(&stopped);
            let pace = Pace {
                batch: config.rx_batch,
                idle_spins: config.idle_spins,
                idle_poll_ms: config.idle_poll_ms,
            };
            let name = ifname.to_owned();
            let spawned = std::thread::Builder::new()
                .name(format!("etherconn-xdp{}", q.queue))
                .spawn(move || engine(rx, &q, &d, &stop, pace, &name));
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    stopped.store(true, Ordering::SeqCst);
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(Error::io("spawn queue thread", e));
                }
            }
        }
        Ok(Arc::new(XdpRelay {
            ifname: ifname.to_owned(),
            dispatcher,
            queues,
            queue_ids,
            mode,
            mtu: info.mtu as usize,
            frame_room,
            threads: Mutex::new(threads),
            stopped,
            link: Mutex::new(Some(link)),
            stats_map,
            _program: loaded,
        }))
    }

    /// The interface name.
    pub fn interface_name(&self) -> &str {
        &self.ifname
    }

    /// The queues served, one thread each.
    pub fn queues(&self) -> &[u32] {
        &self.queue_ids
    }

    /// How the sockets are bound: zero-copy, or copy mode (veth offers only that).
    pub fn mode(&self) -> BindMode {
        self.mode
    }

    /// Each queue's counters.
    pub fn queue_stats(&self) -> Vec<QueueStats> {
        self.queues.iter().map(|q| q.stats()).collect()
    }

    /// What the XDP program did with the frames it saw.
    pub fn program_stats(&self) -> ProgramStats {
        let (redirected, passed) = program::read_stats(&self.stats_map);
        ProgramStats { redirected, passed }
    }

    /// A frame past the link's MTU, said in the link's terms, as the other relays say it.
    fn too_large(&self, len: usize) -> io::Error {
        sending::frame_too_large(len, self.mtu, &self.ifname, None)
    }

    fn refuse_if_stopped(&self) -> io::Result<()> {
        sending::refuse_if_stopped(&self.stopped, &self.dispatcher)
    }

    /// Queues as many of `frames` as fit on one queue's send ring, waiting (up to
    /// `deadline`) while the ring is full.
    fn send_some(&self, frames: &[&[u8]], deadline: Option<Instant>) -> io::Result<usize> {
        let q = &self.queues[sender_slot() % self.queues.len()];
        loop {
            let sent =
                q.tx.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .send(frames);
            match sent {
                Ok(n) => {
                    q.tx_frames.fetch_add(n as u64, Ordering::Relaxed);
                    return Ok(n);
                }
                Err(TxFull::TooLarge(len)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "a {len}-byte frame exceeds the {}-byte UMEM frame",
                            self.frame_room
                        ),
                    ));
                }
                Err(TxFull::Busy) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(io::Error::new(
                            io::ErrorKind::WouldBlock,
                            "the AF_XDP send ring is full",
                        ));
                    }
                    if self.stopped.load(Ordering::Relaxed) {
                        return Err(sending::stopped_error());
                    }
                    // The kernel completes sends in the `sendto` kick (copy mode) or from
                    // the driver's interrupt: give it a moment.
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
        }
    }
}

/// The largest frame a packet socket on a link of `mtu` takes: the Ethernet header on top of
/// the MTU, and 4 bytes more when the outermost tag is 802.1Q (0x8100). An AF_XDP socket in
/// copy mode checks nothing (a veth drops what its peer cannot take, silently), so the relay
/// holds its frames to the same rule as the AF_PACKET and libpcap relays.
fn link_limit(mtu: usize, frame: &[u8]) -> usize {
    let dot1q_outer = frame.get(12..14) == Some(&[0x81, 0x00][..]);
    mtu + 14 + if dot1q_outer { 4 } else { 0 }
}

/// How long a bind that finds the queue busy is retried: the kernel releases a closed
/// socket's hold on its queue from a work queue, a moment after the close (a relay started
/// right after another stopped meets that).
const BUSY_RETRY: Duration = Duration::from_secs(2);

fn open_xsk_retrying(
    ifname: &str,
    queue: u32,
    sizes: XskSizes,
    zero_copy: Option<bool>,
    config: &XdpRelayConfig,
) -> Result<(sys::XskRx, sys::XskTx, std::os::fd::RawFd, BindMode)> {
    let deadline = Instant::now() + BUSY_RETRY;
    loop {
        match sys::open_xsk(ifname, queue, sizes, zero_copy, config.need_wakeup) {
            Ok(v) => return Ok(v),
            Err(XskSetupError::Socket(e))
                if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(setup_error(e, ifname, queue, config)),
        }
    }
}

fn setup_error(e: XskSetupError, ifname: &str, queue: u32, config: &XdpRelayConfig) -> Error {
    let source = match e {
        XskSetupError::Sizes(msg) => io::Error::new(io::ErrorKind::InvalidInput, msg),
        XskSetupError::Umem(e) | XskSetupError::Socket(e) => e,
    };
    match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => Error::PermissionDenied {
            op: "create an AF_XDP socket",
        },
        Some(libc::EBUSY) => Error::UmemSetup {
            queue,
            frames: config.rx_ring.saturating_add(config.tx_ring),
            frame_size: config.frame_size,
            rx_ring: config.rx_ring,
            tx_ring: config.tx_ring,
            source: io::Error::new(
                io::ErrorKind::ResourceBusy,
                "another AF_XDP socket is bound to this queue",
            ),
        },
        Some(libc::EOPNOTSUPP) if config.mode == XdpMode::ZeroCopy => Error::XdpNotSupported {
            name: ifname.to_owned(),
            what: "AF_XDP zero-copy",
            source,
        },
        _ => Error::UmemSetup {
            queue,
            frames: config.rx_ring.saturating_add(config.tx_ring),
            frame_size: config.frame_size,
            rx_ring: config.rx_ring,
            tx_ring: config.tx_ring,
            source,
        },
    }
}

impl PacketRelay for XdpRelay {
    fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    fn send(&self, frame: &[u8], timeout: Option<Duration>) -> io::Result<()> {
        self.send_batch(&[frame], timeout).map(|_| ())
    }

    /// Copies the frames into the send ring of the calling thread's queue, as many per lock
    /// as fit; on a full ring it waits (up to `timeout`) for completions. A frame past the
    /// link's MTU is refused before it reaches the ring, as a packet socket refuses it.
    fn send_batch(&self, frames: &[&[u8]], timeout: Option<Duration>) -> io::Result<usize> {
        let c = self.dispatcher.counters();
        self.refuse_if_stopped()?;
        let deadline = timeouts::deadline(timeout);
        let capture = self.dispatcher.capture();
        // Frames up to the first one the link would not take: a compare or two per frame.
        let fit = frames
            .iter()
            .position(|f| f.len() > link_limit(self.mtu, f))
            .unwrap_or(frames.len());
        let mut done = 0;
        while done < fit {
            match self.send_some(&frames[done..fit], deadline) {
                Ok(n) => {
                    c.tx.fetch_add(n as u64, Ordering::Relaxed);
                    if let Some(cap) = capture {
                        sending::record_sent(cap, &frames[done..done + n]);
                    }
                    done += n;
                }
                Err(e) => {
                    RelayCounters::bump(&c.tx_errors);
                    return if done == 0 { Err(e) } else { Ok(done) };
                }
            }
        }
        if done == 0 && fit < frames.len() {
            RelayCounters::bump(&c.tx_errors);
            return Err(self.too_large(frames[fit].len()));
        }
        Ok(done)
    }

    /// The interface's MTU, read (`SIOCGIFMTU`) when the relay was made. A later change of
    /// the MTU is not seen: make a new relay after `ip link set IF mtu N`.
    fn mtu(&self) -> usize {
        self.mtu
    }

    /// Always `true`: the XDP program redirects frames by their registered key (MAC, VLAN
    /// ids, EtherType), whatever the EtherType, so every EtherType a conn registers reaches
    /// the relay. Frames of keys nobody registered are passed to the host instead.
    fn receives(&self, ethertype: EtherType) -> bool {
        let _ = ethertype;
        true
    }

    fn max_frame_len(&self) -> usize {
        self.dispatcher.config().buf_len.min(self.frame_room)
    }

    fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.dispatcher.stop();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            let _ = t.join();
        }
        // Dropping the link detaches the program (the kernel would at exit anyway).
        drop(
            self.link
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        // After the queue threads ended: every frame they took is in the file.
        let _ = self.dispatcher.close_capture();
        // The totals: drops since the last summary are in them.
        tracing::info!(
            interface = self.ifname.as_str(),
            stats = %self.dispatcher.stats(),
            kernel_dropped = self.queues.iter().map(|q| q.stats().rx_kernel_dropped).sum::<u64>(),
            "AF_XDP relay stopped"
        );
    }
}

impl Drop for XdpRelay {
    fn drop(&mut self) {
        self.stop();
    }
}
