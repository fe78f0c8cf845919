//! Fuzzes the DHCP fleet's reply decoder (`decode_reply` in
//! `crates/etherconn-dhcp-fleet/src/message.rs`), which reads every datagram a server (or
//! anyone else on the segment) sends to the client port.
//!
//! It must never panic, and when it accepts a reply, its fields must be what the bytes say,
//! read here by offset: BOOTREPLY, Ethernet (`htype` 1, `hlen` 6), the magic cookie, `xid`,
//! `yiaddr`, the first six octets of `chaddr`, and, when the options field holds option 53, 54
//! or 51 exactly once with the right length (and no option overload), the message type, server
//! id and lease time.
//!
//! The decoder used to go through dhcproto's `Message::decode`. This target found that
//! dhcproto stops decoding options at the first one it cannot decode, dropping the server
//! identifier after it, and that its decoder panics (`debug_assert!`) on option 94 of the
//! wrong length; its `chaddr()` also panics for `hlen` above 16. The decoder now reads replies
//! by offset; the seeds keep those inputs.
//!
//! The decoder is crate-private; rather than making it public for this target, its source file
//! is compiled into the target as a module (it uses only dhcproto, etherconn-core and std).
//! See docs/fuzzing.md.
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/etherconn-dhcp-fleet/src/message.rs"]
mod message;

use std::collections::HashMap;
use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use message::{decode_reply, ReplyKind};

const OPTIONS_AT: usize = 240;

fuzz_target!(|data: &[u8]| {
    let Ok(reply) = decode_reply(data) else {
        return;
    };
    assert!(data.len() >= OPTIONS_AT, "accepted {} bytes", data.len());
    assert_eq!(data[0], 2, "op is not BOOTREPLY");
    assert_eq!(data[1], 1, "htype is not Ethernet");
    assert_eq!(data[2], 6, "hlen is not 6");
    assert_eq!(data[236..240], [99, 130, 83, 99], "magic cookie");
    let be32 = |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    assert_eq!(reply.xid, be32(4));
    assert_eq!(reply.yiaddr, Ipv4Addr::from(be32(16)));
    assert_eq!(reply.mac.0, data[28..34]);

    let opts = options(&data[OPTIONS_AT..]);
    if opts.contains_key(&52) {
        // Option overload moves options into `sname`/`file`: not modelled here.
        return;
    }
    let single = |code: u8| match opts.get(&code).map(Vec::as_slice) {
        Some([value]) => Some(*value),
        _ => None,
    };
    if let Some(&[t]) = single(53) {
        let want = match t {
            2 => ReplyKind::Offer,
            5 => ReplyKind::Ack,
            6 => ReplyKind::Nak,
            other => panic!("accepted message type {other}"),
        };
        assert_eq!(reply.kind, want);
    }
    if let Some(v @ &[_, _, _, _]) = single(54) {
        assert_eq!(reply.server, Some(Ipv4Addr::new(v[0], v[1], v[2], v[3])));
    }
    if let Some(v @ &[_, _, _, _]) = single(51) {
        assert_eq!(
            reply.lease_secs,
            Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
        );
    }
});

/// Every option in `opts` up to the End option (or a truncated one), by code, each occurrence's
/// value in order.
fn options(mut opts: &[u8]) -> HashMap<u8, Vec<&[u8]>> {
    let mut found: HashMap<u8, Vec<&[u8]>> = HashMap::new();
    while let Some((&code, rest)) = opts.split_first() {
        match code {
            0 => opts = rest,
            255 => break,
            _ => {
                let Some((&len, rest)) = rest.split_first() else {
                    break;
                };
                let Some(value) = rest.get(..usize::from(len)) else {
                    break;
                };
                found.entry(code).or_default().push(value);
                opts = &rest[usize::from(len)..];
            }
        }
    }
    found
}
