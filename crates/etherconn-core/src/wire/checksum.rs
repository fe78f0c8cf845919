//! The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo headers UDP covers.
//!
//! Sums are accumulated over 64-bit words on the fast path and folded to 16 bits once at the
//! end; a running sum (`u64`) is the sum of 16-bit big-endian words, not yet folded.

use core::net::{Ipv4Addr, Ipv6Addr};

/// Adds `data` to a running one's-complement sum; an odd trailing byte is padded with zero.
///
/// `data` must start at an even offset of the checksummed region (every caller here sums whole
/// headers or a pseudo header followed by the whole UDP datagram).
///
/// The bulk is summed as native-endian 64-bit words into two 128-bit accumulators (an add and
/// an add-with-carry each, two independent chains per 16 bytes) and byte-swapped once at the
/// end, which is exact because the one's-complement sum does not depend on byte order (RFC 1071
/// section 2B) and carries out of a wider word are the end-around carries of the narrower ones
/// (section 2C). Written by hand rather than taken from a crate because the classifier runs it
/// on every received frame and needs it inlined into its pass.
#[inline]
pub fn sum(acc: u64, data: &[u8]) -> u64 {
    let (mut a, mut b) = (0u128, 0u128);
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let (x, y) = block.split_at(8);
        a += u128::from(word64(x));
        b += u128::from(word64(y));
    }
    let mut rest = blocks.remainder();
    if let Some((x, tail)) = rest.split_first_chunk::<8>() {
        a += u128::from(u64::from_ne_bytes(*x));
        rest = tail;
    }
    // At most 2^12 words of 2^64 each per accumulator for any IP datagram, so a + b cannot
    // overflow 128 bits, and the high half is small enough to add to the 32-bit halves.
    let wide = a + b;
    let lo = wide as u64;
    let mut native = (lo & 0xffff_ffff) + (lo >> 32) + (wide >> 64) as u64;
    if let Some((x, tail)) = rest.split_first_chunk::<4>() {
        native += u64::from(u32::from_ne_bytes(*x));
        rest = tail;
    }
    if let Some((x, tail)) = rest.split_first_chunk::<2>() {
        native += u64::from(u16::from_ne_bytes(*x));
        rest = tail;
    }
    if let [last] = *rest {
        native += u64::from(u16::from_ne_bytes([last, 0]));
    }
    // Folded to 32 bits only: swapping the bytes of a 32-bit word swaps those of both its
    // 16-bit halves (and the halves, which a sum does not notice), and `fold` does the rest.
    let bulk = fold32(native);
    let bulk = if cfg!(target_endian = "little") {
        bulk.swap_bytes()
    } else {
        bulk
    };
    acc + u64::from(bulk)
}

/// A native-endian 64-bit word from a slice of exactly eight bytes.
#[inline(always)]
fn word64(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    u64::from_ne_bytes(w)
}

/// Folds a running sum to 16 bits (without the final complement).
///
/// Adding a word to itself rotated by half its width leaves, in the upper half, the sum of
/// both halves with the end-around carry already added (the rotation's carry out of the lower
/// half is that carry): once from 64 to 32 bits, once from 32 to 16, whatever the input.
#[inline]
pub fn fold(acc: u64) -> u16 {
    let x = fold32(acc);
    (x.wrapping_add(x.rotate_right(16)) >> 16) as u16
}

/// Folds a running sum to 32 bits, as [`fold`] does to 16.
#[inline(always)]
fn fold32(acc: u64) -> u32 {
    (acc.wrapping_add(acc.rotate_right(32)) >> 32) as u32
}

/// The Internet checksum of `data`: the complement of its folded sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(0, data))
}

/// The running sum of the IPv4 pseudo header for an upper-layer `length` and `protocol`.
///
/// Each address is added as one 32-bit word: the same sum as its two 16-bit halves once
/// folded, since 2^16 is 1 in one's-complement arithmetic.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u64 {
    u64::from(u32::from(src)) + u64::from(u32::from(dst)) + u64::from(protocol) + u64::from(length)
}

/// The running sum of the IPv6 pseudo header (RFC 8200 section 8.1).
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u64 {
    addr_sum_v6(src) + addr_sum_v6(dst) + u64::from(length) + u64::from(next_header)
}

/// An IPv6 address as a running sum: its four 32-bit words (see [`pseudo_header_v4`]).
#[inline]
pub(crate) fn addr_sum_v6(a: Ipv6Addr) -> u64 {
    let w = u128::from(a);
    (w as u32 as u64) + ((w >> 32) as u32 as u64) + ((w >> 64) as u32 as u64) + ((w >> 96) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (before complement).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn fold_carries_fully() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let pseudo_random = core::iter::from_fn(|| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Some(x)
        });
        let edges = [
            0u64,
            1,
            0xfffe,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0xffff_ffff,
            0x1_0000_0000,
            0x1_ffff_fffe,
            0xffff_fffe_0001,
            u64::MAX,
            u64::MAX - 1,
            0x8000_0000_0000_ffff,
        ];
        for v in edges.into_iter().chain(pseudo_random.take(10_000)) {
            let mut slow = v;
            while slow >> 16 != 0 {
                slow = (slow & 0xffff) + (slow >> 16);
            }
            assert_eq!(u64::from(fold(v)), slow, "{v:#x}");
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn wide_and_narrow_paths_agree() {
        let data: [u8; 37] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
        let mut narrow = 0u64;
        for w in data.chunks(2) {
            narrow += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        assert_eq!(fold(sum(0, &data)), fold(narrow));
    }

    #[test]
    fn every_length_and_tail_agrees_with_pairwise_sum() {
        // Every remainder after the 16-byte blocks (8, 4, 2 and 1 bytes, in all combinations),
        // with words that carry, and a running sum carried in.
        let data: [u8; 300] = core::array::from_fn(|i| 0xff - (i as u8).wrapping_mul(7));
        for len in 0..data.len() {
            let mut narrow = 0x1_2345u64;
            for w in data[..len].chunks(2) {
                narrow += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            }
            assert_eq!(fold(sum(0x1_2345, &data[..len])), fold(narrow), "{len}");
        }
        let ones = [0xffu8; 65534];
        assert_eq!(fold(sum(0, &ones)), 0xffff);
    }

    #[test]
    fn pseudo_headers() {
        let v4 = pseudo_header_v4(
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(10, 0, 0, 254),
            17,
            12,
        );
        assert_eq!(fold(v4), fold(0xc0a8 + 0x0101 + 0x0a00 + 0x00fe + 17 + 12));
        let (s, d) = (Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
        assert_eq!(fold(pseudo_header_v6(s, d, 17, 0x1_0008)), 1 + 1 + 8 + 17);
        let s: Ipv6Addr = "fe80::ffff:ffff:ffff:ffff".parse().unwrap();
        let d: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
        let words = s.segments().into_iter().chain(d.segments());
        let narrow: u64 = words.map(u64::from).sum::<u64>() + 17 + 20;
        assert_eq!(fold(pseudo_header_v6(s, d, 17, 20)), fold(narrow));
    }

    #[test]
    fn known_ipv4_header() {
        // A header from Wikipedia's IPv4 checksum example; its checksum field is b861.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0);
        let mut zeroed = hdr;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0xb861);
    }
}
