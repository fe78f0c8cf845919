//! Every `unsafe` operation of the crate, each behind a safe function or type whose
//! invariants make it sound:
//!
//! - interface queries (`if_nametoindex`, `SIOCGIFFLAGS`, `SIOCGIFHWADDR`, `ETHTOOL_GCHANNELS`);
//! - [`XskRx`] and [`XskTx`], the two halves of one queue's AF_XDP socket over xsk-rs, whose
//!   ring and UMEM calls are `unsafe` because xsk-rs cannot check that a frame descriptor
//!   belongs to the UMEM and is not in the kernel's hands. Each half owns a fixed set of the
//!   UMEM's frames (the receive half the first `rx_frames`, the send half the rest) and tracks
//!   every one of them: a descriptor is either in the half's free list or in one of its rings,
//!   never both, and only descriptors from that set are ever handed to a ring.

use std::ffi::CString;
use std::io::{self, Write};
use std::mem;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

/// The index of interface `name` in the calling thread's network namespace (`ENODEV` when
/// there is none, also for names that are empty, too long or hold a NUL byte).
pub(crate) fn if_nametoindex(name: &str) -> io::Result<u32> {
    let cname = ifname_c(name)?;
    // SAFETY: `cname` is a valid NUL-terminated string that lives across the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

fn ifname_c(name: &str) -> io::Result<CString> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))
}

/// What the relay needs to know of an interface before it attaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InterfaceInfo {
    /// `IFF_UP`.
    pub up: bool,
    /// The interface's own MAC address.
    pub mac: [u8; 6],
    /// Receive queues (rx plus combined channels; 1 when the driver does not say).
    pub rx_queues: u32,
    /// The interface's MTU (`SIOCGIFMTU`): bytes after the Ethernet header.
    pub mtu: u32,
}

/// A datagram socket to run interface ioctls on, in the calling thread's namespace.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments; no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An `ifreq` naming `name`, with the rest zeroed.
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let cname = ifname_c(name)?;
    // SAFETY: ifreq is a plain C struct (name array + union of plain fields) for which
    // all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(cname.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    Ok(ifr)
}

fn ioctl(fd: RawFd, request: libc::c_ulong, ifr: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every request passed here (SIOCGIFFLAGS, SIOCGIFHWADDR, SIOCGIFMTU, SIOCETHTOOL) reads the
    // NUL-terminated name of the live `ifr` and writes only within it (or, for SIOCETHTOOL,
    // within the buffer its `ifru_data` points at, which the caller keeps alive).
    let r = unsafe { libc::ioctl(fd, request as _, ptr::from_mut(ifr)) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `ETHTOOL_GCHANNELS`'s argument (linux/ethtool.h `struct ethtool_channels`).
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// Flags, MAC, MTU and queue count of interface `name`.
pub(crate) fn interface_info(name: &str) -> io::Result<InterfaceInfo> {
    let sock = ioctl_socket()?;
    let fd = sock.as_raw_fd();

    let mut ifr = ifreq(name)?;
    ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr)?;
    // SAFETY: after a successful SIOCGIFFLAGS the kernel has written `ifru_flags`; the union
    // holds plain integers, so reading this member is valid whatever was written.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };

    let mut ifr = ifreq(name)?;
    ioctl(fd, libc::SIOCGIFHWADDR, &mut ifr)?;
    // SAFETY: after a successful SIOCGIFHWADDR the kernel has written `ifru_hwaddr`, a plain
    // sockaddr whose `sa_data` starts with the hardware address.
    let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *d = *s as u8;
    }

    let mut ifr = ifreq(name)?;
    ioctl(fd, libc::SIOCGIFMTU, &mut ifr)?;
    // SAFETY: after a successful SIOCGIFMTU the kernel has written `ifru_mtu`, a plain
    // integer of the union.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };

    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    let mut ifr = ifreq(name)?;
    ifr.ifr_ifru.ifru_data = ptr::from_mut(&mut ch).cast();
    let rx_queues = match ioctl(fd, libc::SIOCETHTOOL, &mut ifr) {
        Ok(()) => (ch.rx_count + ch.combined_count).max(1),
        Err(_) => 1,
    };
    Ok(InterfaceInfo {
        up: flags & libc::IFF_UP as libc::c_short != 0,
        mac,
        rx_queues,
        mtu: u32::try_from(mtu).unwrap_or(0),
    })
}

/// How the socket of one queue moves frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindMode {
    /// The driver writes into and reads from the UMEM directly.
    ZeroCopy,
    /// The kernel copies each frame between its buffers and the UMEM (what veth offers).
    Copy,
}

/// Sizes of one queue's UMEM and rings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct XskSizes {
    /// Bytes per UMEM frame (a power of two, at least 2048).
    pub frame_size: u32,
    /// Frames for receiving; also the fill and receive ring sizes (a power of two).
    pub rx_frames: u32,
    /// Frames for sending; also the send and completion ring sizes (a power of two).
    pub tx_frames: u32,
}

/// Why a queue's socket could not be set up.
#[derive(Debug)]
pub(crate) enum XskSetupError {
    /// A size xsk-rs refuses (not a power of two, too small).
    Sizes(String),
    /// Creating the UMEM failed.
    Umem(io::Error),
    /// Creating or binding the socket failed.
    Socket(io::Error),
}

/// The receive half of one queue's AF_XDP socket: its fill and receive rings and frames.
#[derive(Debug)]
pub(crate) struct XskRx {
    umem: Umem,
    fill: FillQueue,
    rx: RxQueue,
    /// Receive frames not in a ring (normally none: every consumed frame goes straight back).
    free: Vec<FrameDesc>,
    /// Descriptors of the batch being consumed.
    batch: Vec<FrameDesc>,
    need_wakeup: bool,
}

/// The send half of one queue's AF_XDP socket: its send and completion rings and frames.
#[derive(Debug)]
pub(crate) struct XskTx {
    umem: Umem,
    tx: TxQueue,
    comp: CompQueue,
    /// Send frames not in a ring, ready to be written.
    free: Vec<FrameDesc>,
    /// Descriptors being produced.
    scratch: Vec<FrameDesc>,
    /// Completions being consumed: room for every send frame, made once.
    completed: Vec<FrameDesc>,
    /// Usable bytes per frame (the frame size less the kernel's XDP headroom).
    room: usize,
    need_wakeup: bool,
}

/// Opens the AF_XDP socket of queue `queue` of `ifname` with its own UMEM, bound in zero-copy
/// mode when `zero_copy` is `Some(true)`, in copy mode when `Some(false)`, and trying zero-copy
/// then copy when `None`. libxdp is told not to load a program (the relay loads its own and
/// puts the socket in its map). Returns both halves, the socket's fd (for the XSKMAP) and the
/// mode it is bound in.
pub(crate) fn open_xsk(
    ifname: &str,
    queue: u32,
    sizes: XskSizes,
    zero_copy: Option<bool>,
    need_wakeup: bool,
) -> Result<(XskRx, XskTx, RawFd, BindMode), XskSetupError> {
    let bad = |e: &dyn std::fmt::Display| XskSetupError::Sizes(e.to_string());
    let rx_q = QueueSize::new(sizes.rx_frames).map_err(|e| bad(&e))?;
    let tx_q = QueueSize::new(sizes.tx_frames).map_err(|e| bad(&e))?;
    let umem_cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(sizes.frame_size).map_err(|e| bad(&e))?)
        .fill_queue_size(rx_q)
        .comp_queue_size(tx_q)
        .build()
        .map_err(|e| bad(&e))?;
    let total = sizes
        .rx_frames
        .checked_add(sizes.tx_frames)
        .and_then(NonZeroU32::new)
        .ok_or_else(|| XskSetupError::Sizes("frame count overflows".into()))?;
    let iface = Interface::new(
        CString::new(ifname).map_err(|_| XskSetupError::Socket(io::ErrorKind::NotFound.into()))?,
    );
    let modes: &[BindMode] = match zero_copy {
        Some(true) => &[BindMode::ZeroCopy],
        Some(false) => &[BindMode::Copy],
        None => &[BindMode::ZeroCopy, BindMode::Copy],
    };
    let mut last_err = None;
    for &mode in modes {
        // A UMEM per attempt: a failed bind leaves libxdp's context for it half made.
        let (umem, mut frames) =
            Umem::new(umem_cfg, total, false).map_err(|e| XskSetupError::Umem(umem_io(&e)))?;
        let mut bind = match mode {
            BindMode::ZeroCopy => BindFlags::XDP_ZEROCOPY,
            BindMode::Copy => BindFlags::XDP_COPY,
        };
        if need_wakeup {
            bind |= BindFlags::XDP_USE_NEED_WAKEUP;
        }
        let sock_cfg = SocketConfig::builder()
            .rx_queue_size(rx_q)
            .tx_queue_size(tx_q)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(bind)
            .build();
        // SAFETY: the UMEM is fresh and not shared with any other socket, so the
        // shared-UMEM double-free condition of `Socket::new` cannot arise (and
        // INHIBIT_PROG_LOAD is set anyway).
        let created = unsafe { Socket::new(sock_cfg, &umem, &iface, queue) };
        let (tx, rx, rings) = match created {
            Ok(v) => v,
            Err(e) => {
                last_err = Some(socket_io(&e));
                continue;
            }
        };
        let Some((mut fill, comp)) = rings else {
            return Err(XskSetupError::Socket(io::Error::other(
                "libxdp returned no fill/completion rings for a fresh UMEM",
            )));
        };
        let fd = rx.fd().as_raw_fd();
        let tx_frames = frames.split_off(sizes.rx_frames as usize);
        // SAFETY: `frames` are the UMEM's first `rx_frames` descriptors as `Umem::new` made
        // them, none of them in any ring yet.
        let filled = unsafe { fill.produce(&frames) };
        let free = if filled == frames.len() {
            Vec::with_capacity(frames.len())
        } else {
            frames.clone()
        };
        let room = umem_cfg.mtu() as usize;
        let batch = vec![FrameDesc::default(); frames.len()];
        let rxh = XskRx {
            umem: umem.clone(),
            fill,
            rx,
            free,
            batch,
            need_wakeup,
        };
        let scratch = Vec::with_capacity(tx_frames.len());
        let completed = vec![FrameDesc::default(); tx_frames.len()];
        let txh = XskTx {
            umem,
            tx,
            comp,
            free: tx_frames,
            scratch,
            completed,
            room,
            need_wakeup,
        };
        return Ok((rxh, txh, fd, mode));
    }
    Err(XskSetupError::Socket(last_err.unwrap_or_else(|| {
        io::Error::other("no bind mode was tried")
    })))
}

fn umem_io(e: &xsk_rs::umem::UmemCreateError) -> io::Error {
    match std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>()) {
        Some(io) => io::Error::new(io.kind(), e.to_string()),
        None => io::Error::other(e.to_string()),
    }
}

fn socket_io(e: &xsk_rs::socket::SocketCreateError) -> io::Error {
    match std::error::Error::source(e).and_then(|s| s.downcast_ref::<io::Error>()) {
        Some(io) => match io.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(io.kind(), e.to_string()),
        },
        None => io::Error::other(e.to_string()),
    }
}

impl XskRx {
    /// Takes up to `max` received frames, hands each to `f` and gives the frames back to the
    /// fill ring. Returns how many frames were received.
    pub fn receive(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        self.refill();
        let max = max.min(self.batch.len());
        // SAFETY: `batch` only receives descriptors from this socket's receive ring, which
        // the kernel fills with frames of this socket's UMEM.
        let n = unsafe { self.rx.consume(&mut self.batch[..max]) };
        for d in &self.batch[..n] {
            // SAFETY: `d` was just consumed from the receive ring: a frame of this UMEM that
            // the kernel has handed back and that is in no ring until it is produced to the
            // fill ring below, after this read.
            let data = unsafe { self.umem.data(d) };
            f(data.contents());
        }
        if n > 0 {
            // SAFETY: these descriptors are this UMEM's frames, consumed above and no longer
            // read; the fill ring has room for them unless some wait in `free` (then they
            // join those and go back in `refill`).
            let put = unsafe { self.fill.produce(&self.batch[..n]) };
            if put < n {
                self.free.extend_from_slice(&self.batch[..n]);
            }
            // A zero-copy driver that ran out of fill frames sleeps until it is woken; copy
            // mode never sets the flag.
            if self.need_wakeup && self.fill.needs_wakeup() {
                let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
            }
        }
        n
    }

    /// Puts frames held back (when the fill ring was full) into the fill ring.
    fn refill(&mut self) {
        if self.free.is_empty() {
            return;
        }
        // SAFETY: `free` holds this UMEM's receive frames that are in no ring.
        let put = unsafe { self.fill.produce(&self.free) };
        if put == self.free.len() {
            self.free.clear();
        }
    }

    /// Waits up to `timeout_ms` for frames (waking the driver first when the fill ring asks
    /// for it); `Ok(true)` when some are ready.
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<bool> {
        self.rx.poll(timeout_ms)
    }

    /// The kernel's counters of this socket: (frames dropped for want of room in the receive
    /// ring or other reasons, times the fill ring was empty).
    pub fn kernel_drops(&self) -> io::Result<(u64, u64)> {
        let s = self.rx.fd().xdp_statistics()?;
        Ok((
            s.rx_dropped() + s.rx_ring_full() + s.rx_invalid_descs(),
            s.rx_fill_ring_empty_descs(),
        ))
    }
}

/// Why [`XskTx::send`] stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TxFull {
    /// No free frame or ring slot: completions are pending.
    Busy,
    /// The frame is larger than a UMEM frame.
    TooLarge(usize),
}

impl XskTx {
    /// Usable bytes per frame: the largest frame this half sends.
    pub fn room(&self) -> usize {
        self.room
    }

    /// Takes back the frames whose sending completed.
    pub fn reclaim(&mut self) {
        // Completions come back into `completed`, made with room for every send frame: no
        // allocation, and (unlike resizing a vector per call) no writing of 32 KiB of
        // descriptors per call, which a sender of one frame per call paid for each frame.
        // SAFETY: the completion ring only returns frames this half produced to its send
        // ring: this UMEM's send frames, which the kernel no longer reads.
        let n = unsafe { self.comp.consume(&mut self.completed) };
        self.free.extend_from_slice(&self.completed[..n]);
    }

    /// Copies as many of `frames` as there is room for into free UMEM frames, puts them on
    /// the send ring and kicks the kernel. Returns how many were queued, or why none was.
    pub fn send(&mut self, frames: &[&[u8]]) -> Result<usize, TxFull> {
        self.reclaim();
        for f in frames {
            if f.len() > self.room {
                if self.scratch.is_empty() {
                    return Err(TxFull::TooLarge(f.len()));
                }
                break;
            }
            let Some(mut d) = self.free.pop() else { break };
            {
                // SAFETY: `d` came from `free`: a send frame of this UMEM in no ring, which
                // nothing else reads or writes until it is produced below.
                let mut data = unsafe { self.umem.data_mut(&mut d) };
                let mut cur = data.cursor();
                cur.set_pos(0);
                // Cannot fail: the frame fits (checked against `room` above).
                let _ = cur.write_all(f);
            }
            self.scratch.push(d);
        }
        if self.scratch.is_empty() {
            return Err(TxFull::Busy);
        }
        // SAFETY: `scratch` holds this UMEM's send frames just written, in no ring.
        let n = unsafe { self.tx.produce(&self.scratch) };
        if n == 0 {
            // The send ring is full: the frames go back to the free list unsent.
            self.free.append(&mut self.scratch);
            self.kick();
            return Err(TxFull::Busy);
        }
        self.scratch.clear();
        self.kick();
        Ok(n)
    }

    /// Tells the kernel to send what is on the ring: always in copy mode without
    /// need-wakeup (the kernel sends only from `sendto`), else when the ring asks for it.
    pub fn kick(&self) {
        if !self.need_wakeup || self.tx.needs_wakeup() {
            let _ = self.tx.wakeup();
        }
    }
}
