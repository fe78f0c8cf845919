//! The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo headers UDP covers.
//!
//! Sums are accumulated as `u32` over 16-bit big-endian words, eight bytes at a time on the fast
//! path, and folded once at the end.

use core::net::{Ipv4Addr, Ipv6Addr};

/// Adds `data` to a running one's-complement sum; an odd trailing byte is padded with zero.
///
/// `data` must start at an even offset of the checksummed region (every caller here sums whole
/// headers or a pseudo header followed by the whole UDP datagram).
///
/// The bulk is summed as native-endian 32-bit words and byte-swapped once at the end, which is
/// exact because the one's-complement sum does not depend on byte order (RFC 1071 section 2B);
/// it lets the compiler vectorise the loop without a byte swap per word.
#[inline]
pub fn sum(acc: u64, data: &[u8]) -> u64 {
    let mut native = 0u64;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        native += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    let bulk = fold(native);
    let bulk = if cfg!(target_endian = "little") {
        bulk.swap_bytes()
    } else {
        bulk
    };
    let mut acc = acc + u64::from(bulk);
    match *words.remainder() {
        [a] => acc += u64::from(u16::from_be_bytes([a, 0])),
        [a, b] => acc += u64::from(u16::from_be_bytes([a, b])),
        [a, b, c] => {
            acc += u64::from(u16::from_be_bytes([a, b])) + u64::from(u16::from_be_bytes([c, 0]))
        }
        _ => {}
    }
    acc
}

/// Folds a running sum to 16 bits (without the final complement).
///
/// Three fixed steps instead of a loop: after folding 64 to 33 bits, 33 to 17 and 17 to 16 no
/// carry is left, whatever the input.
#[inline]
pub fn fold(acc: u64) -> u16 {
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The Internet checksum of `data`: the complement of its folded sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(0, data))
}

/// The running sum of the IPv4 pseudo header for an upper-layer `length` and `protocol`.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u64 {
    let acc = sum(0, &src.octets());
    let acc = sum(acc, &dst.octets());
    acc + u64::from(protocol) + u64::from(length)
}

/// The running sum of the IPv6 pseudo header (RFC 8200 section 8.1).
#[inline]
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u64 {
    let acc = sum(0, &src.octets());
    let acc = sum(acc, &dst.octets());
    acc + u64::from(length >> 16) + u64::from(length & 0xffff) + u64::from(next_header)
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
        for v in [
            0u64,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_ffff_fffe,
            u64::MAX,
            0x8000_0000_0000_ffff,
        ] {
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
