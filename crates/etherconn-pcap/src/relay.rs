//! [`PcapRelay`]: the libpcap backend of etherconn's relay layer.
//!
//! One receive thread owns a capture handle in immediate mode (each frame is handed over as
//! it arrives, not when a buffer fills) with a bounded wait, so that it notices a stop even
//! on a silent link, and delivers what each `pcap_dispatch` returns to the shared
//! [`Dispatcher`] as one batch. Sends go through a second handle on the same device
//! (`pcap_sendpacket`), whose filter takes nothing. Both paths hand their frames to the
//! dispatcher's capture, when there is one ([`Dispatcher::capture`]).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use etherconn_core::bpf::{ethertype_filter, FilterOptions, Program};
use etherconn_core::wire::EtherType;
use etherconn_relay::{sending, timeouts};
use etherconn_relay::{
    CaptureConfig, Direction as CaptureDirection, Dispatcher, DispatcherConfig, PacketRelay,
    RelayCounters,
};
use pcap::{Active, Capture, Direction, Linktype};

use crate::error::{activate_error, Error, Result};
use crate::filter::capture_filter;
use crate::sys;

/// Settings of a [`PcapRelay`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PcapRelayConfig {
    /// EtherTypes the capture filter passes (untagged, behind one tag or two). Default ARP,
    /// IPv4, IPv6. Ignored when `filter` is set.
    pub ethertypes: Vec<EtherType>,
    /// A classic BPF program that replaces the one built from `ethertypes`. The relay cannot
    /// tell which EtherTypes it passes, so it refuses no conn for its EtherTypes
    /// ([`PacketRelay::receives`] is `true`).
    pub filter: Option<Program>,
    /// The dispatch table's settings (buffers, mirroring, checksum verification).
    pub dispatcher: DispatcherConfig,
    /// Promiscuous mode (frames for MACs the interface does not own). Default on: the relay's
    /// endpoints have MACs of their own.
    pub promiscuous: bool,
    /// How long one wait for frames lasts at most (the capture's read timeout): the longest a
    /// stop can take to be noticed where `pcap_breakloop` does not wake the wait. Default
    /// 100 ms.
    pub poll_timeout: Duration,
    /// Size of the receive handle's kernel buffer (`pcap_set_buffer_size`), in bytes. Default
    /// 4 MiB.
    pub buffer_size: usize,
}

impl Default for PcapRelayConfig {
    fn default() -> Self {
        PcapRelayConfig {
            ethertypes: vec![EtherType::ARP, EtherType::IPV4, EtherType::IPV6],
            filter: None,
            dispatcher: DispatcherConfig::default(),
            promiscuous: true,
            poll_timeout: Duration::from_millis(100),
            buffer_size: 4 << 20,
        }
    }
}

impl PcapRelayConfig {
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

    /// These settings with a receive buffer of `bytes`.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes;
        self
    }

    /// The program the capture handle runs: the user's, or the EtherType filter; as given on
    /// Linux, without its ancillary loads elsewhere ([`crate::filter::capture_filter`]).
    pub fn capture_program(&self) -> Result<Program> {
        let program = match &self.filter {
            Some(p) => p.clone(),
            None => ethertype_filter(&self.ethertypes, FilterOptions::default())
                .map_err(|_| Error::InvalidConfig("cannot build a filter for these EtherTypes"))?,
        };
        Ok(capture_filter(&program))
    }
}

/// Opens and activates a live capture on `device`, in immediate mode, checks that it carries
/// Ethernet, and installs `program` as its filter.
fn open_capture(
    device: &str,
    promiscuous: bool,
    timeout: Duration,
    sizes: (usize, usize),
    program: &Program,
) -> Result<Capture<Active>> {
    let (snaplen, buffer_size) = sizes;
    // libpcap sizes its ring slots from the snapshot length: its default (256 KiB) leaves 16
    // slots in a 4 MiB buffer, which a burst overruns. Frames longer than the relay's buffers
    // are dropped anyway.
    let snaplen = i32::try_from(snaplen)
        .map_err(|_| Error::InvalidConfig("the dispatcher's buf_len does not fit in an int"))?;
    let timeout_ms = i32::try_from(timeout.as_millis().max(1))
        .map_err(|_| Error::InvalidConfig("poll_timeout is too long"))?;
    let buffer_size = i32::try_from(buffer_size)
        .map_err(|_| Error::InvalidConfig("buffer_size does not fit in an int"))?;
    let inactive = Capture::from_device(device).map_err(|source| Error::Pcap {
        op: "pcap_create",
        source,
    })?;
    let mut cap = inactive
        .immediate_mode(true)
        .timeout(timeout_ms)
        .promisc(promiscuous)
        .snaplen(snaplen)
        .buffer_size(buffer_size)
        .open()
        .map_err(|e| activate_error(device, e))?;
    let linktype = cap.get_datalink();
    if linktype != Linktype::ETHERNET {
        return Err(Error::NotEthernet {
            name: device.into(),
            linktype: linktype.0,
        });
    }
    // Frames this process sends are not frames it receives (like PACKET_IGNORE_OUTGOING).
    cap.direction(Direction::In).map_err(|source| Error::Pcap {
        op: "pcap_setdirection",
        source,
    })?;
    sys::set_filter(&mut cap, program.as_slice()).map_err(|message| Error::FilterRejected {
        instructions: program.len(),
        message,
    })?;
    Ok(cap)
}

/// The libpcap relay: one capture device, any number of
/// [`EtherConn`](etherconn_relay::EtherConn)s.
///
/// ```no_run
/// use std::sync::Arc;
/// use etherconn_core::wire::{EtherType, VlanTag};
/// use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
/// use etherconn_pcap::{PcapRelay, PcapRelayConfig};
///
/// let relay: Arc<dyn PacketRelay> = PcapRelay::new("eth0", PcapRelayConfig::default())?;
/// let conn = EtherConn::new(
///     relay.clone(),
///     "02:00:00:00:00:01".parse()?,
///     &[VlanTag::dot1q(100).unwrap()],
///     EtherConnConfig::default(),
/// )?;
/// conn.send_to(b"any payload", EtherType(0x88b5), "ff:ff:ff:ff:ff:ff".parse()?)?;
/// relay.stop();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PcapRelay {
    device: String,
    dispatcher: Arc<Dispatcher>,
    /// The send handle. libpcap promises no thread safety for one handle, so senders take
    /// turns: once per frame in `send`, once per batch in `send_batch`.
    tx: Mutex<Capture<Active>>,
    breaker: pcap::BreakLoop,
    thread: Mutex<Option<JoinHandle<()>>>,
    stopped: Arc<AtomicBool>,
    /// The interface's MTU when the relay was made.
    mtu: usize,
    /// What the capture filter passes; `None` for a user's program.
    ethertypes: Option<Vec<EtherType>>,
}

impl core::fmt::Debug for PcapRelay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PcapRelay")
            .field("device", &self.device)
            .field("stopped", &self.stopped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl PcapRelay {
    /// Opens `device` (a receive and a send handle) and starts the receive thread.
    ///
    /// Errors: [`Error::NoSuchDevice`], [`Error::DeviceDown`], [`Error::PermissionDenied`]
    /// (needs root or `CAP_NET_RAW` + `CAP_NET_ADMIN` on Linux), [`Error::FilterRejected`],
    /// [`Error::NotEthernet`], [`Error::InvalidConfig`], [`Error::Pcap`], [`Error::Io`] (the
    /// MTU could not be read).
    pub fn new(device: &str, config: PcapRelayConfig) -> Result<Arc<PcapRelay>> {
        Self::open(device, config, None)
    }

    /// [`new`](Self::new) with a capture of every frame from the first one on
    /// ([`Dispatcher::start_capture`] on a running relay may miss the frames of a receive
    /// batch already under way). Also [`Error::Capture`] when the capture cannot start.
    ///
    /// ```no_run
    /// use etherconn_pcap::{PcapRelay, PcapRelayConfig};
    /// use etherconn_relay::{CaptureConfig, PacketRelay};
    ///
    /// let relay = PcapRelay::with_capture(
    ///     "eth1",
    ///     PcapRelayConfig::default(),
    ///     CaptureConfig::file("/tmp/pcap-relay.pcapng").interface_name("eth1"),
    /// )?;
    /// // ... run ...
    /// relay.stop(); // closes the capture: the file is complete
    /// println!("captured {} frames", relay.stats().captured);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_capture(
        device: &str,
        config: PcapRelayConfig,
        capture: CaptureConfig,
    ) -> Result<Arc<PcapRelay>> {
        Self::open(device, config, Some(capture))
    }

    fn open(
        device: &str,
        config: PcapRelayConfig,
        capture: Option<CaptureConfig>,
    ) -> Result<Arc<PcapRelay>> {
        let program = config.capture_program()?;
        let ethertypes = config.filter.is_none().then(|| config.ethertypes.clone());
        let buf_len = config.dispatcher.buf_len;
        let rx = open_capture(
            device,
            config.promiscuous,
            config.poll_timeout,
            (buf_len, config.buffer_size),
            &program,
        )?;
        let mut rx = crate::platform::prepare_receive(rx).map_err(|source| Error::Pcap {
            op: "pcap_setnonblock",
            source,
        })?;
        // The send handle receives nothing: a filter that takes no frame, a small buffer.
        let tx = open_capture(
            device,
            false,
            config.poll_timeout,
            (buf_len, 64 << 10),
            &Program::reject_all(),
        )?;
        let mtu = crate::platform::interface_mtu(&tx, device).map_err(|source| Error::Io {
            op: "SIOCGIFMTU",
            name: device.into(),
            source,
        })?;
        let dispatcher = Dispatcher::new(config.dispatcher);
        if let Some(capture) = capture {
            dispatcher.start_capture(capture)?;
        }
        tracing::debug!(
            interface = device,
            instructions = program.len(),
            ethertypes = ?ethertypes,
            "libpcap relay: capture filter attached"
        );
        tracing::info!(
            interface = device,
            mtu,
            buffer_size = config.buffer_size,
            snaplen = buf_len,
            filter = if ethertypes.is_some() {
                "ethertypes"
            } else {
                "user program"
            },
            promiscuous = config.promiscuous,
            capture = dispatcher.capture().is_some(),
            "libpcap relay opened"
        );
        let stopped = Arc::new(AtomicBool::new(false));
        let breaker = rx.breakloop_handle();
        let d = Arc::clone(&dispatcher);
        let s = Arc::clone(&stopped);
        let name = device.to_owned();
        let thread = std::thread::Builder::new()
            .name("etherconn-pcap-rx".into())
            .spawn(move || engine(rx, &d, &s, config.poll_timeout, &name))
            .map_err(Error::Spawn)?;
        Ok(Arc::new(PcapRelay {
            device: device.to_owned(),
            dispatcher,
            tx: Mutex::new(tx),
            breaker,
            thread: Mutex::new(Some(thread)),
            stopped,
            mtu,
            ethertypes,
        }))
    }

    /// The capture device's name.
    pub fn device_name(&self) -> &str {
        &self.device
    }

    /// `NotConnected` (counted as a send error) once the relay has stopped.
    fn refuse_if_stopped(&self) -> io::Result<()> {
        sending::refuse_if_stopped(&self.stopped, &self.dispatcher)
    }

    fn tx(&self) -> MutexGuard<'_, Capture<Active>> {
        self.tx.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one frame on the locked handle, retrying while the device queue is full until
    /// `deadline`.
    fn send_locked(
        &self,
        tx: &mut Capture<Active>,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        loop {
            let e = match tx.sendpacket(frame) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if !is_transient(&e) {
                return Err(self.explain(e, frame.len()));
            }
            std::thread::sleep(sending::retry_wait(deadline)?);
            if self.stopped.load(Ordering::Relaxed) {
                return Err(sending::stopped_error());
            }
        }
    }
}

impl PcapRelay {
    /// libpcap's "Message too long" (the kernel's `EMSGSIZE`) for a frame past the link's MTU
    /// (one built by hand, or after the MTU shrank under the relay), said in the link's terms;
    /// other errors as libpcap words them. Only on the error path.
    fn explain(&self, e: pcap::Error, len: usize) -> io::Error {
        let too_long = matches!(&e, pcap::Error::PcapError(m) if m.contains("Message too long"));
        if !too_long {
            return io::Error::other(e);
        }
        sending::frame_too_large(len, self.mtu, &self.device, Some(&e))
    }
}

/// A libpcap receive time (seconds and microseconds) as time since the Unix epoch (`None`
/// before it, or out of range). Generic because `timeval`'s fields are 64-bit on Linux and
/// `long` (32-bit) on Windows.
fn pcap_time(secs: impl Into<i64>, micros: impl Into<i64>) -> Option<Duration> {
    let secs = u64::try_from(secs.into()).ok()?;
    let micros = u32::try_from(micros.into())
        .ok()
        .filter(|&m| m < 1_000_000)?;
    Some(Duration::new(secs, micros * 1000))
}

/// A full device queue (`ENOBUFS`, `EAGAIN`): libpcap reports it as a message only.
fn is_transient(e: &pcap::Error) -> bool {
    match e {
        pcap::Error::PcapError(m) => {
            m.contains("No buffer space") || m.contains("temporarily unavailable")
        }
        _ => false,
    }
}

/// How often the receive thread folds `pcap_stats` into the relay's counters.
const STATS_EVERY: Duration = Duration::from_millis(200);

/// The receive thread: hands every frame to the dispatcher until stopped.
fn engine(
    mut cap: Capture<Active>,
    dispatcher: &Dispatcher,
    stopped: &AtomicBool,
    poll_timeout: Duration,
    device: &str,
) {
    let mut batch = dispatcher.delivery();
    let counters = dispatcher.counters();
    let mut last_stats = Instant::now();
    let mut reported = (0u32, 0u32);
    while !stopped.load(Ordering::Relaxed) && !dispatcher.is_stopped() {
        // Looked up once per dispatch: without a capture, one untaken branch per frame.
        let capture = dispatcher.capture();
        let got = cap.dispatch(None, |packet| {
            if let Some(c) = capture {
                // libpcap already put any tag the kernel moved out back into the frame.
                c.record(
                    CaptureDirection::Inbound,
                    packet.data,
                    None,
                    pcap_time(packet.header.ts.tv_sec, packet.header.ts.tv_usec),
                );
            }
            if packet.header.caplen < packet.header.len {
                // Longer than the relay's buffers (the snapshot length): never delivered.
                RelayCounters::bump(&counters.rx_offered);
                RelayCounters::bump(&counters.rx_invalid);
                return;
            }
            // libpcap puts a VLAN tag the kernel moved out back into the frame, so no tag
            // travels beside it. It does not say whether the UDP checksum was checked or is
            // one the kernel has yet to fill in (a local sender's, across veth): always verify.
            batch.push(packet.data, None, false);
        });
        batch.flush();
        match got {
            Ok(0) => crate::platform::wait_for_frames(&cap, poll_timeout),
            Ok(_) => {}
            // The device went down, or a transient error: keep serving once it is back.
            Err(_) if !stopped.load(Ordering::Relaxed) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(_) => {}
        }
        if last_stats.elapsed() >= STATS_EVERY {
            last_stats = Instant::now();
            if let Ok(st) = cap.stats() {
                // libpcap's counters are 32-bit and wrap.
                let new = st.dropped.wrapping_sub(reported.0) as u64
                    + st.if_dropped.wrapping_sub(reported.1) as u64;
                reported = (st.dropped, st.if_dropped);
                dispatcher
                    .counters()
                    .rx_backend_dropped
                    .fetch_add(new, Ordering::Relaxed);
            }
            // At most once a second, and only for a subscriber that listens.
            dispatcher.summarise_drops(device);
        }
    }
}

impl PacketRelay for PcapRelay {
    fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// The interface's MTU, read when the relay was made (`SIOCGIFMTU` on Linux; 1500
    /// elsewhere, see [`crate::platform`]). A later change of the MTU is not seen: make a new
    /// relay after `ip link set IF mtu N`.
    fn mtu(&self) -> usize {
        self.mtu
    }

    /// Whether the capture filter built from `PcapRelayConfig::ethertypes` passes
    /// `ethertype`; always `true` under a user's filter program.
    fn receives(&self, ethertype: EtherType) -> bool {
        match &self.ethertypes {
            Some(list) => list.contains(&ethertype),
            None => true,
        }
    }

    fn send(&self, frame: &[u8], timeout: Option<Duration>) -> io::Result<()> {
        self.refuse_if_stopped()?;
        let sent = self.send_locked(&mut self.tx(), frame, timeouts::deadline(timeout));
        sending::account_send(&self.dispatcher, frame, sent)
    }

    /// Sends the frames one `pcap_sendpacket` each (libpcap has no batch send on Linux),
    /// taking the send handle once for the whole batch.
    fn send_batch(&self, frames: &[&[u8]], timeout: Option<Duration>) -> io::Result<usize> {
        let c = self.dispatcher.counters();
        self.refuse_if_stopped()?;
        let deadline = timeouts::deadline(timeout);
        let mut tx = self.tx();
        let mut sent = frames.len();
        let mut failure = None;
        for (i, frame) in frames.iter().enumerate() {
            if let Err(e) = self.send_locked(&mut tx, frame, deadline) {
                RelayCounters::bump(&c.tx_errors);
                (sent, failure) = (i, Some(e));
                break;
            }
            RelayCounters::bump(&c.tx);
        }
        drop(tx);
        // Recorded after the handle is given back, so other senders do not wait on the copies.
        if let Some(cap) = self.dispatcher.capture() {
            sending::record_sent(cap, &frames[..sent]);
        }
        match failure {
            Some(e) if sent == 0 => Err(e),
            _ => Ok(sent),
        }
    }

    fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        self.breaker.breakloop();
        self.dispatcher.stop();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        // After the receive thread ended: every frame it took is in the file.
        let _ = self.dispatcher.close_capture();
        tracing::info!(
            interface = self.device.as_str(),
            stats = %self.dispatcher.stats(),
            "libpcap relay stopped"
        );
    }
}

impl Drop for PcapRelay {
    fn drop(&mut self) {
        self.stop();
    }
}
