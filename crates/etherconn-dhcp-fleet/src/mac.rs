//! Client MAC addresses that a DHCP server's address hash spreads over its pool.

use etherconn_core::wire::MacAddr;

/// An odd multiplier (the 64-bit golden-ratio constant), so that multiplying by it modulo 2^40
/// is a bijection: distinct indexes give distinct MACs.
const SPREAD: u64 = 0x9e37_79b9_7f4a_7c15;
const LOW_40: u64 = (1 << 40) - 1;

/// The MAC of client `index` in a fleet whose MACs come from `seed`.
///
/// The first octet is `0x02` (locally administered, unicast); the other 40 bits are
/// `(seed + index) * SPREAD mod 2^40`, so consecutive clients differ in every octet. dnsmasq
/// picks an offered address by hashing the MAC and does not remember outstanding offers:
/// MACs that differ only in their last octet land on neighbouring addresses and collide
/// (NAKs) far more often than spread ones. Distinct `seed + index` values below 2^40 give
/// distinct MACs; fleets that must not overlap use seeds further apart than their sizes.
///
/// ```
/// use etherconn_dhcp_fleet::client_mac;
/// let a = client_mac(0, 1);
/// let b = client_mac(0, 2);
/// assert_eq!(a.0[0], 0x02);
/// assert!(a.0[1..].iter().zip(&b.0[1..]).all(|(x, y)| x != y));
/// ```
pub fn client_mac(seed: u64, index: u64) -> MacAddr {
    let v = seed.wrapping_add(index).wrapping_mul(SPREAD) & LOW_40;
    let b = v.to_be_bytes();
    MacAddr([0x02, b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn distinct_and_locally_administered() {
        let macs: HashSet<MacAddr> = (0..200_000).map(|i| client_mac(7, i)).collect();
        assert_eq!(macs.len(), 200_000);
        for m in &macs {
            assert_eq!(m.0[0], 0x02);
            assert!(m.is_unicast() && m.is_local());
        }
    }

    #[test]
    fn octets_spread() {
        // Every octet takes many values over a small fleet, not just the last one or two.
        for octet in 1..6 {
            let seen: HashSet<u8> = (0..1000).map(|i| client_mac(0, i).0[octet]).collect();
            assert!(seen.len() > 200, "octet {octet}: {} values", seen.len());
        }
    }
}
