//! The two ends of a measurement: a receiving thread and a sending thread, each opening its
//! backend's endpoint set inside its namespace, and what they share with and hand back to the
//! thread coordinating them.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use etherconn_core::wire::MacAddr;

use super::plan::{
    Backend, Case, DST_PORT, KERNEL_A, KERNEL_B, RX_IP, RX_MAC, SRC_PORT, TX_IP, TX_MAC,
};
use crate::addr::ip_offset;
use crate::endpoint::{EndpointSet, Peer, TxSpec, BATCH};
use crate::kernel::KernelUdp;
use crate::l2udp::{L2UdpConfig, L2UdpEndpoints};
use crate::payload::{self, Checker};
use crate::rudp::{PeerRange, RUdpEndpoints};
use crate::sys;
use crate::taskstat::{self, ThreadClock};

/// How long a receiver waits for a datagram before it looks at its stop flag again.
const RX_WAIT: Duration = Duration::from_millis(20);

/// How long every send may fail before a sender gives up (a count of failures, 10,000 before,
/// ran out within milliseconds when a loaded machine kept the receiving veth's NAPI thread
/// from its CPU).
const SEND_FAILING_FOR: Duration = Duration::from_secs(2);

/// Flags and counters the measuring threads share with the main thread.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Set when the senders may start.
    pub(super) go: AtomicBool,
    /// Set when the sender must stop.
    pub(super) stop_tx: AtomicBool,
    /// Set when the receiver must stop (after the drain).
    pub(super) stop_rx: AtomicBool,
    /// Datagrams sent so far.
    pub(super) tx: AtomicU64,
    /// Datagrams received so far.
    pub(super) rx: AtomicU64,
    /// CPU clocks of the sending thread, the reader and the receiving relay's threads, set
    /// before each says it is ready.
    pub(super) clocks: Mutex<Vec<ThreadClock>>,
}

impl Shared {
    /// The threads' clocks so far.
    pub(super) fn clocks(&self) -> Vec<ThreadClock> {
        self.clocks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn stop_all(&self) {
        self.stop_tx.store(true, Ordering::SeqCst);
        self.stop_rx.store(true, Ordering::SeqCst);
    }
}

/// What the sender hands back.
#[derive(Debug)]
pub(super) struct TxReport {
    /// Failed send calls.
    pub(super) errors: u64,
    /// The last of their errors.
    pub(super) last_error: Option<String>,
    /// The sending set's counters.
    pub(super) counters: Vec<(String, u64)>,
}

/// What the receiver hands back.
#[derive(Debug)]
pub(super) struct RxReport {
    /// The receiving set's backend name.
    pub(super) backend: &'static str,
    /// Sequence and content checks of every datagram received.
    pub(super) checker: Checker,
    /// The receiving set's counters, and `misaddressed`.
    pub(super) counters: Vec<(String, u64)>,
}

/// How a measuring thread says its set is open (or why it is not).
pub(super) type Ready = mpsc::Sender<std::result::Result<(), String>>;

/// Opens the receiving set (in namespace B, pinned), says ready, and counts and checks what
/// arrives until told to stop.
pub(super) fn receiver(
    case: Case,
    ifname: &str,
    cfg: &L2UdpConfig,
    cpu: usize,
    shared: &Shared,
    ready: &Ready,
) -> std::result::Result<RxReport, String> {
    let mut set = open_and_report(case.backend, End::Receiver, ifname, cfg, cpu, shared, ready)?;
    let mut checker = Checker::new(set.endpoint_count(), case.payload);
    let tags: Vec<u16> = cfg.vlans.iter().map(|t| t.id.get()).collect();
    let want_tags = if case.backend == Backend::Kernel {
        &[][..]
    } else {
        &tags[..]
    };
    let mut misaddressed = 0u64;
    while !shared.stop_rx.load(Ordering::Relaxed) {
        let n = set
            .recv_burst(BATCH, RX_WAIT, &mut |d| {
                // Light checks of what the set reports besides the payload.
                let tags_ok = d.vlans.len() == want_tags.len()
                    && d.vlans
                        .iter()
                        .zip(want_tags)
                        .all(|(t, &id)| t.id.get() == id);
                if !tags_ok || d.to.port() != DST_PORT {
                    misaddressed += 1;
                }
                checker.check(d.endpoint, d.payload);
            })
            .map_err(|e| format!("receive failed: {e}"))?;
        if n > 0 {
            shared.rx.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    let mut counters = set.counters();
    counters.push(("misaddressed".to_owned(), misaddressed));
    Ok(RxReport {
        backend: set.backend(),
        checker,
        counters,
    })
}

/// Opens the sending set (in namespace A, pinned), says ready, waits for the start, and sends
/// bursts round robin over its endpoints (endpoint `i` to receiving endpoint `i`) until told
/// to stop: as fast as it can, or `rate` datagrams per second.
#[allow(clippy::too_many_arguments)]
pub(super) fn sender(
    case: Case,
    ifname: &str,
    cfg: &L2UdpConfig,
    cpu: usize,
    rate: Option<u64>,
    shared: &Shared,
    ready: &Ready,
) -> std::result::Result<TxReport, String> {
    let mut set = open_and_report(case.backend, End::Sender, ifname, cfg, cpu, shared, ready)?;
    let count = set.endpoint_count();
    // Destinations for endpoint i, repeated so that any BATCH consecutive specs are a slice.
    let specs: Vec<TxSpec> = (0..count + BATCH)
        .map(|i| {
            let e = i % count;
            let to = match case.backend {
                Backend::Kernel => Peer {
                    mac: MacAddr::UNSPECIFIED,
                    addr: SocketAddr::V4(SocketAddrV4::new(KERNEL_B, DST_PORT)),
                },
                // Every etherconn backend sends to the receiving set's endpoints.
                _ => Peer {
                    mac: RX_MAC.offset(e as u64),
                    addr: SocketAddr::V4(SocketAddrV4::new(ip_offset(RX_IP, e), DST_PORT)),
                },
            };
            TxSpec { from: e, to }
        })
        .collect();
    while !shared.go.load(Ordering::SeqCst) {
        if shared.stop_tx.load(Ordering::SeqCst) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut seq = vec![0u64; count];
    let (mut at, mut errors) = (0usize, 0u64);
    // Since when every send call has failed (a full veth ring refuses frames while the
    // receiver's NAPI thread waits for its CPU, which on a loaded machine takes a while).
    let mut failing_since: Option<Instant> = None;
    let mut last_error = None;
    let mut pace = rate.map(Pacer::new);
    while !shared.stop_tx.load(Ordering::Relaxed) {
        let n = match &mut pace {
            None => BATCH,
            Some(p) => match p.due() {
                0 => {
                    p.wait();
                    continue;
                }
                n => n,
            },
        };
        let burst = &specs[at..at + n];
        let result = set.send_burst(burst, &mut |k, buf| {
            let e = burst[k].from;
            let s = seq[e];
            seq[e] += 1;
            payload::write(buf, case.payload, s, 0)
        });
        let sent = match result {
            Ok(sent) => {
                failing_since = None;
                sent
            }
            Err(e) => {
                errors += 1;
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= SEND_FAILING_FOR {
                    return Err(format!(
                        "sending keeps failing (for {} s): {e}",
                        SEND_FAILING_FOR.as_secs()
                    ));
                }
                last_error = Some(e.to_string());
                std::thread::yield_now();
                0
            }
        };
        // Unsent datagrams get their sequence numbers back, to be sent again.
        for spec in burst[sent..].iter().rev() {
            seq[spec.from] -= 1;
        }
        if sent > 0 {
            shared.tx.fetch_add(sent as u64, Ordering::Relaxed);
            at = (at + sent) % count;
            if let Some(p) = &mut pace {
                p.sent += sent as u64;
            }
        }
    }
    Ok(TxReport {
        errors,
        last_error,
        counters: set.counters(),
    })
}

/// Keeps a sender at `rate` datagrams per second from its first burst on: each burst is what
/// is due by now (at most [`BATCH`]), so a sender held up catches up in full bursts.
struct Pacer {
    rate: u64,
    start: Instant,
    sent: u64,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer {
            rate,
            start: Instant::now(),
            sent: 0,
        }
    }

    /// Datagrams due now, at most a burst.
    fn due(&self) -> usize {
        let by_now = (self.rate as f64 * self.start.elapsed().as_secs_f64()) as u64;
        by_now.saturating_sub(self.sent).min(BATCH as u64) as usize
    }

    /// Sleeps until the next datagram is due (at most 1 ms, so that a stop is seen).
    fn wait(&self) {
        let due = self.start + Duration::from_secs_f64((self.sent + 1) as f64 / self.rate as f64);
        let nap = due
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(1));
        std::thread::sleep(nap);
    }
}

/// Which end of the pair a set is.
#[derive(Clone, Copy, Debug)]
enum End {
    Receiver,
    Sender,
}

impl End {
    /// The endpoints at the other end.
    fn peers(self, count: usize) -> PeerRange {
        let (base_mac, base_ip) = match self {
            End::Receiver => (TX_MAC, TX_IP),
            End::Sender => (RX_MAC, RX_IP),
        };
        PeerRange {
            base_mac,
            base_ip,
            count,
        }
    }

    /// This end's kernel UDP socket address.
    fn kernel_addr(self) -> SocketAddrV4 {
        match self {
            End::Receiver => SocketAddrV4::new(KERNEL_B, DST_PORT),
            End::Sender => SocketAddrV4::new(KERNEL_A, SRC_PORT),
        }
    }
}

/// [`open_set`], then notes the CPU clocks of this thread (and, receiving, of the relay's
/// receive threads) in `shared` and tells the coordinating thread whether it worked.
fn open_and_report(
    backend: Backend,
    end: End,
    ifname: &str,
    cfg: &L2UdpConfig,
    cpu: usize,
    shared: &Shared,
    ready: &Ready,
) -> std::result::Result<Box<dyn EndpointSet>, String> {
    let opened = open_set(backend, end, ifname, cfg, cpu);
    if opened.is_ok() {
        let mut clocks = shared.clocks.lock().unwrap_or_else(PoisonError::into_inner);
        match end {
            End::Sender => clocks.extend(taskstat::this_thread("sender")),
            End::Receiver => {
                clocks.extend(taskstat::this_thread("reader"));
                let relay_threads = match backend {
                    Backend::Rawsock | Backend::Rudp => cfg.relay_threads,
                    _ => 0,
                };
                let found = taskstat::relay_threads_here(relay_threads);
                if found.len() < relay_threads {
                    eprintln!(
                        "warning: found {} of the relay's {relay_threads} receive threads; the \
                         missing ones are left out of thread cpu %",
                        found.len()
                    );
                }
                clocks.extend(found);
            }
        }
    }
    let _ = ready.send(opened.as_ref().map(|_| ()).map_err(Clone::clone));
    opened
}

/// Pins the calling thread to `cpu` and opens `backend`'s endpoint set as `end`.
fn open_set(
    backend: Backend,
    end: End,
    ifname: &str,
    cfg: &L2UdpConfig,
    cpu: usize,
) -> std::result::Result<Box<dyn EndpointSet>, String> {
    let kernel_addr = end.kernel_addr();
    sys::pin_current_thread(cpu).map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))?;
    Ok(match backend {
        Backend::Kernel => Box::new(
            KernelUdp::bind(kernel_addr)
                .map_err(|e| format!("cannot bind a UDP socket to {kernel_addr}: {e}"))?,
        ),
        Backend::Rawsock => {
            Box::new(L2UdpEndpoints::open_rawsock(ifname, cfg).map_err(|e| e.to_string())?)
        }
        Backend::Rudp => Box::new(
            RUdpEndpoints::open_rawsock(ifname, cfg, end.peers(cfg.endpoints))
                .map_err(|e| e.to_string())?,
        ),
        #[cfg(feature = "pcap")]
        Backend::Pcap => {
            Box::new(L2UdpEndpoints::open_pcap(ifname, cfg).map_err(|e| e.to_string())?)
        }
        #[cfg(feature = "xdp")]
        Backend::Xdp(queues) => {
            let relay = crate::xdp::open_xdp_relay(ifname, cfg.pcap.as_deref(), queues)
                .map_err(|e| e.to_string())?;
            let mut set = L2UdpEndpoints::on_relay(relay, cfg).map_err(|e| e.to_string())?;
            set.set_backend_name(backend.name());
            Box::new(set)
        }
        #[cfg(feature = "xdp")]
        Backend::XdpRudp(queues) => {
            let relay = crate::xdp::open_xdp_relay(ifname, cfg.pcap.as_deref(), queues)
                .map_err(|e| e.to_string())?;
            let mut set = RUdpEndpoints::on_relay(relay, cfg, end.peers(cfg.endpoints))
                .map_err(|e| e.to_string())?;
            set.set_backend_name(backend.name());
            Box::new(set)
        }
    })
}
