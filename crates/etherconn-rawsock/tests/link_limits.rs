//! The AF_PACKET relay knows its link: it reads the interface's MTU, sizes `max_payload()` from
//! it for every VLAN stack, and refuses an `EtherConn` for an EtherType its kernel filter
//! drops. Checked over a veth pair between two network namespaces, with the kernel as the
//! judge of sizes (the largest frame it takes from a packet socket, `EMSGSIZE` beyond) and a
//! relay in the other namespace receiving what was sent.
//!
//! A frame past the MTU that reaches the kernel anyway (built by hand and handed to
//! `PacketRelay::send`) comes back as the kernel's `EMSGSIZE` said in the link's terms.
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::bpf::{ethertype_filter, FilterOptions};
use etherconn_core::build::{build_ethernet_frame, L2Header};
use etherconn_core::wire::{EtherType, MacAddr, Tpid, VlanId, VlanTag};
use etherconn_rawsock::{RawSocketRelay, RawSocketRelayConfig};
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay, RelayError};
use etherconn_testbed::{Side, Testbed};

const ET: EtherType = EtherType(0x88b5);
const WAIT: Duration = Duration::from_secs(5);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0xec, 0x16, 0, 0, n])
}

fn tag(tpid: Tpid, id: u16) -> VlanTag {
    VlanTag::new(tpid, VlanId::new(id).unwrap())
}

fn relay_in(tb: &Testbed, side: Side, config: RawSocketRelayConfig) -> Arc<dyn PacketRelay> {
    let ifname = tb.ifname(side).to_owned();
    let relay = tb
        .netns(side)
        .run_in(move || RawSocketRelay::new(&ifname, config))
        .unwrap()
        .unwrap();
    relay
}

fn assert_no_leftovers(prefix: &str) {
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn max_payload_follows_the_interface_mtu_and_the_kernel_agrees() {
    if !etherconn_testbed::require_root("max_payload_follows_the_interface_mtu") {
        return;
    }
    let prefix = "eclm-mtu-";
    let tb = Testbed::new(prefix).unwrap();
    for side in [Side::A, Side::B] {
        tb.netns(side)
            .ip(&["link", "set", tb.ifname(side), "mtu", "1400"])
            .unwrap();
    }
    let cfg = || RawSocketRelayConfig::default().ethertypes(&[ET]);
    let tx = relay_in(&tb, Side::B, cfg());
    let rx = relay_in(&tb, Side::A, cfg());
    assert_eq!(tx.mtu(), 1400);
    assert_eq!(rx.mtu(), 1400);
    // Linux takes 4 bytes over the MTU from a packet socket only for an outer 802.1Q tag.
    let stacks: [(&[VlanTag], usize); 7] = [
        (&[], 1400),
        (&[tag(Tpid::DOT1Q, 100)], 1400),
        (&[tag(Tpid::QINQ, 100)], 1396),
        (&[tag(Tpid::DOT1Q, 10), tag(Tpid::DOT1Q, 20)], 1396),
        (&[tag(Tpid::QINQ, 10), tag(Tpid::DOT1Q, 20)], 1392),
        (
            &[
                tag(Tpid::DOT1Q, 10),
                tag(Tpid::DOT1Q, 20),
                tag(Tpid::DOT1Q, 30),
            ],
            1392,
        ),
        (
            &[
                tag(Tpid::QINQ, 10),
                tag(Tpid::DOT1Q, 20),
                tag(Tpid::DOT1Q, 30),
            ],
            1388,
        ),
    ];
    let ecfg = || EtherConnConfig::default().ethertypes(&[ET]);
    for (i, (vlans, max)) in stacks.into_iter().enumerate() {
        let n = i as u8 * 2;
        let sender = EtherConn::new(tx.clone(), mac(n + 1), vlans, ecfg()).unwrap();
        let receiver = EtherConn::new(rx.clone(), mac(n + 2), vlans, ecfg()).unwrap();
        receiver.set_read_timeout(Some(WAIT)).unwrap();
        assert_eq!(sender.max_payload(), max, "{} tag(s)", vlans.len());

        // The largest payload crosses the link whole.
        let big: Vec<u8> = (0..max).map(|i| i as u8).collect();
        sender
            .send_to(&big, ET, receiver.local_mac())
            .unwrap_or_else(|e| panic!("{vlans:?}: {e}"));
        let mut buf = vec![0u8; 4096];
        let (got, peer) = receiver.recv_from(&mut buf).unwrap();
        assert_eq!((got, peer.mac), (max, sender.local_mac()));
        assert_eq!(&buf[..got], &big[..]);

        // One byte more is refused up front, naming the size, the limit and the MTU.
        let e = sender
            .send_to(&vec![0; max + 1], ET, receiver.local_mac())
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "payload of {} bytes does not fit one frame: at most {max} bytes",
                max + 1
            )),
            "{text}"
        );
        assert!(text.contains("the interface MTU of 1400 bytes"), "{text}");
        assert!(
            e.raw_os_error().is_none(),
            "refused before the kernel: {e:?}"
        );

        // The kernel judges the limit the same way: the largest frame `size_limit` allows is
        // taken from a packet socket, one byte more is EMSGSIZE.
        let limit = tx.size_limit(vlans);
        for (payload, ok) in [(limit.payload(), true), (limit.payload() + 1, false)] {
            let mut frame = vec![0u8; 4096];
            let header = L2Header {
                src_mac: sender.local_mac(),
                dst_mac: MacAddr([0x02, 0xec, 0x16, 0xff, 0, 0]),
                vlans,
                ethertype: ET,
            };
            let len = build_ethernet_frame(&mut frame, &header, &vec![0; payload]).unwrap();
            let sent = tx.send(&frame[..len], Some(WAIT));
            if ok {
                sent.unwrap_or_else(|e| panic!("a {len}-byte frame: {e}"));
            } else {
                // The kernel's EMSGSIZE, said in the link's terms.
                let e = sent.expect_err("the kernel refuses a frame past the MTU");
                assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
                let text = e.to_string();
                assert!(
                    text.starts_with(&format!(
                        "a {len}-byte frame does not fit the 1400-byte MTU of {} (at most \
                         1414 bytes, 1418 behind an outer 802.1Q tag",
                        tb.b_if
                    )),
                    "{text}"
                );
                let emsgsize = std::io::Error::from_raw_os_error(libc::EMSGSIZE).to_string();
                assert!(text.ends_with(&emsgsize), "{text}");
                let e = tx.send_batch(&[&frame[..len]], Some(WAIT)).unwrap_err();
                assert_eq!(e.to_string(), text, "the batch path says the same");
            }
        }
    }
    tx.stop();
    rx.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}

#[test]
fn an_ethertype_the_kernel_filter_drops_is_refused() {
    if !etherconn_testbed::require_root("an_ethertype_the_kernel_filter_drops_is_refused") {
        return;
    }
    let prefix = "eclm-et-";
    let tb = Testbed::new(prefix).unwrap();
    // The default relay passes ARP, IPv4 and IPv6 only.
    let default = relay_in(&tb, Side::B, RawSocketRelayConfig::default());
    assert!(!default.receives(ET));
    let e = EtherConn::new(
        default.clone(),
        mac(1),
        &[],
        EtherConnConfig::default().ethertypes(&[ET]),
    )
    .unwrap_err();
    assert!(
        matches!(e, RelayError::EtherTypeFiltered(et) if et == ET),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("the relay does not receive EtherType 0x88b5"),
        "{text}"
    );
    assert!(text.contains("RawSocketRelayConfig::ethertypes"), "{text}");
    assert_eq!(std::io::Error::from(e).kind(), ErrorKind::InvalidInput);
    assert_eq!(default.dispatcher().key_count(), 0);
    // The default EtherTypes register.
    drop(EtherConn::new(default.clone(), mac(1), &[], EtherConnConfig::default()).unwrap());
    default.stop();

    // Listed in the relay's configuration, the EtherType registers and its frames arrive.
    let cfg = RawSocketRelayConfig::default().ethertypes(&[EtherType::ARP, ET]);
    let rx = relay_in(&tb, Side::B, cfg);
    let tx = relay_in(&tb, Side::A, RawSocketRelayConfig::default());
    let ecfg = EtherConnConfig::default().ethertypes(&[ET]);
    let receiver = EtherConn::new(rx.clone(), mac(2), &[], ecfg).unwrap();
    receiver.set_read_timeout(Some(WAIT)).unwrap();
    // A sender needs no receiving key for the EtherType: only what it receives is checked.
    let sender = EtherConn::new(tx.clone(), mac(3), &[], EtherConnConfig::default()).unwrap();
    sender.send_to(b"through the filter", ET, mac(2)).unwrap();
    let mut buf = [0u8; 128];
    let (n, peer) = receiver.recv_from(&mut buf).unwrap();
    assert_eq!(peer.mac, mac(3));
    assert_eq!(&buf[..18], b"through the filter", "{n} bytes");
    rx.stop();

    // Under a user's filter program the relay cannot tell, and refuses nothing.
    let program = ethertype_filter(&[EtherType::IPV4], FilterOptions::default()).unwrap();
    let custom = relay_in(
        &tb,
        Side::B,
        RawSocketRelayConfig::default().filter(program),
    );
    assert!(custom.receives(ET));
    drop(
        EtherConn::new(
            custom.clone(),
            mac(4),
            &[],
            EtherConnConfig::default().ethertypes(&[ET]),
        )
        .unwrap(),
    );
    custom.stop();
    tx.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}
