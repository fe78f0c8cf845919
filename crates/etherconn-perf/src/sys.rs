//! The system calls `std` does not wrap: CPU affinity, stop signals, interface look-ups, forced
//! socket buffer sizes and batched UDP I/O (`sendmmsg`/`recvmmsg`); and the counting global
//! allocator. All of the tool's `unsafe` is here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

/// The most messages one [`send_mmsg_v4`] or [`recv_mmsg_v4`] call takes.
pub const MAX_MMSG: usize = 64;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag ([`stop_requested`]) instead of killing the process, so
/// that the main loop can stop its threads and remove its namespaces.
pub fn install_stop_signals() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is a plain C struct for which all zeros is a valid value (no flags,
        // default handler); the fields that matter are set below.
        let mut action: libc::sigaction = unsafe { mem::zeroed() };
        action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: `sa_mask` is a sigset_t owned by `action`, valid for writes.
        unsafe { libc::sigemptyset(&mut action.sa_mask) };
        // SAFETY: `action` is initialised and outlives the call; the handler only stores to an
        // atomic, which is async-signal-safe; the previous action is not asked for (null).
        let rc = unsafe { libc::sigaction(signal, &action, ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived since [`install_stop_signals`].
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// The tool's global allocator: the system allocator, which also counts the heap bytes live
/// once [`count_heap`] has been called (`scale`'s memory per endpoint).
///
/// Counting is off until asked for so that `bench`, `echo` and `send` pay one load of a flag
/// that does not change under them per allocation, not an atomic add on a cache line that
/// every thread writes.
pub struct CountingAlloc;

static COUNT_HEAP: AtomicBool = AtomicBool::new(false);

/// Bytes allocated minus bytes freed since counting started. Blocks allocated before and freed
/// after take it below what is live (even below 0), so only the difference of two readings
/// means anything.
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

impl CountingAlloc {
    #[inline]
    fn count(grown: usize, shrunk: usize) {
        if COUNT_HEAP.load(Ordering::Relaxed) {
            // A Layout's size is at most isize::MAX, so neither cast wraps.
            LIVE_BYTES.fetch_add(grown as isize - shrunk as isize, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method forwards to the system allocator unchanged; counting has no effect on
// the memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size(), 0);
        // SAFETY: the caller's obligations for `alloc` are passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size(), 0);
        // SAFETY: as for `alloc`; forwarding keeps calloc's lazily zeroed pages, so the RSS
        // figures are those of a program using the system allocator directly.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::count(0, layout.size());
        // SAFETY: `ptr` came from `System` with this layout, via the methods above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count(new_size, layout.size());
        // SAFETY: as for `dealloc`, and `new_size` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Starts counting heap bytes in [`CountingAlloc`], for good.
pub fn count_heap() {
    COUNT_HEAP.store(true, Ordering::SeqCst);
}

/// Heap bytes allocated minus freed by the whole process (every thread) since [`count_heap`];
/// compare two readings.
pub fn live_heap_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// Pins the calling thread (only it) to CPU `cpu`. Threads it spawns afterwards inherit the
/// pinning, which is how a relay's receive thread lands on the receiver's CPU.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    pin_current_thread_to(&[cpu])
}

/// Lets the calling thread (only it) run on the CPUs `cpus` and no others; threads it spawns
/// afterwards inherit the set.
pub fn pin_current_thread_to(cpus: &[usize]) -> io::Result<()> {
    if let Some(&cpu) = cpus.iter().find(|&&c| c >= libc::CPU_SETSIZE as usize) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is out of range"),
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array; all zeros is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `cpu` is below CPU_SETSIZE (checked above), so the bit is inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 names the calling thread; the size and pointer describe `set`, which the
    // kernel only reads.
    let rc = unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The CPUs this process may run on (its affinity mask), in increasing order: what
/// [`pin_current_thread`] accepts.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bit array; all zeros is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: pid 0 names the calling thread; the size and pointer describe `set`, which the
    // kernel writes.
    let rc = unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: every index is below CPU_SETSIZE, inside `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Whether the calling thread's network namespace has an interface named `name`.
pub fn interface_exists(name: &str) -> bool {
    let Ok(c_name) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c_name` is a NUL-terminated string that outlives the call, which only reads it.
    unsafe { libc::if_nametoindex(c_name.as_ptr()) != 0 }
}

/// The MTU of interface `name` (`SIOCGIFMTU`), in the calling thread's network namespace.
pub fn interface_mtu(name: &str) -> io::Result<usize> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: ifreq is plain C data (a name and a union of integers and addresses); all zeros
    // is a valid value.
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    if name.is_empty() || name.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an interface name",
        ));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: plain socket(2) call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `req` is an initialised ifreq with a NUL-terminated name (zeroed, and the name is
    // shorter than the field), valid for the kernel to write the MTU into during the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFMTU filled the union's `ifru_mtu` member.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    usize::try_from(mtu).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative MTU"))
}

/// Sets `SO_SNDBUFFORCE` or `SO_RCVBUFFORCE` (root: ignores `net.core.[rw]mem_max`), falling
/// back to the unforced option when not permitted.
pub fn force_socket_buffer(sock: &UdpSocket, send: bool, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let (forced, plain) = if send {
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)
    } else {
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)
    };
    let set = |name| {
        // SAFETY: the option value is a c_int borrowed for the call, and its size is passed;
        // the descriptor is owned by `sock`, which is borrowed for the call.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                name,
                ptr::from_ref(&value).cast::<libc::c_void>(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    match set(forced) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => set(plain),
        other => other,
    }
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

fn from_sockaddr_in(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(sa.sin_addr.s_addr.to_ne_bytes()),
        u16::from_be(sa.sin_port),
    )
}

fn too_many(n: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{n} messages in one batch; at most {MAX_MMSG}"),
    )
}

/// `sendmmsg` of `payloads[i]` to `dsts[i]` (at most [`MAX_MMSG`]); returns how many the kernel
/// took. Blocks like `send` on a blocking socket.
pub fn send_mmsg_v4(
    sock: &UdpSocket,
    payloads: &[&[u8]],
    dsts: &[SocketAddrV4],
) -> io::Result<usize> {
    let n = payloads.len().min(dsts.len());
    if n > MAX_MMSG {
        return Err(too_many(n));
    }
    if n == 0 {
        return Ok(0);
    }
    let mut names = [sockaddr_in(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); MAX_MMSG];
    // SAFETY: iovec is a pointer and a length; all zeros (null, 0) is a valid value.
    let mut iov: [libc::iovec; MAX_MMSG] = unsafe { mem::zeroed() };
    // SAFETY: mmsghdr is plain C data; all zeros is an empty message with no name or control.
    let mut msgs: [libc::mmsghdr; MAX_MMSG] = unsafe { mem::zeroed() };
    for i in 0..n {
        names[i] = sockaddr_in(dsts[i]);
        iov[i] = libc::iovec {
            iov_base: payloads[i].as_ptr().cast_mut().cast::<libc::c_void>(),
            iov_len: payloads[i].len(),
        };
        msgs[i].msg_hdr.msg_name = ptr::from_mut(&mut names[i]).cast::<libc::c_void>();
        msgs[i].msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msgs[i].msg_hdr.msg_iov = ptr::from_mut(&mut iov[i]);
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first `n` headers point at names and iovecs on this stack frame, and the
    // iovecs at payloads borrowed for the call; the kernel only reads the payloads and writes
    // the `msg_len` fields of `msgs`.
    let rc = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), n as libc::c_uint, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// `recvmmsg(MSG_WAITFORONE)` into `count` buffers of `stride` bytes laid end to end in `bufs`:
/// waits (up to the socket's read timeout) for the first datagram, then takes what is queued.
/// Fills `lens` and `froms`; returns how many arrived. `dontwait` makes it not wait at all.
pub fn recv_mmsg_v4(
    sock: &UdpSocket,
    bufs: &mut [u8],
    stride: usize,
    lens: &mut [usize],
    froms: &mut [SocketAddrV4],
    dontwait: bool,
) -> io::Result<usize> {
    let count = lens.len().min(froms.len());
    if count > MAX_MMSG {
        return Err(too_many(count));
    }
    if count == 0 || stride == 0 || bufs.len() < count * stride {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "receive buffers smaller than count * stride",
        ));
    }
    let mut names = [sockaddr_in(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); MAX_MMSG];
    // SAFETY: iovec is a pointer and a length; all zeros (null, 0) is a valid value.
    let mut iov: [libc::iovec; MAX_MMSG] = unsafe { mem::zeroed() };
    // SAFETY: mmsghdr is plain C data; all zeros is an empty message with no name or control.
    let mut msgs: [libc::mmsghdr; MAX_MMSG] = unsafe { mem::zeroed() };
    for (i, chunk) in bufs.chunks_exact_mut(stride).take(count).enumerate() {
        iov[i] = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast::<libc::c_void>(),
            iov_len: stride,
        };
        msgs[i].msg_hdr.msg_name = ptr::from_mut(&mut names[i]).cast::<libc::c_void>();
        msgs[i].msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        msgs[i].msg_hdr.msg_iov = ptr::from_mut(&mut iov[i]);
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    let flags = if dontwait {
        libc::MSG_DONTWAIT
    } else {
        libc::MSG_WAITFORONE
    };
    // SAFETY: the first `count` headers point at names and iovecs on this stack frame, each
    // iovec at a distinct `stride`-byte chunk of `bufs`, which is mutably borrowed for the
    // call; the kernel writes at most `stride` bytes per chunk, the names and `msg_len`. No
    // timeout pointer is passed.
    let rc = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            msgs.as_mut_ptr(),
            count as libc::c_uint,
            flags,
            ptr::null_mut(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = rc as usize;
    for i in 0..n {
        lens[i] = msgs[i].msg_len as usize;
        froms[i] = from_sockaddr_in(&names[i]);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_and_cpus() {
        assert!(interface_exists("lo"));
        assert!(!interface_exists("no-such-if0"));
        assert!(!interface_exists("bad\0name"));
        assert!(interface_mtu("lo").unwrap() >= 1500);
        assert!(interface_mtu("no-such-if0").is_err());
        assert!(interface_mtu("").is_err());
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        assert!(pin_current_thread(cpus[0]).is_ok());
    }

    #[test]
    fn sockaddr_round_trip() {
        let a = SocketAddrV4::new(Ipv4Addr::new(10, 55, 0, 2), 9000);
        assert_eq!(from_sockaddr_in(&sockaddr_in(a)), a);
    }

    #[test]
    fn batched_udp_on_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let std::net::SocketAddr::V4(dst) = rx.local_addr().unwrap() else {
            unreachable!()
        };
        let sent = send_mmsg_v4(&tx, &[b"one", b"three"], &[dst, dst]).unwrap();
        assert_eq!(sent, 2);
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut bufs = vec![0u8; 4 * 64];
        let mut lens = [0usize; 4];
        let mut froms = [SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0); 4];
        let mut got = 0;
        while got < 2 {
            let n = recv_mmsg_v4(
                &rx,
                &mut bufs[got * 64..],
                64,
                &mut lens[got..],
                &mut froms[got..],
                false,
            )
            .unwrap();
            got += n;
        }
        assert_eq!(&bufs[..lens[0]], b"one");
        assert_eq!(&bufs[64..64 + lens[1]], b"three");
        assert_eq!(std::net::SocketAddr::V4(froms[0]), tx.local_addr().unwrap());
    }
}
