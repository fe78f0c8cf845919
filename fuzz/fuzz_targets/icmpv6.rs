//! Fuzzes the ICMPv6 view and `Repr` (echo, neighbour solicitation and advertisement), which
//! the neighbour responder runs on every ICMPv6 message that reaches it:
//!
//! - `Repr::parse` never panics, whatever the bytes and addresses;
//! - a message it accepts emits (into a buffer of exactly `buffer_len` bytes) to one that
//!   parses back to the same `Repr`, with a checksum that verifies, and whose `Display` works;
//! - a checksum that verifies is required: the same bytes with any other checksum are refused.
//!
//! Input layout (a reader yields zeros past the end): byte 0 holds flags (bit 0: fill in the
//! message's checksum first, so that the fuzzer reaches the rules behind it), then the source
//! and destination addresses (16 bytes each); the rest is the message. See docs/fuzzing.md.
#![no_main]

use std::net::Ipv6Addr;

use etherconn_core::wire::icmpv6::{Packet, Repr};
use libfuzzer_sys::fuzz_target;

fn addr(data: &[u8], at: usize) -> Ipv6Addr {
    let mut b = [0u8; 16];
    for (i, x) in b.iter_mut().enumerate() {
        *x = data.get(at + i).copied().unwrap_or(0);
    }
    Ipv6Addr::from(b)
}

fuzz_target!(|data: &[u8]| {
    let flags = data.first().copied().unwrap_or(0);
    let (src, dst) = (addr(data, 1), addr(data, 17));
    let mut msg = data.get(33..).unwrap_or(&[]).to_vec();
    if flags & 1 != 0 && msg.len() >= 4 {
        Packet::new_unchecked(&mut msg[..]).fill_checksum(src, dst);
    }
    let packet = Packet::new_unchecked(&msg[..]);
    let parsed = Repr::parse(&packet, src, dst);
    let Ok(repr) = parsed else {
        return;
    };
    assert!(packet.verify_checksum(src, dst));
    let _ = repr.to_string();
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Packet::new_unchecked(&mut out[..]), src, dst)
        .expect("a parsed message emits");
    let again = Packet::new_unchecked(&out[..]);
    assert!(again.verify_checksum(src, dst));
    assert_eq!(Repr::parse(&again, src, dst).expect("emitted parses"), repr);
    // Any other checksum is refused.
    let mut bad = msg.clone();
    bad[2] ^= 0x01;
    assert!(Repr::parse(&Packet::new_unchecked(&bad[..]), src, dst).is_err());
});
