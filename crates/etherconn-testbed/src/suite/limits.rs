//! What the relay knows of its link: the MTU and the sizes it allows for every VLAN stack, and
//! which EtherTypes it receives.

use std::io::ErrorKind;
use std::sync::Arc;

use etherconn_core::bpf::{ethertype_filter, FilterOptions};
use etherconn_core::build::{build_ethernet_frame, L2Header};
use etherconn_core::wire::{EtherType, MacAddr, Tpid, VlanTag};
use etherconn_relay::{EtherConn, EtherConnConfig, PacketRelay, RelayError};

use super::common::{assert_no_leftovers, open_in, tag, Backend, Oversize, ET, WAIT};
use crate::{Side, Testbed};

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0xec, 0x16, 0, 0, n])
}

/// A relay on `side` that receives `ethertypes` (with a filter, exactly those).
fn receiving(
    backend: &Backend,
    tb: &Testbed,
    side: Side,
    ethertypes: &[EtherType],
) -> Arc<dyn PacketRelay> {
    match backend.ethertype_filter {
        Some(f) => open_in(tb, side, |i| (f.open_with_ethertypes)(i, ethertypes)),
        None => open_in(tb, side, backend.open),
    }
}

/// The relay reads its interface's MTU (`ip link set mtu 1400`) and sizes `max_payload()`
/// from it for seven VLAN stacks as a packet socket would (4 bytes over the MTU only behind an
/// outer 802.1Q tag). The largest payload crosses to a relay on the peer whole; one byte more
/// is refused up front, before the kernel. A frame built by hand at the limit goes and arrives
/// whole; one byte more is refused in the link's terms ([`Backend::oversize`] says by whom),
/// on the single and the batch path, counted as send errors; a batch sends what comes before
/// it.
pub fn max_payload_follows_the_interface_mtu(backend: &Backend) {
    let prefix = &backend.prefix("mtu");
    let tb = Testbed::new(prefix).unwrap();
    for side in [Side::A, Side::B] {
        tb.netns(side)
            .ip(&["link", "set", tb.ifname(side), "mtu", "1400"])
            .unwrap();
    }
    let tx = receiving(backend, &tb, Side::B, &[ET]);
    let rx = receiving(backend, &tb, Side::A, &[ET]);
    assert_eq!(tx.mtu(), 1400);
    assert_eq!(rx.mtu(), 1400);
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

        // A frame built by hand and handed to the relay: the largest `size_limit` allows goes
        // and reaches the peer's conn whole; one byte more is refused in the link's terms.
        let limit = tx.size_limit(vlans);
        let header = L2Header {
            src_mac: sender.local_mac(),
            dst_mac: receiver.local_mac(),
            vlans,
            ethertype: ET,
        };
        let mut frame = vec![0u8; 4096];
        let len = build_ethernet_frame(&mut frame, &header, &vec![7; limit.payload()]).unwrap();
        tx.send(&frame[..len], Some(WAIT))
            .unwrap_or_else(|e| panic!("a {len}-byte frame: {e}"));
        let (got, _) = receiver.recv_from(&mut buf).unwrap();
        assert_eq!(
            got,
            limit.payload(),
            "the peer got the frame at the limit whole"
        );

        let len = build_ethernet_frame(&mut frame, &header, &vec![7; limit.payload() + 1]).unwrap();
        let errors = tx.stats().tx_errors;
        let e = tx
            .send(&frame[..len], Some(WAIT))
            .expect_err("a frame past the MTU is refused");
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
        match backend.oversize {
            Oversize::KernelErrno => {
                let emsgsize = std::io::Error::from_raw_os_error(libc::EMSGSIZE).to_string();
                assert!(text.ends_with(&emsgsize), "the kernel's EMSGSIZE: {text}");
            }
            Oversize::KernelWords(words) => {
                assert!(text.ends_with(words), "the kernel's EMSGSIZE: {text}");
            }
            Oversize::Relay => assert!(e.raw_os_error().is_none(), "the relay's: {e:?}"),
        }
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
        assert_eq!(receiver.queued(), 0, "nothing past the limit arrived");
    }
    tx.stop();
    rx.stop();
    drop(tb);
    assert_no_leftovers(prefix);
}

/// A relay with an EtherType filter ([`Backend::ethertype_filter`]) refuses an `EtherConn` for
/// an EtherType it drops, with a typed error that says where to list it, registers one its
/// configuration lists, whose frames then arrive, and refuses nothing under a user's filter
/// program. A relay without one receives every EtherType, and frames of one no default filter
/// passes arrive.
pub fn ethertypes_the_relay_receives(backend: &Backend) {
    let prefix = &backend.prefix("et");
    let tb = Testbed::new(prefix).unwrap();
    if backend.ethertype_filter.is_some() {
        // The default relay passes ARP, IPv4 and IPv6 only.
        let default = open_in(&tb, Side::B, backend.open);
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
    }

    // Listed in the relay's configuration (or with no filter), the EtherType registers and its
    // frames arrive.
    let rx = receiving(backend, &tb, Side::B, &[EtherType::ARP, ET]);
    let tx = open_in(&tb, Side::A, backend.open);
    for et in [ET, EtherType::ARP] {
        assert!(rx.receives(et), "{et:?}");
    }
    if backend.ethertype_filter.is_none() {
        for et in [EtherType(0x88cc), EtherType::IPV4] {
            assert!(rx.receives(et), "{et:?}");
        }
    }
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
    tx.stop();

    // Under a user's filter program the relay cannot tell, and refuses nothing.
    if let Some(f) = backend.ethertype_filter {
        let program = ethertype_filter(&[EtherType::IPV4], FilterOptions::default()).unwrap();
        let custom = open_in(&tb, Side::B, |i| (f.open_with_program)(i, program));
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
    }
    drop(tb);
    assert_no_leftovers(prefix);
}
