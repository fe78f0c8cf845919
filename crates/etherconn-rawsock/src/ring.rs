//! The `TPACKET_V3` receive ring: the kernel fills fixed-size blocks with frames and hands each
//! block to user space when it is full or when its retire timeout expires; [`RxRing::drain`]
//! walks every handed-over block, calls back once per frame with the frame bytes and an
//! [`RxMeta`], and gives the block back. Nothing is copied or allocated per frame.

use std::time::Duration;

use etherconn_core::wire::vlan::restore_tag;
use etherconn_core::wire::{Tpid, VlanTag};

use crate::error::{Error, Result};
use crate::sys::{self, offsets, RxRingMap, Socket};

/// Geometry and latency of a [`RxRing`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Size of one block in bytes: a non-zero multiple of the page size. A frame larger than
    /// a block minus its headers is truncated.
    pub block_size: u32,
    /// Number of blocks (at least 2). The ring takes `block_size * block_count` bytes of
    /// unswappable kernel memory.
    pub block_count: u32,
    /// Nominal frame size for the kernel's geometry check: a multiple of 16 of at least the
    /// frame header size, at most `block_size`. (`TPACKET_V3` packs frames of any length
    /// into blocks, so this does not limit frame length.)
    pub frame_size: u32,
    /// How long the kernel keeps a partly filled block before handing it over anyway: the
    /// worst-case delay a frame waits in the ring under light load. Whole milliseconds (rounded
    /// up), at least 1 ms.
    pub block_timeout: Duration,
}

impl RingConfig {
    /// Default block size: 256 KiB (about 1,800 minimum-size frames).
    pub const DEFAULT_BLOCK_SIZE: u32 = 256 * 1024;
    /// Default number of blocks: 64 (16 MiB in all, about 116,000 minimum-size frames, or
    /// 87,000 frames of a 64-byte UDP payload: 64 ms at 1.36 M frames/s). A block is handed
    /// over when full or when its retire timeout expires, so below the rate that fills a
    /// block per timeout the ring holds only about `block_count` timeouts' worth of frames.
    /// Sixteen blocks (4 MiB, about 16 ms at full rate) lost frames whenever the relay thread
    /// was off its CPU longer than that, at rates where the kernel's UDP socket (32 MiB of
    /// receive buffer in `etherconn-perf bench`) lost none (docs/performance.md, section 3).
    pub const DEFAULT_BLOCK_COUNT: u32 = 64;
    /// Default nominal frame size: 2048 bytes.
    pub const DEFAULT_FRAME_SIZE: u32 = 2048;
    /// Default block retire timeout: 1 ms. (A 64 ms timeout makes light traffic arrive in
    /// bursts and stretches request/response exchanges such as DHCP to over 100 ms.)
    pub const DEFAULT_BLOCK_TIMEOUT: Duration = Duration::from_millis(1);

    /// Checks the geometry the kernel would otherwise reject with a bare `EINVAL`.
    pub fn validate(&self) -> Result<()> {
        let page = sys::page_size();
        if self.block_size == 0 || self.block_size as usize % page != 0 {
            return Err(Error::InvalidConfig(
                "ring block_size must be a non-zero multiple of the page size",
            ));
        }
        if self.block_count < 2 {
            return Err(Error::InvalidConfig("ring block_count must be at least 2"));
        }
        if (self.frame_size as usize) < sys::TPACKET3_HDRLEN
            || self.frame_size as usize % sys::TPACKET_ALIGNMENT != 0
            || self.frame_size > self.block_size
        {
            return Err(Error::InvalidConfig(
                "ring frame_size must be a multiple of 16, at least the TPACKET_V3 header size and at most block_size",
            ));
        }
        if self.ring_bytes().is_none() {
            return Err(Error::InvalidConfig(
                "ring block_size * block_count is too large",
            ));
        }
        if self.block_timeout.is_zero() || self.timeout_ms().is_none() {
            return Err(Error::InvalidConfig(
                "ring block_timeout must be between 1 ms and u32::MAX ms (zero would let the kernel choose)",
            ));
        }
        Ok(())
    }

    /// Total size of the ring in bytes, if it fits in memory's address range.
    pub fn ring_bytes(&self) -> Option<usize> {
        (self.block_size as usize)
            .checked_mul(self.block_count as usize)
            .filter(|&n| n <= isize::MAX as usize)
    }

    fn timeout_ms(&self) -> Option<u32> {
        u32::try_from(self.block_timeout.as_nanos().div_ceil(1_000_000)).ok()
    }
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            block_size: Self::DEFAULT_BLOCK_SIZE,
            block_count: Self::DEFAULT_BLOCK_COUNT,
            frame_size: Self::DEFAULT_FRAME_SIZE,
            block_timeout: Self::DEFAULT_BLOCK_TIMEOUT,
        }
    }
}

/// How a received frame was addressed, from the kernel's point of view (`sll_pkttype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// To this interface's own MAC address.
    Host,
    /// To the broadcast address.
    Broadcast,
    /// To a multicast address.
    Multicast,
    /// To some other host's MAC address (seen in promiscuous mode, and on veth always).
    OtherHost,
    /// Sent from this host (only seen without `ignore_outgoing`).
    Outgoing,
    /// Another value.
    Other(u8),
}

impl From<u8> for PacketType {
    fn from(v: u8) -> Self {
        match v {
            libc::PACKET_HOST => PacketType::Host,
            libc::PACKET_BROADCAST => PacketType::Broadcast,
            libc::PACKET_MULTICAST => PacketType::Multicast,
            libc::PACKET_OTHERHOST => PacketType::OtherHost,
            libc::PACKET_OUTGOING => PacketType::Outgoing,
            other => PacketType::Other(other),
        }
    }
}

/// What the ring says about one received frame besides its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RxMeta {
    /// The outer VLAN tag if the kernel moved it out of the frame (it then is not in the
    /// bytes). Reported for VLAN ID 0 too. Further tags (the inner one of QinQ) stay in the
    /// bytes. Its TPID is 0x8100 (802.1Q) when the kernel does not report one.
    pub vlan: Option<VlanTag>,
    /// Length of the frame as received, without an offloaded tag (see [`RxMeta::wire_len`]).
    pub len: u32,
    /// Number of bytes delivered (less than `len` if the frame was truncated).
    pub snaplen: u32,
    /// The frame's raw `tp_status` (`TP_STATUS_VLAN_VALID`, `TP_STATUS_VLAN_TPID_VALID`,
    /// `TP_STATUS_CSUM_VALID`, ...; see [`sys`]).
    pub status: u32,
    /// Index of the interface the frame arrived on.
    pub ifindex: u32,
    /// How the frame was addressed.
    pub packet_type: PacketType,
    /// Receive time (`CLOCK_REALTIME`, since the Unix epoch).
    pub timestamp: Duration,
}

impl RxMeta {
    /// Length of the frame on the wire: [`RxMeta::len`] plus 4 if a tag was offloaded.
    pub fn wire_len(&self) -> u32 {
        self.len + if self.vlan.is_some() { 4 } else { 0 }
    }

    /// Whether fewer bytes were delivered than received.
    pub fn is_truncated(&self) -> bool {
        self.snaplen < self.len
    }

    /// Writes `frame` (as delivered with this metadata) into `out` with the offloaded VLAN tag
    /// put back after the MAC addresses, as it was on the wire ([`restore_tag`]). Returns the
    /// length written, or `None` if `out` is too small or `frame` is shorter than an Ethernet
    /// header. Without an offloaded tag this is a plain copy.
    pub fn restore_vlan(&self, frame: &[u8], out: &mut [u8]) -> Option<usize> {
        restore_tag(frame, self.vlan, out).ok()
    }
}

/// A mapped `TPACKET_V3` receive ring of a packet socket.
#[derive(Debug)]
pub struct RxRing {
    map: RxRingMap,
    next_block: usize,
    config: RingConfig,
}

impl RxRing {
    /// Sets `PACKET_VERSION = TPACKET_V3` and `PACKET_RX_RING` on `sock` and maps the ring
    /// ([`RxRingMap::setup`]). Do this before binding the socket with a protocol, so that no
    /// frame is queued outside the ring.
    pub fn new(sock: &Socket, config: &RingConfig) -> Result<RxRing> {
        config.validate()?;
        let timeout_ms = match (config.ring_bytes(), config.timeout_ms()) {
            (Some(_), Some(t)) => t,
            _ => return Err(Error::InvalidConfig("ring geometry out of range")),
        };
        let map = RxRingMap::setup(
            sock,
            config.block_size,
            config.block_count,
            config.frame_size,
            timeout_ms,
        )
        .map_err(|source| Error::RingSetup {
            source,
            block_size: config.block_size,
            block_count: config.block_count,
        })?;
        Ok(RxRing {
            map,
            next_block: 0,
            config: config.clone(),
        })
    }

    /// The configuration the ring was made with.
    pub fn config(&self) -> &RingConfig {
        &self.config
    }

    /// Whether the next block is ready for [`RxRing::drain`].
    pub fn has_ready(&self) -> bool {
        self.map.block_status(self.next_block) & sys::TP_STATUS_USER != 0
    }

    /// Calls `f` for every frame of every block the kernel has handed over, in arrival order,
    /// handing each block back once its frames are done. Walks at most one lap of the ring, so
    /// it returns even if the kernel keeps filling. Returns the number of frames.
    pub fn drain<F>(&mut self, f: &mut F) -> usize
    where
        F: FnMut(&[u8], RxMeta),
    {
        let mut frames = 0;
        for _ in 0..self.map.block_count() {
            let index = self.next_block;
            let Some(block) = self.map.user_block(index) else {
                break;
            };
            frames += walk_block(block.bytes(), f);
            drop(block);
            self.next_block = (index + 1) % self.map.block_count();
        }
        frames
    }
}

fn ne_u32(b: &[u8], at: usize) -> u32 {
    let mut v = [0; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_ne_bytes(v)
}

fn ne_u16(b: &[u8], at: usize) -> u16 {
    let mut v = [0; 2];
    v.copy_from_slice(&b[at..at + 2]);
    u16::from_ne_bytes(v)
}

const FRAME_HEADERS: usize = sys::TPACKET3_SLL_OFFSET + offsets::SLL_SIZE;

/// The tag the kernel moved out of a frame, from the frame header's `tp_status`,
/// `tp_vlan_tci` and `tp_vlan_tpid`; `None` without `TP_STATUS_VLAN_VALID`.
///
/// Without `TP_STATUS_VLAN_TPID_VALID` the kernel leaves `tp_vlan_tpid` at 0 (kernels before
/// 3.14 have no such field) and the tag is 802.1Q, 0x8100. The kernel only offloads 0x8100 and
/// 0x88a8 tags; any other TPID it might report is taken as 0x8100 too, because [`Tpid`] holds
/// only the TPIDs etherconn dispatches on.
fn offloaded_tag(status: u32, tci: u32, tpid: u16) -> Option<VlanTag> {
    if status & sys::TP_STATUS_VLAN_VALID == 0 {
        return None;
    }
    let tpid = if status & sys::TP_STATUS_VLAN_TPID_VALID != 0 {
        Tpid::new(tpid).unwrap_or(Tpid::DOT1Q)
    } else {
        Tpid::DOT1Q
    };
    // The TCI is 16 bits; the kernel's field is a u32 for alignment.
    Some(VlanTag::from_tci(tpid, tci as u16))
}

/// Walks the frames of one user-owned block. Every offset comes from the kernel, but each is
/// still checked against the block so that a bad one ends the walk instead of panicking.
fn walk_block<F>(block: &[u8], f: &mut F) -> usize
where
    F: FnMut(&[u8], RxMeta),
{
    if block.len() < offsets::BLOCK_LEN + 4 {
        return 0;
    }
    let num_pkts = ne_u32(block, offsets::BLOCK_NUM_PKTS);
    let mut at = ne_u32(block, offsets::BLOCK_FIRST_PKT) as usize;
    let mut frames = 0;
    for _ in 0..num_pkts {
        let Some(hdr) = at
            .checked_add(FRAME_HEADERS)
            .and_then(|end| block.get(at..end))
        else {
            break;
        };
        let snaplen = ne_u32(hdr, offsets::SNAPLEN);
        let mac = at + usize::from(ne_u16(hdr, offsets::MAC));
        let Some(frame) = mac
            .checked_add(snaplen as usize)
            .and_then(|end| block.get(mac..end))
        else {
            break;
        };
        let status = ne_u32(hdr, offsets::STATUS);
        let vlan = offloaded_tag(
            status,
            ne_u32(hdr, offsets::VLAN_TCI),
            ne_u16(hdr, offsets::VLAN_TPID),
        );
        let sll = &hdr[sys::TPACKET3_SLL_OFFSET..];
        let meta = RxMeta {
            vlan,
            len: ne_u32(hdr, offsets::LEN),
            snaplen,
            status,
            ifindex: ne_u32(sll, offsets::SLL_IFINDEX),
            packet_type: PacketType::from(sll[offsets::SLL_PKTTYPE]),
            timestamp: Duration::new(
                u64::from(ne_u32(hdr, offsets::SEC)),
                ne_u32(hdr, offsets::NSEC),
            ),
        };
        f(frame, meta);
        frames += 1;
        let next = ne_u32(hdr, offsets::NEXT_OFFSET) as usize;
        if next == 0 {
            break;
        }
        at = match at.checked_add(next) {
            Some(a) => a,
            None => break,
        };
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block laid out as the kernel does: descriptor, then frames each with a tpacket3_hdr,
    /// a sockaddr_ll and the frame at tp_mac.
    fn fake_block(frames: &[(&[u8], u32, u32, u16)]) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        let first = 48usize;
        b[offsets::BLOCK_NUM_PKTS..][..4].copy_from_slice(&(frames.len() as u32).to_ne_bytes());
        b[offsets::BLOCK_FIRST_PKT..][..4].copy_from_slice(&(first as u32).to_ne_bytes());
        let mut at = first;
        for (i, (data, status, tci, tpid)) in frames.iter().enumerate() {
            let mac = 82usize;
            let len = (mac + data.len()).div_ceil(8) * 8;
            let next = if i + 1 == frames.len() { 0 } else { len as u32 };
            let h = &mut b[at..];
            h[offsets::NEXT_OFFSET..][..4].copy_from_slice(&next.to_ne_bytes());
            h[offsets::SNAPLEN..][..4].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            h[offsets::LEN..][..4].copy_from_slice(&(data.len() as u32).to_ne_bytes());
            h[offsets::STATUS..][..4].copy_from_slice(&status.to_ne_bytes());
            h[offsets::MAC..][..2].copy_from_slice(&(mac as u16).to_ne_bytes());
            h[offsets::VLAN_TCI..][..4].copy_from_slice(&tci.to_ne_bytes());
            h[offsets::VLAN_TPID..][..2].copy_from_slice(&tpid.to_ne_bytes());
            h[sys::TPACKET3_SLL_OFFSET + offsets::SLL_IFINDEX..][..4]
                .copy_from_slice(&7u32.to_ne_bytes());
            h[sys::TPACKET3_SLL_OFFSET + offsets::SLL_PKTTYPE] = libc::PACKET_OTHERHOST;
            h[mac..mac + data.len()].copy_from_slice(data);
            at += len;
        }
        b
    }

    #[test]
    fn walks_frames_and_reports_vlan_metadata() {
        let a = [1u8; 60];
        let b = [2u8; 64];
        let c = [3u8; 70];
        let block = fake_block(&[
            (&a, 1, 0, 0),
            (
                &b,
                1 | sys::TP_STATUS_VLAN_VALID | sys::TP_STATUS_VLAN_TPID_VALID,
                0xa064,
                0x88a8,
            ),
            (&c, 1 | sys::TP_STATUS_VLAN_VALID, 0x0000, 0),
        ]);
        let mut seen = Vec::new();
        let n = walk_block(&block, &mut |frame: &[u8], meta: RxMeta| {
            seen.push((frame.to_vec(), meta))
        });
        assert_eq!(n, 3);
        assert_eq!(seen[0].0, a);
        assert_eq!(seen[0].1.vlan, None);
        assert_eq!(seen[0].1.ifindex, 7);
        assert_eq!(seen[0].1.packet_type, PacketType::OtherHost);
        assert_eq!(seen[1].0, b);
        let v = seen[1].1.vlan.unwrap();
        assert_eq!(
            (v.tci(), v.tpid.get(), v.id.get(), v.pcp, v.dei),
            (0xa064, 0x88a8, 100, 5, false)
        );
        assert_eq!(seen[1].1.wire_len(), 68);
        // VLAN ID 0 with VLAN_VALID is a tag; without TPID_VALID it is 802.1Q.
        assert_eq!(
            seen[2].1.vlan.map(|v| (v.tci(), v.tpid.get())),
            Some((0, 0x8100))
        );
    }

    #[test]
    fn offloaded_tag_reads_the_kernel_fields() {
        let valid = sys::TP_STATUS_VLAN_VALID;
        let tpid_valid = valid | sys::TP_STATUS_VLAN_TPID_VALID;
        assert_eq!(offloaded_tag(0, 0xa064, 0x88a8), None);
        assert_eq!(
            offloaded_tag(tpid_valid, 0xa064, 0x88a8),
            Some(VlanTag::from_tci(Tpid::QINQ, 0xa064))
        );
        // No TPID reported (tp_vlan_tpid 0, as from an old kernel): 802.1Q.
        assert_eq!(
            offloaded_tag(valid, 0x0064, 0),
            Some(VlanTag::from_tci(Tpid::DOT1Q, 0x0064))
        );
        // Without TPID_VALID the field is not looked at.
        assert_eq!(
            offloaded_tag(valid, 0x0064, 0x88a8),
            Some(VlanTag::from_tci(Tpid::DOT1Q, 0x0064))
        );
        // A TPID the kernel never offloads falls back to 802.1Q rather than dropping the tag.
        assert_eq!(
            offloaded_tag(tpid_valid, 0x0064, 0x0800),
            Some(VlanTag::from_tci(Tpid::DOT1Q, 0x0064))
        );
    }

    #[test]
    fn bad_offsets_end_the_walk() {
        let a = [1u8; 60];
        let mut block = fake_block(&[(&a, 1, 0, 0), (&a, 1, 0, 0)]);
        // Point the first frame's next offset past the block.
        block[48 + offsets::NEXT_OFFSET..][..4].copy_from_slice(&5000u32.to_ne_bytes());
        assert_eq!(walk_block(&block, &mut |_: &[u8], _| {}), 1);
        // A snaplen past the block delivers nothing.
        let mut block = fake_block(&[(&a, 1, 0, 0)]);
        block[48 + offsets::SNAPLEN..][..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(walk_block(&block, &mut |_: &[u8], _| {}), 0);
        // A truncated block delivers nothing.
        assert_eq!(walk_block(&block[..8], &mut |_: &[u8], _| {}), 0);
    }

    #[test]
    fn restore_vlan_puts_the_tag_back() {
        let meta = RxMeta {
            vlan: Some(VlanTag::from_tci(Tpid::DOT1Q, 0xa064)),
            len: 14,
            snaplen: 14,
            status: 0,
            ifindex: 1,
            packet_type: PacketType::Host,
            timestamp: Duration::ZERO,
        };
        let frame: Vec<u8> = (0u8..14).collect();
        let mut out = [0u8; 32];
        assert_eq!(meta.restore_vlan(&frame, &mut out), Some(18));
        assert_eq!(&out[..12], &frame[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0xa0, 0x64]);
        assert_eq!(&out[16..18], &frame[12..]);
        assert_eq!(meta.restore_vlan(&frame, &mut out[..17]), None);
        assert_eq!(meta.restore_vlan(&frame[..11], &mut out), None);
    }

    #[test]
    fn config_validation() {
        assert!(RingConfig::default().validate().is_ok());
        let bad = [
            RingConfig {
                block_size: 1000,
                ..RingConfig::default()
            },
            RingConfig {
                block_count: 1,
                ..RingConfig::default()
            },
            RingConfig {
                frame_size: 2047,
                ..RingConfig::default()
            },
            RingConfig {
                frame_size: 16,
                ..RingConfig::default()
            },
            RingConfig {
                block_timeout: Duration::ZERO,
                ..RingConfig::default()
            },
        ];
        for c in bad {
            assert!(
                matches!(c.validate(), Err(Error::InvalidConfig(_))),
                "{c:?}"
            );
        }
        // Sub-millisecond timeouts round up rather than becoming "let the kernel pick".
        let c = RingConfig {
            block_timeout: Duration::from_micros(200),
            ..RingConfig::default()
        };
        assert_eq!(c.timeout_ms(), Some(1));
    }
}
