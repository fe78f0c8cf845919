//! The `TPACKET_V3` receive ring: its setup (`PACKET_VERSION`, `PACKET_RX_RING`), the `mmap`
//! of it, and the view of the mapping as blocks owned in turn by the kernel and by us.

use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};

use super::socket::Socket;

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
        set_tpacket_v3(sock)?;
        set_rx_ring_v3(sock, block_size, block_count, frame_size, retire_timeout_ms)?;
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
        // SAFETY: the range lies inside the mapping (checked in RxRingMap::setup and
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

/// `PACKET_VERSION = TPACKET_V3`. Private to this module: only [`RxRingMap::setup`] may pair a
/// version with a ring geometry.
fn set_tpacket_v3(sock: &Socket) -> io::Result<()> {
    sock.set_int(
        libc::SOL_PACKET,
        libc::PACKET_VERSION,
        libc::tpacket_versions::TPACKET_V3 as libc::c_int,
    )
}

/// `PACKET_RX_RING` with a `tpacket_req3` of `block_count` blocks of `block_size` bytes,
/// `frame_size`-byte nominal frames and a block retire timeout of `retire_timeout_ms`.
fn set_rx_ring_v3(
    sock: &Socket,
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
    sock.setsockopt(libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
}
