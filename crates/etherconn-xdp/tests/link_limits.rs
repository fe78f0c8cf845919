//! The AF_XDP relay knows its link like the AF_PACKET and libpcap relays do: it reads the
//! interface's MTU, sizes `max_payload()` from it for every VLAN stack, and refuses a frame
//! past it with the same error those relays give. Checked over a veth pair between two network
//! namespaces, an `XdpRelay` on each end: what one sends at the limit, the other receives
//! whole.
//!
//! An AF_XDP socket in copy mode does not check a frame's size against the MTU (a veth drops
//! what its peer cannot take, without a word), so the relay itself refuses a frame a packet
//! socket would refuse with `EMSGSIZE`: its whole length past the MTU plus the Ethernet
//! header, plus 4 when the outermost tag is 802.1Q.
//!
//! Root only: without root each test prints a skip line and passes, unless
//! `ETHERCONN_REQUIRE_ROOT_TESTS=1`, which makes it fail instead.
#![cfg(target_os = "linux")]

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::build::{build_ethernet_frame, L2Header};
use etherconn_core::wire::{EtherType, MacAddr, Tpid, VlanId, VlanTag};
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay};
use etherconn_testbed::{Side, Testbed};
use etherconn_xdp::{XdpRelay, XdpRelayConfig};

const ET: EtherType = EtherType(0x88b5);
const WAIT: Duration = Duration::from_secs(5);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0xec, 0x18, 0, 0, n])
}

fn tag(tpid: Tpid, id: u16) -> VlanTag {
    VlanTag::new(tpid, VlanId::new(id).unwrap())
}

fn relay_in(tb: &Testbed, side: Side) -> Arc<dyn PacketRelay> {
    let ifname = tb.ifname(side).to_owned();
    let relay: Arc<dyn PacketRelay> = tb
        .netns(side)
        .run_in(move || XdpRelay::new(&ifname, XdpRelayConfig::default()))
        .unwrap()
        .unwrap();
    relay
}

fn assert_no_leftovers(prefix: &str) {
    let left = etherconn_testbed::leftover_namespaces(&etherconn_testbed::process_prefix(prefix));
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}

#[test]
fn max_payload_follows_the_interface_mtu_and_the_peer_receives_it() {
    if !etherconn_testbed::require_root("max_payload_follows_the_interface_mtu") {
        return;
    }
    let prefix = "ecxm-mtu-";
    let tb = Testbed::new(prefix).unwrap();
    for side in [Side::A, Side::B] {
        tb.netns(side)
            .ip(&["link", "set", tb.ifname(side), "mtu", "1400"])
            .unwrap();
    }
    let tx = relay_in(&tb, Side::B);
    let rx = relay_in(&tb, Side::A);
    assert_eq!(tx.mtu(), 1400);
    assert_eq!(rx.mtu(), 1400);
    // The same limits as a packet socket's: 4 bytes over the MTU only for an outer 802.1Q tag.
    let stacks: [(&[VlanTag], usize); 5] = [
        (&[], 1400),
        (&[tag(Tpid::DOT1Q, 100)], 1400),
        (&[tag(Tpid::QINQ, 100)], 1396),
        (&[tag(Tpid::DOT1Q, 10), tag(Tpid::DOT1Q, 20)], 1396),
        (&[tag(Tpid::QINQ, 10), tag(Tpid::DOT1Q, 20)], 1392),
    ];
    let ecfg = || EtherConnConfig::default().ethertypes(&[ET]);
    for (i, (vlans, max)) in stacks.into_iter().enumerate() {
        let n = i as u8 * 2;
        let sender = EtherConn::new(tx.clone(), mac(n + 1), vlans, ecfg()).unwrap();
        let receiver = EtherConn::new(rx.clone(), mac(n + 2), vlans, ecfg()).unwrap();
        receiver.set_read_timeout(Some(WAIT)).unwrap();
        assert_eq!(sender.max_payload(), max, "{} tag(s)", vlans.len());

        // The largest payload crosses the link whole, into the peer relay's UMEM.
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

        // A frame built by hand and handed to the relay: the largest `size_limit` allows goes
        // and reaches the peer's conn; one byte more is refused by the relay in the link's
        // terms, on the single and the batch path, and counted as a send error.
        let limit = tx.size_limit(vlans);
        for (payload, ok) in [(limit.payload(), true), (limit.payload() + 1, false)] {
            let mut frame = vec![0u8; 4096];
            let header = L2Header {
                src_mac: sender.local_mac(),
                dst_mac: receiver.local_mac(),
                vlans,
                ethertype: ET,
            };
            let len = build_ethernet_frame(&mut frame, &header, &vec![7; payload]).unwrap();
            let errors = tx.stats().tx_errors;
            let sent = tx.send(&frame[..len], Some(WAIT));
            if ok {
                sent.unwrap_or_else(|e| panic!("a {len}-byte frame: {e}"));
                let (got, _) = receiver.recv_from(&mut buf).unwrap();
                assert_eq!(got, payload, "the peer got the frame at the limit whole");
                continue;
            }
            let e = sent.expect_err("the relay refuses a frame past the MTU");
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.raw_os_error().is_none(), "{e:?}");
            let text = e.to_string();
            assert!(
                text.starts_with(&format!(
                    "a {len}-byte frame does not fit the 1400-byte MTU of {} (at most \
                     1414 bytes, 1418 behind an outer 802.1Q tag",
                    tb.b_if
                )),
                "{text}"
            );
            let e = tx.send_batch(&[&frame[..len]], Some(WAIT)).unwrap_err();
            assert_eq!(e.to_string(), text, "the batch path says the same");
            assert_eq!(tx.stats().tx_errors, errors + 2);
            // In a batch, the frames before it go and the count says where it stopped.
            let mut small = vec![0u8; 128];
            let small_len = build_ethernet_frame(&mut small, &header, b"before").unwrap();
            let batch: [&[u8]; 2] = [&small[..small_len], &frame[..len]];
            assert_eq!(tx.send_batch(&batch, Some(WAIT)).unwrap(), 1);
            let (got, _) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(
                &buf[..6],
                b"before",
                "{got} bytes (padded to the minimum frame)"
            );
        }
        assert_eq!(receiver.queued(), 0, "nothing past the limit arrived");
    }
    tx.stop();
    rx.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}

/// The XDP program redirects by registered key, whatever the EtherType: the relay refuses no
/// EtherType, and frames of an EtherType no other relay's default filter passes arrive.
#[test]
fn every_ethertype_registers_and_arrives() {
    if !etherconn_testbed::require_root("every_ethertype_registers_and_arrives") {
        return;
    }
    let prefix = "ecxm-et-";
    let tb = Testbed::new(prefix).unwrap();
    let rx = relay_in(&tb, Side::B);
    let tx = relay_in(&tb, Side::A);
    for et in [ET, EtherType(0x88cc), EtherType::IPV4, EtherType::ARP] {
        assert!(rx.receives(et), "{et:?}");
    }
    let ecfg = EtherConnConfig::default().ethertypes(&[ET]);
    let receiver = EtherConn::new(rx.clone(), mac(2), &[], ecfg).unwrap();
    receiver.set_read_timeout(Some(WAIT)).unwrap();
    let sender = EtherConn::new(tx.clone(), mac(3), &[], EtherConnConfig::default()).unwrap();
    sender.send_to(b"through the program", ET, mac(2)).unwrap();
    let mut buf = [0u8; 128];
    let (n, peer) = receiver.recv_from(&mut buf).unwrap();
    assert_eq!(peer.mac, mac(3));
    assert_eq!(&buf[..19], b"through the program", "{n} bytes");
    rx.stop();
    tx.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}
