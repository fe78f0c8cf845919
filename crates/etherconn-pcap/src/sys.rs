//! The system calls the `pcap` crate does not offer, and nothing else: installing a classic
//! BPF program given as instructions (`pcap_setfilter`; the crate only compiles filter
//! expressions), running one through libpcap's own interpreter (`pcap_offline_filter`; the
//! crate only runs programs it compiled), on Unix, waiting for a capture descriptor with
//! a timeout (`poll`), and, on Linux, asking the kernel for the interface's MTU
//! (`SIOCGIFMTU`; libpcap has no call for it). Every `unsafe` block of the crate is here.
//!
//! The `pcap` crate links libpcap (or npcap's `wpcap`), so these declarations need no `#[link]`.

use std::ffi::{c_char, c_int, c_long, c_uchar, c_uint, c_void, CStr};

use etherconn_core::bpf::{Instruction, Program};
use pcap::{Active, Capture};

/// `struct bpf_program`.
#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    /// Points at `struct bpf_insn`s, whose layout [`Instruction`] has (`u16`, `u8`, `u8`,
    /// `u32`, `repr(C)`).
    bf_insns: *mut Instruction,
}

/// `struct timeval` as `struct pcap_pkthdr` holds it: two `long`s on Linux (glibc) and
/// Windows alike.
#[repr(C)]
struct TimeVal {
    tv_sec: c_long,
    tv_usec: c_long,
}

/// `struct pcap_pkthdr`.
#[repr(C)]
struct PktHdr {
    ts: TimeVal,
    caplen: u32,
    len: u32,
}

extern "C" {
    fn pcap_setfilter(p: *mut c_void, fp: *mut BpfProgram) -> c_int;
    fn pcap_geterr(p: *mut c_void) -> *mut c_char;
    fn pcap_offline_filter(fp: *const BpfProgram, h: *const PktHdr, pkt: *const c_uchar) -> c_int;
}

/// Installs `program` as the filter of `cap` (`pcap_setfilter`). On Linux libpcap hands it to
/// the kernel (`SO_ATTACH_FILTER`) when the kernel takes it, and runs it itself otherwise.
/// Errors with libpcap's message.
pub fn set_filter(cap: &mut Capture<Active>, program: &[Instruction]) -> Result<(), String> {
    let mut insns = program.to_vec();
    let mut prog = BpfProgram {
        bf_len: c_uint::try_from(insns.len()).map_err(|_| "program too long".to_owned())?,
        bf_insns: insns.as_mut_ptr(),
    };
    let handle = cap.as_ptr().cast::<c_void>();
    // SAFETY: `handle` is the live, activated `pcap_t` owned by `cap`, which is borrowed
    // mutably for the call, so no other thread uses it; `prog` points at `bf_len` instructions
    // in `struct bpf_insn` layout that outlive the call, and libpcap copies them before it
    // returns (the caller may free the program right after `pcap_setfilter`).
    let rc = unsafe { pcap_setfilter(handle, &mut prog) };
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: `pcap_geterr` returns the handle's own NUL-terminated error buffer, valid until
    // the next libpcap call on the handle; it is copied before any.
    let msg = unsafe { CStr::from_ptr(pcap_geterr(handle)) };
    Err(msg.to_string_lossy().into_owned())
}

/// What libpcap's own BPF interpreter (`pcap_offline_filter`) returns for `frame`: nonzero
/// when the program accepts it. The interpreter knows no offloaded VLAN tag (an ancillary
/// load reads past the frame and rejects it). An independent implementation to check
/// `etherconn_core::bpf`'s interpreter and programs against. `None` when the program does not
/// pass [`Program::validate`] (libpcap's interpreter trusts its program) or the frame is
/// longer than 4 GiB.
pub fn libpcap_filter_verdict(program: &Program, frame: &[u8]) -> Option<bool> {
    program.validate().ok()?;
    let program = program.as_slice();
    let bf_len = c_uint::try_from(program.len()).ok()?;
    let len = u32::try_from(frame.len()).ok()?;
    let prog = BpfProgram {
        bf_len,
        // libpcap only reads through this pointer.
        bf_insns: program.as_ptr().cast_mut(),
    };
    let hdr = PktHdr {
        ts: TimeVal {
            tv_sec: 0,
            tv_usec: 0,
        },
        caplen: len,
        len,
    };
    // SAFETY: `prog` points at `bf_len` instructions in `struct bpf_insn` layout and `frame`
    // at `caplen` readable bytes, all alive for the call; `pcap_offline_filter` reads them
    // only, bounds every packet load by `caplen` (returning 0 for a load past it) and keeps
    // no pointer. It does not validate the program; `Program::validate` did above, so every
    // jump lands inside it, every scratch index is in range and it ends with a return.
    let rc = unsafe { pcap_offline_filter(&prog, &hdr, frame.as_ptr()) };
    Some(rc != 0)
}

/// Waits at most `timeout` for `fd` (a capture handle's descriptor) to be readable or to report
/// an error; `Ok(false)` when the time ran out or a signal came first.
#[cfg(unix)]
pub fn wait_readable(
    fd: std::os::fd::BorrowedFd<'_>,
    timeout: std::time::Duration,
) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);
    // SAFETY: `pfd` is one valid `pollfd` that outlives the call, and the count says one;
    // the descriptor is borrowed, so it stays open during the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(rc > 0)
}

/// `SIOCGIFMTU` for interface `name` on `fd` (a capture handle's packet socket), so in the
/// network namespace the handle was opened in: the largest packet after the Ethernet header,
/// bytes. `ENODEV` for a name the kernel could not hold.
#[cfg(target_os = "linux")]
pub fn interface_mtu(fd: std::os::fd::BorrowedFd<'_>, name: &str) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
        return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
    }
    // SAFETY: `ifreq` is a plain C struct (a name array and a union of plain fields) for which
    // all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as c_char;
    }
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name (the array is zero-filled past it, and
    // the name is shorter than it) and writes an int into the union of the live `ifr`, which
    // outlives the call; the descriptor is borrowed, so it stays open during the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU as _, &mut ifr) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: after a successful SIOCGIFMTU the kernel has written `ifru_mtu`; the union holds
    // plain integers, so reading this member is valid whatever was written.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}
