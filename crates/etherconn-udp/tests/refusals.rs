//! What the UDP conns refuse, and how they say so, through the loopback relay (a 1500-byte MTU
//! link): destinations no receiver takes (port 0, the unspecified address), payloads past the
//! link's limit, a second conn on a taken MAC (the error names `SharedEtherConn`), and the
//! endpoint rules of the relay (group or zero MACs, VLAN 4095, a queue of no frames) as they
//! reach a UDP conn's constructor. Each refusal is checked for its variant, its
//! `io::ErrorKind` and its message, and for sending nothing.

mod common;

use std::io;
use std::sync::Arc;

use common::*;
use etherconn_core::wire::{EtherType, MacAddr, Tpid, VlanId, VlanTag};
use etherconn_relay::{PacketRelay, RelayError};
use etherconn_udp::{RUdpConfig, RUdpConn, SharedConfig, SharedEtherConn, SharingConfig, UdpError};

fn rudp(relay: &Arc<dyn PacketRelay>, m: MacAddr, vlans: &[VlanTag], local: &str) -> RUdpConn {
    RUdpConn::new(relay.clone(), m, vlans, sa(local), RUdpConfig::default()).unwrap()
}

#[test]
fn port_0_and_unspecified_destinations_are_refused_before_sending() {
    let relay = relay();
    let v4 = rudp(&relay, mac(1), &[], "192.0.2.1:4000");
    let v6 = rudp(&relay, mac(2), &[], "[2001:db8::1]:4000");
    let shared = SharedEtherConn::new(relay.clone(), mac(3), &[], SharedConfig::default()).unwrap();
    let sharing = shared
        .bind(sa("192.0.2.3:4000"), SharingConfig::default())
        .unwrap();
    let tx = relay.stats().tx;
    for (dst, reason) in [
        ("192.0.2.2:0", "UDP destination port 0 is reserved"),
        ("[2001:db8::2]:0", "UDP destination port 0 is reserved"),
        ("0.0.0.0:53", "the unspecified address names no host"),
        ("[::]:53", "the unspecified address names no host"),
    ] {
        let dst = sa(dst);
        let conn_errors = if dst.is_ipv4() {
            [
                v4.send_to(b"x", dst).unwrap_err(),
                v4.send_batch(&[(b"x", dst)]).unwrap_err(),
                sharing.send_to(b"x", dst).unwrap_err(),
            ]
        } else {
            [
                v6.send_to(b"x", dst).unwrap_err(),
                v6.send_batch(&[(b"x", dst)]).unwrap_err(),
                v6.send_to_from(b"x", sa("[2001:db8::9]:9"), dst)
                    .unwrap_err(),
            ]
        };
        for e in conn_errors {
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
            assert!(
                matches!(udp_error(&e), UdpError::BadDestination { dst: d, .. } if *d == dst),
                "{e:?}"
            );
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("cannot send to {dst}: ")),
                "{text}"
            );
            assert!(text.contains(reason), "{text}");
        }
    }
    assert_eq!(relay.stats().tx, tx, "nothing was sent");
}

#[test]
fn payloads_past_the_link_limit_are_refused_with_the_reason() {
    let relay = relay();
    let s_tag = VlanTag::new(Tpid::QINQ, VlanId::new(300).unwrap());
    let c_tag = VlanTag::dot1q(10).unwrap();
    // 1500 less 20 (IPv4) or 40 (IPv6) and 8; an 802.1Q outer tag costs nothing, an 802.1ad
    // outer tag or a second tag 4 bytes each.
    let cases: [(&[VlanTag], &str, &str, usize); 5] = [
        (&[], "192.0.2.1:1", "192.0.2.9:9", 1472),
        (&[c_tag], "192.0.2.1:1", "192.0.2.9:9", 1472),
        (&[s_tag, c_tag], "192.0.2.1:1", "192.0.2.9:9", 1464),
        (&[], "[2001:db8::1]:1", "[2001:db8::9]:9", 1452),
        (&[c_tag, c_tag], "[2001:db8::1]:1", "[2001:db8::9]:9", 1448),
    ];
    for (i, (vlans, local, dst, max)) in cases.into_iter().enumerate() {
        let c = rudp(&relay, mac(i as u8 + 1), vlans, local);
        assert_eq!(c.max_payload(), max, "{vlans:?} {local}");
        assert_eq!(c.send_to(&vec![1; max], sa(dst)).unwrap(), max);
        let tx = relay.stats().tx;
        let e = c.send_to(&vec![1; max + 1], sa(dst)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(
            matches!(udp_error(&e), UdpError::TooLarge { len, max: m, .. } if (*len, *m) == (max + 1, max)),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "UDP payload of {} bytes does not fit one frame: at most {max} bytes here \
                 (the interface MTU of 1500 bytes",
                max + 1
            )),
            "{text}"
        );
        let tag_cost = 1500 - 28 - max - if local.starts_with('[') { 20 } else { 0 };
        if tag_cost > 0 {
            assert!(
                text.contains(&format!("less {tag_cost} bytes for VLAN tags")),
                "{text}"
            );
        }
        assert!(text.ends_with("nothing is fragmented"), "{text}");
        assert_eq!(relay.stats().tx, tx, "nothing was sent");
    }
}

#[test]
fn a_second_rudp_conn_on_a_taken_mac_is_pointed_at_shared_ether_conn() {
    let relay = relay();
    let _first = rudp(&relay, mac(1), &[], "192.0.2.1:4000");
    let e = RUdpConn::new(
        relay.clone(),
        mac(1),
        &[],
        sa("192.0.2.1:4001"),
        RUdpConfig::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, UdpError::Relay(RelayError::KeyInUse(k)) if k.mac == mac(1)),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("is already registered to another conn"),
        "{text}"
    );
    assert!(text.contains("open one SharedEtherConn"), "{text}");
    assert!(text.contains("SharingRUdpConn"), "{text}");
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::AddrInUse);
}

#[test]
fn endpoint_rules_reach_the_udp_constructors() {
    let relay = relay();
    let check = |e: UdpError, words: &str| {
        let text = e.to_string();
        assert!(matches!(e, UdpError::Relay(_)), "{e:?}");
        assert!(text.contains(words), "{text}");
        assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
    };
    let new = |m: MacAddr, vlans: &[VlanTag], cfg: RUdpConfig| {
        RUdpConn::new(relay.clone(), m, vlans, sa("192.0.2.1:1"), cfg).unwrap_err()
    };
    check(
        new(MacAddr::BROADCAST, &[], RUdpConfig::default()),
        "ff:ff:ff:ff:ff:ff cannot be an endpoint's MAC: it is a group",
    );
    check(
        new(MacAddr::UNSPECIFIED, &[], RUdpConfig::default()),
        "00:00:00:00:00:00 cannot be an endpoint's MAC: it is the all-zero address",
    );
    check(
        new(
            mac(1),
            &[VlanTag::dot1q(4095).unwrap()],
            RUdpConfig::default(),
        ),
        "VLAN id 4095 is reserved",
    );
    check(
        new(mac(1), &[], RUdpConfig::default().queue_depth(0)),
        "queue depth 0",
    );
    let shared = |m: MacAddr, cfg: SharedConfig| {
        SharedEtherConn::new(relay.clone(), m, &[], cfg).unwrap_err()
    };
    check(
        shared(MacAddr([0x01, 0, 0x5e, 0, 0, 1]), SharedConfig::default()),
        "01:00:5e:00:00:01 cannot be an endpoint's MAC",
    );
    check(
        shared(mac(1), SharedConfig::default().queue_depth(0)),
        "queue depth 0",
    );
    // A sharing conn's own queue obeys the same rule, and a refusal reserves nothing.
    let s = SharedEtherConn::new(relay.clone(), mac(1), &[], SharedConfig::default()).unwrap();
    let reserved = relay.dispatcher().budget().reserved();
    let e = s
        .bind(sa("192.0.2.1:1"), SharingConfig::default().queue_depth(0))
        .unwrap_err();
    check(e, "queue depth 0");
    assert_eq!(relay.dispatcher().budget().reserved(), reserved);
    assert_eq!(
        relay.dispatcher().key_count(),
        3,
        "only the shared conn's keys"
    );
}

/// A loopback relay behind a kernel-like filter that passes only some EtherTypes.
#[derive(Debug)]
struct FilteredRelay {
    inner: Arc<etherconn_relay::LoopbackRelay>,
    passes: Vec<EtherType>,
}

impl PacketRelay for FilteredRelay {
    fn dispatcher(&self) -> &Arc<etherconn_relay::Dispatcher> {
        self.inner.dispatcher()
    }

    fn send(&self, frame: &[u8], timeout: Option<std::time::Duration>) -> io::Result<()> {
        self.inner.send(frame, timeout)
    }

    fn receives(&self, ethertype: EtherType) -> bool {
        self.passes.contains(&ethertype)
    }

    fn stop(&self) {
        self.inner.stop();
    }
}

fn filtered(passes: &[EtherType]) -> Arc<dyn PacketRelay> {
    Arc::new(FilteredRelay {
        inner: etherconn_relay::LoopbackRelay::new(Default::default()),
        passes: passes.to_vec(),
    })
}

#[test]
fn conns_register_only_what_the_relay_receives() {
    // An IPv4-only relay: an IPv4 RUdpConn registers, an IPv6 one is refused, and a shared
    // endpoint registers IPv4 alone.
    let relay = filtered(&[EtherType::IPV4]);
    let v4 = RUdpConn::new(
        relay.clone(),
        mac(1),
        &[],
        sa("192.0.2.1:1"),
        RUdpConfig::default().resolver(|_| Some(mac(3))),
    )
    .unwrap();
    let e = RUdpConn::new(
        relay.clone(),
        mac(2),
        &[],
        sa("[2001:db8::2]:1"),
        RUdpConfig::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, UdpError::Relay(RelayError::EtherTypeFiltered(et)) if et == EtherType::IPV6),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("the relay does not receive EtherType 0x86dd"),
        "{e}"
    );
    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
    let shared = SharedEtherConn::new(relay.clone(), mac(3), &[], SharedConfig::default()).unwrap();
    let ets: Vec<EtherType> = shared
        .ether_conn()
        .keys()
        .iter()
        .map(|k| k.ethertype)
        .collect();
    assert_eq!(ets, [EtherType::IPV4]);
    let c = shared
        .bind(sa("192.0.2.3:1"), SharingConfig::default())
        .unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    v4.send_to(b"hi", sa("192.0.2.3:1")).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(c.recv_from(&mut buf).unwrap(), (2, sa("192.0.2.1:1")));

    // A relay that receives ARP alone: no IP family, so the shared endpoint is refused.
    let arp_only = filtered(&[EtherType::ARP]);
    let e = SharedEtherConn::new(arp_only, mac(4), &[], SharedConfig::default()).unwrap_err();
    assert!(
        matches!(e, UdpError::Relay(RelayError::EtherTypeFiltered(et)) if et == EtherType::IPV4),
        "{e:?}"
    );
}
