//! Thin safe wrappers over the Linux calls the AF_PACKET backend makes.
//!
//! This is the only module of the crate that contains `unsafe`. Every `unsafe` block wraps one
//! call and says which invariant makes it sound; everything this module exports is safe to call
//! with any arguments. [`ring`](crate::ring), [`tx`](crate::tx) and [`socket`](crate::socket)
//! are built on it; prefer [`PacketSocket`](crate::PacketSocket) unless you need a call it does
//! not make.
//!
//! Integers cross this boundary in host byte order; the conversion to network order for
//! protocol numbers happens here.

use std::ffi::CString;
use std::io;
use std::marker::PhantomData;
use std::mem::{self, size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// `ETH_P_ALL`: bind with this protocol to receive every EtherType.
pub const ETH_P_ALL: u16 = libc::ETH_P_ALL as u16;

/// Block status bit: the block belongs to user space (`TP_STATUS_USER`).
pub const TP_STATUS_USER: u32 = libc::TP_STATUS_USER;
/// Block status value handing a block back to the kernel (`TP_STATUS_KERNEL`).
pub const TP_STATUS_KERNEL: u32 = libc::TP_STATUS_KERNEL;
/// Frame status bit: the kernel moved an outer VLAN tag into the frame header's
/// `tp_vlan_tci` (`TP_STATUS_VLAN_VALID`). Set for VLAN ID 0 too.
pub const TP_STATUS_VLAN_VALID: u32 = libc::TP_STATUS_VLAN_VALID;
/// Frame status bit: the checksum of a locally generated frame is not computed yet (partial
/// checksum offload, as on veth) (`TP_STATUS_CSUMNOTREADY`).
pub const TP_STATUS_CSUMNOTREADY: u32 = libc::TP_STATUS_CSUMNOTREADY;
/// Frame status bit: the driver verified the transport checksum (`TP_STATUS_CSUM_VALID`).
pub const TP_STATUS_CSUM_VALID: u32 = libc::TP_STATUS_CSUM_VALID;
/// Frame status bit: `tp_vlan_tpid` is filled in (`TP_STATUS_VLAN_TPID_VALID`); without it the
/// TPID of an offloaded tag is 0x8100.
pub const TP_STATUS_VLAN_TPID_VALID: u32 = libc::TP_STATUS_VLAN_TPID_VALID;
/// Frame status bit: the ring was full and frames were dropped before this block
/// (`TP_STATUS_LOSING`).
pub const TP_STATUS_LOSING: u32 = libc::TP_STATUS_LOSING;

/// Size of `struct tpacket3_hdr`.
pub const TPACKET3_HDR_SIZE: usize = size_of::<libc::tpacket3_hdr>();
/// Offset of the `struct sockaddr_ll` that follows each `tpacket3_hdr` in the ring
/// (`TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`).
pub const TPACKET3_SLL_OFFSET: usize =
    (TPACKET3_HDR_SIZE + libc::TPACKET_ALIGNMENT - 1) & !(libc::TPACKET_ALIGNMENT - 1);
/// `TPACKET3_HDRLEN`: the smallest valid ring frame size.
pub const TPACKET3_HDRLEN: usize = libc::TPACKET3_HDRLEN;
/// `TPACKET_ALIGNMENT`: ring frame sizes are multiples of this.
pub const TPACKET_ALIGNMENT: usize = libc::TPACKET_ALIGNMENT;

/// `PACKET_FANOUT_HASH`: spread by flow hash.
pub const PACKET_FANOUT_HASH: u16 = libc::PACKET_FANOUT_HASH as u16;
/// `PACKET_FANOUT_LB`: round robin.
pub const PACKET_FANOUT_LB: u16 = libc::PACKET_FANOUT_LB as u16;
/// `PACKET_FANOUT_CPU`: by the CPU the frame arrived on.
pub const PACKET_FANOUT_CPU: u16 = libc::PACKET_FANOUT_CPU as u16;
/// `PACKET_FANOUT_QM`: by the frame's receive queue.
pub const PACKET_FANOUT_QM: u16 = libc::PACKET_FANOUT_QM as u16;

/// `POLLIN`.
pub const POLLIN: i16 = libc::POLLIN;
/// `POLLOUT`.
pub const POLLOUT: i16 = libc::POLLOUT;
/// `POLLERR`.
pub const POLLERR: i16 = libc::POLLERR;

/// Offsets into `struct tpacket_block_desc` and `struct tpacket3_hdr`, for parsing ring
/// memory as bytes.
pub mod offsets {
    use std::mem::offset_of;

    const BH1: usize = offset_of!(libc::tpacket_block_desc, hdr);
    /// `tpacket_block_desc.hdr.bh1.block_status`.
    pub const BLOCK_STATUS: usize = BH1 + offset_of!(libc::tpacket_hdr_v1, block_status);
    /// `tpacket_block_desc.hdr.bh1.num_pkts`.
    pub const BLOCK_NUM_PKTS: usize = BH1 + offset_of!(libc::tpacket_hdr_v1, num_pkts);
    /// `tpacket_block_desc.hdr.bh1.offset_to_first_pkt`.
    pub const BLOCK_FIRST_PKT: usize = BH1 + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);
    /// `tpacket_block_desc.hdr.bh1.blk_len`.
    pub const BLOCK_LEN: usize = BH1 + offset_of!(libc::tpacket_hdr_v1, blk_len);

    /// `tpacket3_hdr.tp_next_offset`.
    pub const NEXT_OFFSET: usize = offset_of!(libc::tpacket3_hdr, tp_next_offset);
    /// `tpacket3_hdr.tp_sec`.
    pub const SEC: usize = offset_of!(libc::tpacket3_hdr, tp_sec);
    /// `tpacket3_hdr.tp_nsec`.
    pub const NSEC: usize = offset_of!(libc::tpacket3_hdr, tp_nsec);
    /// `tpacket3_hdr.tp_snaplen`.
    pub const SNAPLEN: usize = offset_of!(libc::tpacket3_hdr, tp_snaplen);
    /// `tpacket3_hdr.tp_len`.
    pub const LEN: usize = offset_of!(libc::tpacket3_hdr, tp_len);
    /// `tpacket3_hdr.tp_status`.
    pub const STATUS: usize = offset_of!(libc::tpacket3_hdr, tp_status);
    /// `tpacket3_hdr.tp_mac`.
    pub const MAC: usize = offset_of!(libc::tpacket3_hdr, tp_mac);
    const HV1: usize = offset_of!(libc::tpacket3_hdr, hv1);
    /// `tpacket3_hdr.hv1.tp_vlan_tci` (a `u32`).
    pub const VLAN_TCI: usize = HV1 + offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tci);
    /// `tpacket3_hdr.hv1.tp_vlan_tpid` (a `u16`).
    pub const VLAN_TPID: usize = HV1 + offset_of!(libc::tpacket_hdr_variant1, tp_vlan_tpid);
    /// `sockaddr_ll.sll_ifindex`, relative to the `sockaddr_ll`.
    pub const SLL_IFINDEX: usize = offset_of!(libc::sockaddr_ll, sll_ifindex);
    /// `sockaddr_ll.sll_pkttype`, relative to the `sockaddr_ll`.
    pub const SLL_PKTTYPE: usize = offset_of!(libc::sockaddr_ll, sll_pkttype);
    /// Size of `struct sockaddr_ll`.
    pub const SLL_SIZE: usize = size_of::<libc::sockaddr_ll>();
}

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

/// Marker for the plain C structs this module passes to `setsockopt`/`getsockopt`: every bit
/// pattern is a valid value, so the kernel may write any bytes into one.
trait PlainData: Copy {}
impl PlainData for libc::c_int {}
impl PlainData for libc::tpacket_req3 {}
impl PlainData for libc::packet_mreq {}
impl PlainData for libc::tpacket_stats_v3 {}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Milliseconds for `poll`, rounded up so that a short non-zero wait never becomes a busy poll,
/// and clamped to what `poll` accepts.
fn poll_timeout_ms(timeout: Duration) -> libc::c_int {
    if timeout.is_zero() {
        return 0;
    }
    let ms = timeout.as_nanos().div_ceil(1_000_000);
    ms.min(libc::c_int::MAX as u128) as libc::c_int
}

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf only reads a system constant; _SC_PAGESIZE is a valid name.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

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

    fn setsockopt<T: PlainData>(
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

    fn set_int(&self, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
        self.setsockopt(level, name, &value)
    }

    /// `PACKET_VERSION = TPACKET_V3`. Private: only [`RxRingMap::setup`] may pair a version
    /// with a ring geometry.
    fn set_tpacket_v3(&self) -> io::Result<()> {
        self.set_int(
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            libc::tpacket_versions::TPACKET_V3 as libc::c_int,
        )
    }

    /// `PACKET_RX_RING` with a `tpacket_req3` of `block_count` blocks of `block_size` bytes,
    /// `frame_size`-byte nominal frames and a block retire timeout of `retire_timeout_ms`.
    fn set_rx_ring_v3(
        &self,
        block_size: u32,
        block_count: u32,
        frame_size: u32,
        retire_timeout_ms: u32,
    ) -> io::Result<()> {
        let frames_per_block = block_size.checked_div(frame_size).unwrap_or(0);
        let req = libc::tpacket_req3 {
            tp_block_size: block_size,
            tp_block_nr: block_count,
            tp_frame_size: frame_size,
            tp_frame_nr: frames_per_block.saturating_mul(block_count),
            tp_retire_blk_tov: retire_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        self.setsockopt(libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
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

    /// `SIOCGIFFLAGS` for interface `name`, in the network namespace of this socket.
    pub fn interface_flags(&self, name: &str) -> io::Result<InterfaceFlags> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        // SAFETY: ifreq is a plain C struct (name array + union of plain fields) for which
        // all-zero bytes are a valid value.
        let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.as_bytes()) {
            *dst = *src as libc::c_char;
        }
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

/// One entry of a [`poll`] set, borrowing its descriptor for as long as it lives.
#[repr(transparent)]
#[derive(Debug)]
pub struct PollFd<'fd> {
    raw: libc::pollfd,
    _fd: PhantomData<BorrowedFd<'fd>>,
}

impl<'fd> PollFd<'fd> {
    /// Waits on `fd` for `events` ([`POLLIN`], [`POLLOUT`], ...).
    pub fn new(fd: BorrowedFd<'fd>, events: i16) -> Self {
        PollFd {
            raw: libc::pollfd {
                fd: fd.as_raw_fd(),
                events,
                revents: 0,
            },
            _fd: PhantomData,
        }
    }

    /// The events that were ready after the last [`poll`].
    pub fn revents(&self) -> i16 {
        self.raw.revents
    }
}

/// `poll(2)`: waits until one of `fds` is ready or `timeout` passes (sub-millisecond timeouts
/// round up to 1 ms; zero does not wait). Returns how many entries are ready.
pub fn poll(fds: &mut [PollFd<'_>], timeout: Duration) -> io::Result<usize> {
    let nfds = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: PollFd is repr(transparent) over pollfd, so `fds` is `nfds` valid pollfds, all
    // of whose descriptors are borrowed (open) for the call; the kernel writes only `revents`.
    let n = cvt(unsafe {
        libc::poll(
            fds.as_mut_ptr().cast::<libc::pollfd>(),
            nfds,
            poll_timeout_ms(timeout),
        )
    })?;
    Ok(n as usize)
}

/// A non-blocking `eventfd` used to wake a thread blocked in [`poll`]; closed on drop.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd() takes only integers and returns a new descriptor or -1.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` was just returned by eventfd(), is open and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd { fd })
    }

    /// Adds 1 to the counter, making the descriptor readable.
    pub fn notify(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: the pointer and length describe `one`, 8 readable bytes as eventfd requires.
        let n = cvt_size(unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                ptr::addr_of!(one).cast::<libc::c_void>(),
                8,
            )
        });
        match n {
            Ok(_) => Ok(()),
            // The counter is saturated: it is readable already, which is all a wake needs.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Resets the counter to zero; returns what it held (0 if it was not readable).
    pub fn drain(&self) -> io::Result<u64> {
        let mut value: u64 = 0;
        // SAFETY: the pointer and length describe `value`, 8 writable bytes as eventfd requires.
        let n = cvt_size(unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                ptr::addr_of_mut!(value).cast::<libc::c_void>(),
                8,
            )
        });
        match n {
            Ok(_) => Ok(value),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A shared memory mapping of a packet socket's ring; unmapped on drop.
#[derive(Debug)]
pub struct MmapRegion {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory owned by this value alone (no thread affinity); what may
// be done with it concurrently is governed by `&`/`&mut` through RxRingMap.
unsafe impl Send for MmapRegion {}
// SAFETY: through `&MmapRegion` only the length can be read; through `&RxRingMap` only the
// status words, atomically. Reading frame bytes takes `&mut RxRingMap` (UserBlock).
unsafe impl Sync for MmapRegion {}

impl MmapRegion {
    /// `mmap(len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE)` of the ring configured on
    /// `sock`. (Ring pages are kernel memory that is never swapped, so `MAP_LOCKED` would only
    /// add an `RLIMIT_MEMLOCK` failure mode.)
    pub fn map_ring(sock: &Socket, len: usize) -> io::Result<MmapRegion> {
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a fresh shared mapping chosen by the kernel (addr NULL) of a socket we
        // borrow; it aliases no Rust object.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                sock.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok(MmapRegion { ptr, len })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: an empty region cannot be mapped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for MmapRegion {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in map_ring, unmapped only here;
        // every borrow of it (UserBlock) borrows self and has ended.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast::<libc::c_void>(), self.len);
        }
    }
}

/// A mapped `TPACKET_V3` receive ring seen as `block_count` blocks of `block_size` bytes,
/// each owned either by the kernel or, while its status has `TP_STATUS_USER`, by us.
#[derive(Debug)]
pub struct RxRingMap {
    region: MmapRegion,
    block_size: usize,
    block_count: usize,
}

impl RxRingMap {
    /// Sets `PACKET_VERSION = TPACKET_V3` and a `PACKET_RX_RING` of `block_count` blocks of
    /// `block_size` bytes on `sock` (with `frame_size`-byte nominal frames and a block retire
    /// timeout of `retire_timeout_ms`), then maps it.
    ///
    /// Doing all three here is what makes the block view sound: the layout read through it is
    /// the one the kernel was given, and the kernel refuses (`EBUSY`) to change the version or
    /// the ring while it is mapped. Fails with `EBUSY` if `sock` already has a ring, and with
    /// `EINVAL` for a geometry the kernel rejects.
    pub fn setup(
        sock: &Socket,
        block_size: u32,
        block_count: u32,
        frame_size: u32,
        retire_timeout_ms: u32,
    ) -> io::Result<RxRingMap> {
        let (size, count) = (block_size as usize, block_count as usize);
        let len = size
            .checked_mul(count)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        // The kernel checks the rest (block_size a multiple of the page size, and so 8-aligned
        // like the status words read through AtomicU32).
        if count == 0 || size % 8 != 0 || size < size_of::<libc::tpacket_block_desc>() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        sock.set_tpacket_v3()?;
        sock.set_rx_ring_v3(block_size, block_count, frame_size, retire_timeout_ms)?;
        let region = MmapRegion::map_ring(sock, len)?;
        Ok(RxRingMap {
            region,
            block_size: size,
            block_count: count,
        })
    }

    /// Number of blocks.
    pub fn block_count(&self) -> usize {
        self.block_count
    }

    /// Size of one block in bytes.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    fn status_word(&self, index: usize) -> &AtomicU32 {
        assert!(index < self.block_count, "ring block index out of range");
        let offset = index * self.block_size + offsets::BLOCK_STATUS;
        // SAFETY: `offset` + 4 is inside the mapping (index < block_count, block_size covers
        // a block descriptor), the address is 4-aligned (page-aligned base, block_size % 8 ==
        // 0, BLOCK_STATUS == 8), and the kernel only accesses this word atomically (it stores
        // with smp_wmb/WRITE_ONCE), so viewing it as an AtomicU32 for `&self`'s life is valid.
        unsafe { AtomicU32::from_ptr(self.region.ptr.as_ptr().add(offset).cast::<u32>()) }
    }

    /// The block's status word, read with `Acquire` ordering so that everything the kernel
    /// wrote into the block before handing it over is visible.
    pub fn block_status(&self, index: usize) -> u32 {
        self.status_word(index).load(Ordering::Acquire)
    }

    /// If block `index` belongs to user space, a guard over it that hands it back to the
    /// kernel when dropped. Panics if `index` is out of range.
    pub fn user_block(&mut self, index: usize) -> Option<UserBlock<'_>> {
        if self.block_status(index) & TP_STATUS_USER == 0 {
            return None;
        }
        Some(UserBlock { ring: self, index })
    }
}

/// A ring block that user space owns until this guard is dropped, which hands it back to the
/// kernel (`TP_STATUS_KERNEL`, `Release` ordering).
#[derive(Debug)]
pub struct UserBlock<'a> {
    ring: &'a mut RxRingMap,
    index: usize,
}

impl UserBlock<'_> {
    /// The whole block: descriptor, frame headers and frames.
    pub fn bytes(&self) -> &[u8] {
        let start = self.index * self.ring.block_size;
        // SAFETY: the range lies inside the mapping (checked in RxRingMap::new and
        // user_block). The block's status had TP_STATUS_USER (read with Acquire), and the
        // kernel does not write a user-owned block until its status is set back to
        // TP_STATUS_KERNEL, which only happens in Drop, after every borrow of `self` (and so
        // of the returned slice) has ended.
        unsafe {
            std::slice::from_raw_parts(
                self.ring.region.ptr.as_ptr().add(start),
                self.ring.block_size,
            )
        }
    }
}

impl Drop for UserBlock<'_> {
    fn drop(&mut self) {
        self.ring
            .status_word(self.index)
            .store(TP_STATUS_KERNEL, Ordering::Release);
    }
}
