//! [`Capture`]: every frame a relay sends and receives, or those of chosen endpoints, written to
//! a pcapng file by a thread of its own.
//!
//! A relay calls one hook, [`Capture::record`], for each frame it receives (before any check,
//! with the VLAN tag the kernel moved out) and each frame it sent. The hook copies the frame,
//! with that tag put back, into one of a fixed set of preallocated slots and hands it to the
//! writer thread through a lock-free queue; it never waits and never allocates: when every
//! slot is taken (the writer is behind) the frame is dropped from the capture and counted
//! (`capture_dropped`). The writer writes a pcapng file (one section, one Ethernet interface
//! with nanosecond timestamps, one Enhanced Packet Block per frame with its direction in
//! `epb_flags`) through the `pcap-file` crate, flushes whenever it runs out of frames, and
//! closes the file when the capture closes (the relay's `stop`, or drop).
//!
//! The modules build on each other in this order: `handoff` (the slots), `writer` (the
//! writer thread), this one.

pub(crate) mod handoff;
pub(crate) mod writer;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::locks::lock;
use crate::stripe::{self, Padded, STRIPES};
use etherconn_core::key::VlanIds;
use etherconn_core::wire::vlan::{self, RestoreTagError, MAX_TAGS};
use etherconn_core::wire::{MacAddr, Tpid, VlanId, VlanTag};
pub use handoff::Direction;
use handoff::Handoff;
use writer::{PcapngSink, WriterEnd};

/// Default number of frame slots between the relay threads and the writer.
pub const DEFAULT_CAPTURE_SLOTS: usize = 4096;

/// The writer's output buffer: frames reach the file in writes of this size while frames
/// keep coming, and at once when they stop.
const FILE_BUFFER: usize = 1 << 20;

/// An endpoint whose frames a capture keeps: a MAC address and the VLAN ids of its tag stack
/// (outermost first). A frame is kept when its destination or its source MAC, with the VLAN
/// ids the frame carries, is one of the chosen endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaptureEndpoint {
    /// The endpoint's MAC address.
    pub mac: MacAddr,
    /// The VLAN ids of its tags, outermost first ([`VlanIds::NONE`] untagged).
    pub vlans: VlanIds,
}

impl CaptureEndpoint {
    /// The endpoint with this MAC and these VLAN ids.
    pub fn new(mac: MacAddr, vlans: VlanIds) -> CaptureEndpoint {
        CaptureEndpoint { mac, vlans }
    }
}

enum Target {
    File(PathBuf),
    Writer(Box<dyn Write + Send>),
}

impl core::fmt::Debug for Target {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Target::File(p) => f.debug_tuple("File").field(p).finish(),
            Target::Writer(_) => f.write_str("Writer(..)"),
        }
    }
}

/// What to capture and where to write it; see [`Dispatcher::start_capture`](crate::Dispatcher::start_capture).
#[derive(Debug)]
pub struct CaptureConfig {
    target: Target,
    slots: usize,
    endpoints: Option<Vec<CaptureEndpoint>>,
    interface_name: Option<String>,
}

impl CaptureConfig {
    /// Every frame, to a pcapng file created (or truncated) at `path`.
    pub fn file(path: impl AsRef<Path>) -> CaptureConfig {
        CaptureConfig::new(Target::File(path.as_ref().to_owned()))
    }

    /// Every frame, as a pcapng stream into `out` (a pipe, a socket, a test's sink). The
    /// writer thread buffers nothing of its own in front of it.
    pub fn writer(out: impl Write + Send + 'static) -> CaptureConfig {
        CaptureConfig::new(Target::Writer(Box::new(out)))
    }

    fn new(target: Target) -> CaptureConfig {
        CaptureConfig {
            target,
            slots: DEFAULT_CAPTURE_SLOTS,
            endpoints: None,
            interface_name: None,
        }
    }

    /// These settings with `n` frame slots (at least 1; default [`DEFAULT_CAPTURE_SLOTS`]):
    /// how far the writer may fall behind before frames are dropped from the capture. Each
    /// slot holds the relay's largest frame plus a VLAN tag, allocated when the capture starts.
    pub fn slots(mut self, n: usize) -> CaptureConfig {
        self.slots = n.max(1);
        self
    }

    /// These settings keeping only the frames of `endpoints` (see [`CaptureEndpoint`]).
    pub fn endpoints(mut self, endpoints: impl IntoIterator<Item = CaptureEndpoint>) -> Self {
        self.endpoints = Some(endpoints.into_iter().collect());
        self
    }

    /// Whether a capture file could be created at `path` (a writable file, or a new one in a
    /// writable directory), without truncating one that is there or leaving a new one
    /// behind: for a tool that checks its command line before it sets anything up.
    pub fn check_file(path: &Path) -> io::Result<()> {
        match OpenOptions::new().write(true).open(path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                OpenOptions::new().write(true).create_new(true).open(path)?;
                std::fs::remove_file(path)
            }
            Err(e) => Err(e),
        }
    }

    /// These settings with the interface's name recorded in the file (`if_name`).
    pub fn interface_name(mut self, name: &str) -> CaptureConfig {
        self.interface_name = Some(name.to_owned());
        self
    }
}

/// Why a capture could not start, or did not write everything it took.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file could not be created, or its headers not written.
    #[error("cannot create the capture file {path}: {source}")]
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing to the capture failed; frames taken after the failure were not written.
    #[error("writing the capture failed: {0}")]
    Write(#[source] Arc<io::Error>),
    /// The writer thread could not be started.
    #[error("cannot start the capture writer thread: {0}")]
    Spawn(#[source] io::Error),
    /// The relay already has a capture (one per relay).
    #[error("the relay already has a capture")]
    AlreadyCapturing,
    /// The relay has stopped.
    #[error("the relay has stopped")]
    Stopped,
}

/// A capture's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CaptureStats {
    /// Frames handed to the writer.
    pub captured: u64,
    /// Frames the writer had no room for (every slot taken): not in the file.
    pub dropped: u64,
    /// Frames written (all of `captured` once the capture is closed, unless writing failed).
    pub written: u64,
}

#[derive(Debug, Default)]
struct Counts {
    captured: AtomicU64,
    dropped: AtomicU64,
}

/// A running capture; a relay holds at most one, in its
/// [`Dispatcher`](crate::Dispatcher) ([`Dispatcher::capture`](crate::Dispatcher::capture)).
///
/// ```
/// use etherconn_relay::{CaptureConfig, DispatcherConfig, LoopbackRelay, PacketRelay};
///
/// let path = std::env::temp_dir().join(format!("doc-capture-{}.pcapng", std::process::id()));
/// let relay = LoopbackRelay::new(DispatcherConfig::default());
/// relay.dispatcher().start_capture(CaptureConfig::file(&path))?;
/// relay.send(&[0xff; 60], None)?; // sent, and received by the loopback: two frames
/// relay.stop(); // closes the capture: the file is complete
/// let st = relay.stats();
/// assert_eq!((st.captured, st.capture_dropped), (2, 0));
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Capture {
    handoff: Arc<Handoff>,
    endpoints: Option<HashSet<(MacAddr, VlanIds), ahash::RandomState>>,
    counts: [Padded<Counts>; STRIPES],
    written: Arc<AtomicU64>,
    writer: Mutex<Option<JoinHandle<WriterEnd>>>,
    /// The writer's first error, once it has ended.
    failure: Mutex<Option<Arc<io::Error>>>,
}

impl Capture {
    /// Creates the file, writes its headers and starts the writer thread; each slot holds
    /// `slot_len` bytes.
    pub(crate) fn start(config: CaptureConfig, slot_len: usize) -> Result<Capture, CaptureError> {
        let snaplen = u32::try_from(slot_len).unwrap_or(u32::MAX);
        let ifname = config.interface_name.as_deref();
        let sink = match config.target {
            Target::File(path) => {
                let made = File::create(&path).and_then(|f| {
                    let out: Box<dyn Write + Send> =
                        Box::new(BufWriter::with_capacity(FILE_BUFFER, f));
                    PcapngSink::new(out, ifname, snaplen)
                });
                made.map_err(|source| CaptureError::Create { path, source })?
            }
            Target::Writer(out) => PcapngSink::new(out, ifname, snaplen)
                .map_err(|e| CaptureError::Write(Arc::new(e)))?,
        };
        let handoff = Arc::new(Handoff::new(config.slots, slot_len));
        let written = Arc::new(AtomicU64::new(0));
        let writer = {
            let handoff = Arc::clone(&handoff);
            let written = Arc::clone(&written);
            std::thread::Builder::new()
                .name("etherconn-capture".into())
                .spawn(move || writer::run(&handoff, sink, &written))
                .map_err(CaptureError::Spawn)?
        };
        Ok(Capture {
            handoff,
            endpoints: config
                .endpoints
                .map(|eps| eps.into_iter().map(|e| (e.mac, e.vlans)).collect()),
            counts: core::array::from_fn(|_| Padded::default()),
            written,
            writer: Mutex::new(Some(writer)),
            failure: Mutex::new(None),
        })
    }

    /// Hands `frame` to the writer: the relay's hook, for every frame it receives (with
    /// `stripped_tag`, the outer VLAN tag the kernel moved out of it, which goes back in) and
    /// every frame it sent. `timestamp` is the time since the Unix epoch (`None`: now).
    ///
    /// Never blocks and allocates nothing; with every slot taken the frame is counted as
    /// dropped. Frames of endpoints the capture does not keep, and frames after the capture
    /// closed, are ignored.
    #[inline]
    pub fn record(
        &self,
        direction: Direction,
        frame: &[u8],
        stripped_tag: Option<VlanTag>,
        timestamp: Option<Duration>,
    ) {
        if self.handoff.is_closed() {
            return;
        }
        if let Some(eps) = &self.endpoints {
            if !keeps(eps, frame, stripped_tag) {
                return;
            }
        }
        let counts = &self.counts[stripe::index()].0;
        let Some(mut slot) = self.handoff.free.pop() else {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        slot.len = copy_restored(frame, stripped_tag, &mut slot.data);
        let wire_len = frame.len()
            + if stripped_tag.is_some() {
                vlan::HEADER_LEN
            } else {
                0
            };
        slot.orig_len = u32::try_from(wire_len).unwrap_or(u32::MAX);
        slot.timestamp = timestamp.unwrap_or_else(now);
        slot.direction = direction;
        self.handoff.hand_over(slot);
        counts.captured.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn stats(&self) -> CaptureStats {
        let mut st = CaptureStats {
            written: self.written.load(Ordering::Relaxed),
            ..CaptureStats::default()
        };
        for c in &self.counts {
            st.captured += c.0.captured.load(Ordering::Relaxed);
            st.dropped += c.0.dropped.load(Ordering::Relaxed);
        }
        st
    }

    /// Whether the capture was closed.
    pub fn is_closed(&self) -> bool {
        self.handoff.is_closed()
    }

    /// Stops taking frames, lets the writer write every frame it was handed, flushes and
    /// closes the file. Idempotent; every call reports the writer's error, if it had one.
    pub fn close(&self) -> Result<CaptureStats, CaptureError> {
        self.handoff.closed.store(true, Ordering::SeqCst);
        self.handoff.bell.ring();
        let handle = lock(&self.writer).take();
        if let Some(h) = handle {
            let end = h.join().unwrap_or(WriterEnd {
                error: Some(io::Error::other("the capture writer thread panicked")),
            });
            if let Some(e) = end.error {
                *lock(&self.failure) = Some(Arc::new(e));
            }
        }
        match &*lock(&self.failure) {
            Some(e) => Err(CaptureError::Write(Arc::clone(e))),
            None => Ok(self.stats()),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Copies `frame` into `out` with `stripped_tag` put back after the MAC addresses, cut to
/// `out`'s length if it does not fit; returns the bytes written.
fn copy_restored(frame: &[u8], stripped_tag: Option<VlanTag>, out: &mut [u8]) -> usize {
    match vlan::restore_tag(frame, stripped_tag, out) {
        Ok(n) => n,
        // Only a stripped tag can make a frame at least as long as `out` not fit.
        Err(RestoreTagError::BufferTooSmall { .. }) if stripped_tag.is_some() && out.len() > 16 => {
            // Longer than any frame the relay handles: keep its head, the tag put back.
            let tag = stripped_tag.map(|t| [t.tpid.get().to_be_bytes(), t.tci().to_be_bytes()]);
            let tag = tag
                .map(|[a, b]| [a[0], a[1], b[0], b[1]])
                .unwrap_or_default();
            out[..12].copy_from_slice(&frame[..12]);
            out[12..16].copy_from_slice(&tag);
            let n = out.len() - 16;
            out[16..].copy_from_slice(&frame[12..12 + n]);
            out.len()
        }
        Err(_) => {
            let n = frame.len().min(out.len());
            out[..n].copy_from_slice(&frame[..n]);
            n
        }
    }
}

/// Whether the capture keeps `frame`: its destination or source MAC, with its VLAN ids, is
/// one of `endpoints`.
fn keeps(
    endpoints: &HashSet<(MacAddr, VlanIds), ahash::RandomState>,
    frame: &[u8],
    stripped_tag: Option<VlanTag>,
) -> bool {
    let Some(vlans) = frame_vlan_ids(frame, stripped_tag) else {
        return false;
    };
    let mac = |at: usize| {
        let mut m = [0u8; 6];
        m.copy_from_slice(&frame[at..at + 6]);
        MacAddr(m)
    };
    endpoints.contains(&(mac(0), vlans)) || endpoints.contains(&(mac(6), vlans))
}

/// The VLAN ids of a frame's tags (an offloaded one first); `None` when the frame is shorter
/// than an Ethernet header or carries more than three ([`MAX_TAGS`]) tags.
fn frame_vlan_ids(frame: &[u8], stripped_tag: Option<VlanTag>) -> Option<VlanIds> {
    const TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
    if frame.len() < 14 {
        return None;
    }
    let mut ids = [VlanId::default(); MAX_TAGS];
    let mut n = 0;
    if let Some(t) = stripped_tag {
        ids[0] = t.id;
        n = 1;
    }
    let mut at = 12;
    while frame.len() >= at + 4 && TPIDS.contains(&u16::from_be_bytes([frame[at], frame[at + 1]])) {
        if n == MAX_TAGS {
            return None;
        }
        let tci = u16::from_be_bytes([frame[at + 2], frame[at + 3]]);
        ids[n] = VlanTag::from_tci(Tpid::DOT1Q, tci).id;
        n += 1;
        at += 4;
    }
    VlanIds::from_ids(&ids[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_ids_of_frames() {
        let mut f = vec![0u8; 60];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(frame_vlan_ids(&f, None), Some(VlanIds::NONE));
        let tag = VlanTag::dot1q(100).unwrap();
        assert_eq!(
            frame_vlan_ids(&f, Some(tag)),
            Some(VlanIds::one(VlanId::new(100).unwrap()))
        );
        f[12..18].copy_from_slice(&[0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00]);
        f[18..20].copy_from_slice(&[0x00, 0x14]);
        assert_eq!(
            frame_vlan_ids(&f, None),
            Some(VlanIds::two(
                VlanId::new(10).unwrap(),
                VlanId::new(20).unwrap()
            ))
        );
        // An offloaded outer tag plus two in the bytes make three.
        let id = |v| VlanId::new(v).unwrap();
        assert_eq!(
            frame_vlan_ids(&f, Some(tag)),
            Some(VlanIds::three(id(100), id(10), id(20)))
        );
        // Three in the bytes, and a fourth (offloaded or in the bytes), which no endpoint has.
        let tagged = |tags: &[(u16, u16)]| {
            let mut f = vec![0u8; 12];
            for (tpid, tci) in tags {
                f.extend_from_slice(&tpid.to_be_bytes());
                f.extend_from_slice(&tci.to_be_bytes());
            }
            f.extend_from_slice(&[0x08, 0x00]);
            f.resize(64, 0);
            f
        };
        let three = tagged(&[(0x9100, 10), (0x88a8, 0xf014), (0x8100, 30)]);
        assert_eq!(
            frame_vlan_ids(&three, None),
            Some(VlanIds::three(id(10), id(20), id(30)))
        );
        assert_eq!(frame_vlan_ids(&three, Some(tag)), None);
        let four = tagged(&[(0x9100, 10), (0x88a8, 20), (0x8100, 30), (0x8100, 40)]);
        assert_eq!(frame_vlan_ids(&four, None), None);
        assert_eq!(frame_vlan_ids(&f[..13], None), None);
    }

    #[test]
    fn oversized_frames_are_cut_with_their_tag_restored() {
        let frame: Vec<u8> = (0..100u8).collect();
        let tag = VlanTag::dot1q(5).unwrap();
        let mut out = [0u8; 50];
        assert_eq!(copy_restored(&frame, Some(tag), &mut out), 50);
        assert_eq!(&out[..12], &frame[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x00, 0x05]);
        assert_eq!(&out[16..50], &frame[12..46]);
        assert_eq!(copy_restored(&frame[..10], None, &mut out), 10);
    }
}
