//! Fuzzes the dnsmasq lease-file parser (`parse_dnsmasq_leases`) with any text.
//!
//! It must never panic, and it must return exactly one lease per line whose second field is a
//! MAC spelt as six octets of one or two hexadecimal digits, all separated by `:` or all by
//! `-`, and whose third field is an IPv4 address in dotted decimal without leading zeros; in the
//! file's order, each lease's MAC and address formatting as the line spells them (up to letter
//! case and one-digit octets). The model of those spellings is written here, not taken from the
//! parser. The input is read as UTF-8 with invalid sequences replaced, as a lease file is text.
//! See docs/fuzzing.md.
#![no_main]

use etherconn_dhcp_fleet::parse_dnsmasq_leases;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let leases = parse_dnsmasq_leases(&text);
    assert!(leases.len() <= text.lines().count());
    let mut next = leases.iter().peekable();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(mac), Some(ip)) = (fields.get(1), fields.get(2)) else {
            continue;
        };
        let Some(mac) = normalise_mac(mac) else {
            continue;
        };
        if !is_dotted_quad(ip) {
            continue;
        }
        match next.next() {
            Some((m, i)) => {
                assert_eq!(mac, m.to_string(), "line {line:?}");
                assert_eq!(*ip, i.to_string(), "line {line:?}");
            }
            None => panic!("line {line:?} yields no lease"),
        }
    }
    assert!(
        next.peek().is_none(),
        "leases from no line: {:?}",
        next.collect::<Vec<_>>()
    );
});

/// `AA-b-...` as `aa:0b:...`, or `None` if `s` is not six octets of one or two hexadecimal
/// digits all separated by `:` or all by `-`.
fn normalise_mac(s: &str) -> Option<String> {
    let sep = if s.contains('-') { '-' } else { ':' };
    let octets: Vec<&str> = s.split(sep).collect();
    let valid = octets.len() == 6
        && octets
            .iter()
            .all(|o| (1..=2).contains(&o.len()) && o.bytes().all(|c| c.is_ascii_hexdigit()));
    valid.then(|| {
        octets
            .iter()
            .map(|o| format!("{:0>2}", o.to_ascii_lowercase()))
            .collect::<Vec<_>>()
            .join(":")
    })
}

/// Four decimal octets of at most 255, with no leading zeros.
fn is_dotted_quad(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|v| v <= 255)
        })
}
