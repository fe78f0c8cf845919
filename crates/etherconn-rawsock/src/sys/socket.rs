//! The socket itself: `socket`, `bind`, socket options (ring aside), classic BPF filters, the
//! interface `ioctl`s and the send calls (`send`, `sendmmsg`).

use std::ffi::CString;
use std::io;
use std::mem::{self, size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

use super::cvt::{cvt, cvt_size};

/// `ETH_P_ALL`: bind with this protocol to receive every EtherType.
pub const ETH_P_ALL: u16 = libc::ETH_P_ALL as u16;

/// `PACKET_FANOUT_HASH`: spread by flow hash.
pub const PACKET_FANOUT_HASH: u16 = libc::PACKET_FANOUT_HASH as u16;
/// `PACKET_FANOUT_LB`: round robin.
pub const PACKET_FANOUT_LB: u16 = libc::PACKET_FANOUT_LB as u16;
/// `PACKET_FANOUT_CPU`: by the CPU the frame arrived on.
pub const PACKET_FANOUT_CPU: u16 = libc::PACKET_FANOUT_CPU as u16;
/// `PACKET_FANOUT_QM`: by the frame's receive queue.
pub const PACKET_FANOUT_QM: u16 = libc::PACKET_FANOUT_QM as u16;

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
///
/// `etherconn_core::bpf::Instruction` has the same layout; a program built there is attached
/// with [`Socket::attach_filter`] or [`PacketSocket::set_filter`](crate::PacketSocket::set_filter).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockFilter {
    /// Opcode (`BPF_LD | BPF_H | BPF_ABS`, ...).
    pub code: u16,
    /// Jump offset if the condition is true.
    pub jt: u8,
    /// Jump offset if the condition is false.
    pub jf: u8,
    /// Generic operand (constant, offset, ...).
    pub k: u32,
}

impl SockFilter {
    /// An instruction from its four fields.
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Self {
        SockFilter { code, jt, jf, k }
    }

    /// A one-instruction program that drops every frame (`ret #0`).
    pub const REJECT_ALL: [SockFilter; 1] = [SockFilter::new(0x06, 0, 0, 0)];
    /// A one-instruction program that accepts every frame whole (`ret #0x40000`).
    pub const ACCEPT_ALL: [SockFilter; 1] = [SockFilter::new(0x06, 0, 0, 0x0004_0000)];
}

impl From<(u16, u8, u8, u32)> for SockFilter {
    fn from((code, jt, jf, k): (u16, u8, u8, u32)) -> Self {
        SockFilter { code, jt, jf, k }
    }
}

// The kernel reads `SockFilter`s as `struct sock_filter`s.
const _: () = assert!(size_of::<SockFilter>() == size_of::<libc::sock_filter>());
const _: () = assert!(mem::align_of::<SockFilter>() == mem::align_of::<libc::sock_filter>());

/// Marker for the plain C structs passed to `setsockopt`/`getsockopt`: every bit pattern is a
/// valid value, so the kernel may write any bytes into one.
pub(super) trait PlainData: Copy {}
impl PlainData for libc::c_int {}
impl PlainData for libc::tpacket_req3 {}
impl PlainData for libc::packet_mreq {}
impl PlainData for libc::tpacket_stats_v3 {}

/// The index of the network interface `name` in the calling thread's network namespace.
///
/// Fails with `ENODEV` when there is no such interface (also for names that are empty, too
/// long or contain a NUL byte).
pub fn if_nametoindex(name: &str) -> io::Result<u32> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENODEV));
    }
    let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: `cname` is a valid NUL-terminated string that lives across the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// Flags of a network interface, as returned by `SIOCGIFFLAGS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceFlags(pub u32);

impl InterfaceFlags {
    /// `IFF_UP`: administratively up.
    pub fn is_up(self) -> bool {
        self.0 & libc::IFF_UP as u32 != 0
    }

    /// `IFF_RUNNING`: operationally up (carrier present).
    pub fn is_running(self) -> bool {
        self.0 & libc::IFF_RUNNING as u32 != 0
    }
}

/// An `AF_PACKET` socket (or any other socket the wrappers apply to); closed on drop.
///
/// Owns its file descriptor and is deliberately not `Clone`: exactly one value closes it.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// `socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(protocol))`.
    ///
    /// With `protocol` 0 the socket receives nothing until it is bound with a protocol, which
    /// lets the caller configure it (filter, ring) before the first frame arrives.
    pub fn packet_raw(protocol: u16) -> io::Result<Socket> {
        // SAFETY: socket() takes only integers and returns a new descriptor or -1.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::c_int::from(protocol.to_be()),
            )
        })?;
        // SAFETY: `fd` was just returned by socket(), is open and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Socket { fd })
    }

    /// `bind` to `sockaddr_ll { sll_ifindex: ifindex, sll_protocol: htons(protocol) }`.
    ///
    /// Protocol [`ETH_P_ALL`] receives every EtherType; protocol 0 only selects the interface
    /// for sending and receives nothing.
    pub fn bind_link(&self, ifindex: u32, protocol: u16) -> io::Result<()> {
        let ifindex = libc::c_int::try_from(ifindex)
            .map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
        // SAFETY: sockaddr_ll is a plain C struct for which all-zero bytes are a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = protocol.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: the pointer and length describe `sll`, a live sockaddr_ll; the kernel only
        // reads it during the call.
        cvt(unsafe {
            libc::bind(
                self.fd.as_raw_fd(),
                ptr::addr_of!(sll).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    pub(super) fn setsockopt<T: PlainData>(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: &T,
    ) -> io::Result<()> {
        // SAFETY: the pointer and length describe `*value`, a live plain C value; the kernel
        // only reads it during the call.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                ptr::from_ref(value).cast::<libc::c_void>(),
                size_of::<T>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    fn getsockopt<T: PlainData>(&self, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
        let mut value = MaybeUninit::<T>::zeroed();
        let mut len = size_of::<T>() as libc::socklen_t;
        // SAFETY: the pointer and length describe `value`, writable storage of size_of::<T>()
        // bytes; the kernel writes at most `len` bytes and updates `len`.
        cvt(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                value.as_mut_ptr().cast::<libc::c_void>(),
                &mut len,
            )
        })?;
        // SAFETY: `value` started zeroed and the kernel wrote at most its size into it; every
        // bit pattern is a valid `T` (PlainData).
        Ok(unsafe { value.assume_init() })
    }

    pub(super) fn set_int(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        self.setsockopt(level, name, &value)
    }
    /// `PACKET_AUXDATA`: VLAN and length metadata with every `recvmsg`.
    pub fn set_auxdata(&self, on: bool) -> io::Result<()> {
        self.set_int(libc::SOL_PACKET, libc::PACKET_AUXDATA, on.into())
    }

    /// `PACKET_IGNORE_OUTGOING`: do not receive frames sent from this host.
    pub fn set_ignore_outgoing(&self, on: bool) -> io::Result<()> {
        self.set_int(libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, on.into())
    }

    /// `PACKET_QDISC_BYPASS`: hand sent frames straight to the driver, skipping the qdisc
    /// layer (and with it local packet taps such as tcpdump on the same interface).
    pub fn set_qdisc_bypass(&self, on: bool) -> io::Result<()> {
        self.set_int(libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, on.into())
    }

    /// `PACKET_ADD_MEMBERSHIP` with `PACKET_MR_PROMISC` on `ifindex`: promiscuous mode for as
    /// long as this socket is open.
    pub fn add_promiscuous_membership(&self, ifindex: u32) -> io::Result<()> {
        let mreq = libc::packet_mreq {
            mr_ifindex: libc::c_int::try_from(ifindex)
                .map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?,
            mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        self.setsockopt(libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
    }

    /// `PACKET_FANOUT`: join fanout group `group` with `mode` (one of the `PACKET_FANOUT_*`
    /// constants, no flags). The socket must be bound first.
    pub fn join_fanout(&self, group: u16, mode: u16) -> io::Result<()> {
        let arg = u32::from(group) | (u32::from(mode) << 16);
        self.set_int(libc::SOL_PACKET, libc::PACKET_FANOUT, arg as libc::c_int)
    }

    /// `SO_RCVBUF`, or `SO_RCVBUFFORCE` (needs `CAP_NET_ADMIN`) when `force`.
    pub fn set_recv_buffer(&self, bytes: usize, force: bool) -> io::Result<()> {
        let name = if force {
            libc::SO_RCVBUFFORCE
        } else {
            libc::SO_RCVBUF
        };
        self.set_int(libc::SOL_SOCKET, name, clamp_int(bytes))
    }

    /// `SO_SNDBUF`, or `SO_SNDBUFFORCE` (needs `CAP_NET_ADMIN`) when `force`.
    pub fn set_send_buffer(&self, bytes: usize, force: bool) -> io::Result<()> {
        let name = if force {
            libc::SO_SNDBUFFORCE
        } else {
            libc::SO_SNDBUF
        };
        self.set_int(libc::SOL_SOCKET, name, clamp_int(bytes))
    }

    /// The `SO_SNDBUF` in force (the kernel doubles what was set).
    pub fn send_buffer(&self) -> io::Result<usize> {
        let n: libc::c_int = self.getsockopt(libc::SOL_SOCKET, libc::SO_SNDBUF)?;
        Ok(n.max(0) as usize)
    }

    /// `SO_ATTACH_FILTER`: replace the socket's classic BPF filter with `program`.
    ///
    /// The kernel checks the program and swaps it in atomically: no frame is seen by neither
    /// or both filters.
    pub fn attach_filter(&self, program: &[SockFilter]) -> io::Result<()> {
        let len =
            u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let prog = libc::sock_fprog {
            len,
            // The kernel only reads the program; the cast to *mut is what the C struct wants.
            filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
        };
        // SAFETY: `prog` points at `len` live SockFilters, which have sock_filter's layout
        // (asserted above); the kernel copies the program during the call and keeps no pointer.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                ptr::addr_of!(prog).cast::<libc::c_void>(),
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })?;
        Ok(())
    }

    /// `SO_DETACH_FILTER`: remove the filter. Fails with `ENOENT` if there is none.
    pub fn detach_filter(&self) -> io::Result<()> {
        self.set_int(libc::SOL_SOCKET, libc::SO_DETACH_FILTER, 0)
    }

    /// `PACKET_STATISTICS` for a `TPACKET_V3` socket: `(tp_packets, tp_drops, tp_freeze_q_cnt)`.
    ///
    /// The kernel resets its counters on every read. `tp_packets` counts every frame that
    /// passed the filter, the dropped ones included.
    pub fn packet_stats_v3(&self) -> io::Result<(u32, u32, u32)> {
        let s: libc::tpacket_stats_v3 =
            self.getsockopt(libc::SOL_PACKET, libc::PACKET_STATISTICS)?;
        Ok((s.tp_packets, s.tp_drops, s.tp_freeze_q_cnt))
    }

    /// `SO_ERROR`: takes (and clears) the socket's pending error, such as `ENETDOWN` after its
    /// interface went down.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        let e: libc::c_int = self.getsockopt(libc::SOL_SOCKET, libc::SO_ERROR)?;
        Ok((e != 0).then(|| io::Error::from_raw_os_error(e)))
    }

    /// An `ifreq` naming interface `name`, the rest zeroed; `ENODEV` for a name the kernel
    /// could not hold.
    fn ifreq(name: &str) -> io::Result<libc::ifreq> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        // SAFETY: ifreq is a plain C struct (name array + union of plain fields) for which
        // all-zero bytes are a valid value.
        let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        Ok(ifr)
    }

    /// `SIOCGIFFLAGS` for interface `name`, in the network namespace of this socket.
    pub fn interface_flags(&self, name: &str) -> io::Result<InterfaceFlags> {
        let mut ifr = Self::ifreq(name)?;
        // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name (the array is zero-filled past it)
        // and writes a short into the union of the live `ifr`, which outlives the call.
        cvt(unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SIOCGIFFLAGS as _,
                ptr::addr_of_mut!(ifr),
            )
        })?;
        // SAFETY: after a successful SIOCGIFFLAGS the kernel has written `ifru_flags`; the
        // union holds plain integers so reading this member is valid whatever was written.
        let flags = unsafe { ifr.ifr_ifru.ifru_flags };
        Ok(InterfaceFlags(u32::from(flags as u16)))
    }

    /// `SIOCGIFMTU` for interface `name`, in the network namespace of this socket: the
    /// largest packet after the link-layer header, bytes.
    pub fn interface_mtu(&self, name: &str) -> io::Result<u32> {
        let mut ifr = Self::ifreq(name)?;
        // SAFETY: SIOCGIFMTU reads the NUL-terminated name (the array is zero-filled past it)
        // and writes an int into the union of the live `ifr`, which outlives the call.
        cvt(unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SIOCGIFMTU as _,
                ptr::addr_of_mut!(ifr),
            )
        })?;
        // SAFETY: after a successful SIOCGIFMTU the kernel has written `ifru_mtu`; the union
        // holds plain integers so reading this member is valid whatever was written.
        let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
        u32::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// `send(frame, MSG_DONTWAIT)` on a bound socket: one frame to the bound interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        // SAFETY: the pointer and length describe `frame`, which the kernel only reads.
        cvt_size(unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast::<libc::c_void>(),
                frame.len(),
                libc::MSG_DONTWAIT,
            )
        })
    }

    /// `sendmmsg(MSG_DONTWAIT)` of `frames` (at most `scratch.capacity()` of them) on a bound
    /// socket. Returns how many were sent, which may be fewer than given; an error means the
    /// first one failed.
    pub fn send_batch<'a, I>(&self, scratch: &mut SendScratch, frames: I) -> io::Result<usize>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut count = 0;
        for ((frame, iov), msg) in frames
            .into_iter()
            .zip(scratch.iov.iter_mut())
            .zip(scratch.msgs.iter_mut())
        {
            iov.iov_base = frame.as_ptr().cast_mut().cast::<libc::c_void>();
            iov.iov_len = frame.len();
            msg.msg_hdr.msg_iov = ptr::from_mut(iov);
            msg.msg_hdr.msg_iovlen = 1;
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        // SAFETY: the first `count` mmsghdrs each point at one iovec of `scratch`, and each
        // iovec at a frame borrowed for this whole call; no names or control buffers are set.
        // The kernel reads them and writes only `msg_len` fields inside `scratch`.
        let sent = cvt(unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                scratch.msgs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        });
        scratch.forget_frames(count);
        sent.map(|n| n as usize)
    }
}

fn clamp_int(bytes: usize) -> libc::c_int {
    bytes.min(libc::c_int::MAX as usize) as libc::c_int
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<Socket> for OwnedFd {
    fn from(s: Socket) -> OwnedFd {
        s.fd
    }
}

/// Preallocated `mmsghdr`/`iovec` arrays for [`Socket::send_batch`], so that a batched send
/// allocates nothing.
pub struct SendScratch {
    iov: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
}

// SAFETY: the raw pointers inside are written by `send_batch` right before its sendmmsg call
// and nulled right after it; between calls they point at nothing, so moving the arrays to
// another thread cannot let anything be reached through them.
unsafe impl Send for SendScratch {}

impl SendScratch {
    /// Arrays for batches of up to `capacity` frames.
    pub fn new(capacity: usize) -> SendScratch {
        // SAFETY: iovec and mmsghdr are plain C structs for which all-zero bytes (null
        // pointers, zero lengths) are a valid value.
        let zero_iov: libc::iovec = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let zero_msg: libc::mmsghdr = unsafe { mem::zeroed() };
        SendScratch {
            iov: vec![zero_iov; capacity].into_boxed_slice(),
            msgs: vec![zero_msg; capacity].into_boxed_slice(),
        }
    }

    /// The largest batch one call can send.
    pub fn capacity(&self) -> usize {
        self.msgs.len()
    }

    fn forget_frames(&mut self, count: usize) {
        for (iov, msg) in self.iov.iter_mut().zip(self.msgs.iter_mut()).take(count) {
            iov.iov_base = ptr::null_mut();
            iov.iov_len = 0;
            msg.msg_hdr.msg_iov = ptr::null_mut();
        }
    }
}

impl std::fmt::Debug for SendScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendScratch")
            .field("capacity", &self.capacity())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_interface_names_are_enodev() {
        let long = "x".repeat(libc::IFNAMSIZ);
        for name in ["", "a\0b", long.as_str()] {
            let e = if_nametoindex(name).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{name:?}");
        }
        // Every network namespace has a loopback interface.
        assert!(if_nametoindex("lo").unwrap() > 0);
    }

    #[test]
    fn send_scratch_starts_empty() {
        let s = SendScratch::new(4);
        assert_eq!(s.capacity(), 4);
        assert!(s.iov.iter().all(|v| v.iov_base.is_null() && v.iov_len == 0));
        assert!(s.msgs.iter().all(|m| m.msg_hdr.msg_iov.is_null()));
    }
}
