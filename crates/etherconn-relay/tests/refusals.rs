//! What an `EtherConn` refuses, and how it says so: endpoints no receiver could reach (group or
//! all-zero MACs, the reserved VLAN id, EtherTypes the relay never receives, a queue of no
//! frames), a key another conn holds, and payloads larger than the link carries. Each refusal
//! is checked for its error variant, its `io::ErrorKind` and the words of its message, and for
//! leaving nothing registered or reserved.

use std::io::{self, ErrorKind};
use std::sync::Arc;
use std::time::Duration;

use etherconn_core::wire::{EtherType, MacAddr, Tpid, VlanId, VlanTag};
use etherconn_relay::{Dispatcher, DispatcherConfig, LoopbackRelay, PacketRelay, RelayError};
use etherconn_relay::{EtherConn, EtherConnConfig, SizeLimit};

const ET: EtherType = EtherType(0x88b5);

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

fn cfg() -> EtherConnConfig {
    EtherConnConfig::default().ethertypes(&[ET])
}

fn tag(id: u16) -> VlanTag {
    VlanTag::dot1q(id).unwrap()
}

/// The refusal of `EtherConn::new` and its message, checking what every refusal shares: the
/// relay holds no new key and no new reservation afterwards. (Callers check the `io::Error`
/// kind the error becomes.)
fn refused(
    r: &Arc<dyn PacketRelay>,
    m: MacAddr,
    vlans: &[VlanTag],
    c: EtherConnConfig,
) -> (RelayError, String) {
    let keys = r.dispatcher().key_count();
    let reserved = r.dispatcher().budget().reserved();
    let err = EtherConn::new(r.clone(), m, vlans, c).expect_err("registration must fail");
    let text = err.to_string();
    assert_eq!(r.dispatcher().key_count(), keys, "{text}: a key was left");
    assert_eq!(
        r.dispatcher().budget().reserved(),
        reserved,
        "{text}: memory was left reserved"
    );
    (err, text)
}

fn loopback() -> Arc<dyn PacketRelay> {
    LoopbackRelay::new(DispatcherConfig::default())
}

#[test]
fn group_and_zero_endpoint_macs_are_refused() {
    let r = loopback();
    for (bad, why) in [
        (MacAddr::BROADCAST, "group (multicast or broadcast)"),
        (
            MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]),
            "group (multicast or broadcast)",
        ),
        (
            MacAddr([0x33, 0x33, 0, 0, 0, 1]),
            "group (multicast or broadcast)",
        ),
        (MacAddr::UNSPECIFIED, "all-zero address"),
    ] {
        let (err, text) = refused(&r, bad, &[], cfg());
        assert!(
            matches!(err, RelayError::NotStationMac { mac, .. } if mac == bad),
            "{err:?}"
        );
        assert!(
            text.contains(&format!("{bad} cannot be an endpoint's MAC")),
            "{text}"
        );
        assert!(text.contains(why), "{text}");
        assert_eq!(io::Error::from(err).kind(), ErrorKind::InvalidInput);
    }
    // A locally administered unicast MAC is fine.
    assert!(EtherConn::new(r, mac(1), &[], cfg()).is_ok());
}

#[test]
fn reserved_vlan_4095_is_refused_in_either_position_and_vlan_0_is_not() {
    let r = loopback();
    let qinq = |outer: u16, inner: u16| {
        [
            VlanTag::new(Tpid::QINQ, VlanId::new(outer).unwrap()),
            tag(inner),
        ]
    };
    for vlans in [
        vec![tag(4095)],
        qinq(4095, 7).to_vec(),
        qinq(7, 4095).to_vec(),
    ] {
        let (err, text) = refused(&r, mac(1), &vlans, cfg());
        assert!(matches!(err, RelayError::InvalidConfig(_)), "{err:?}");
        assert!(text.contains("VLAN id 4095 is reserved"), "{text}");
        assert_eq!(io::Error::from(err).kind(), ErrorKind::InvalidInput);
    }
    // Id 0 is a priority tag, id 4094 the last VLAN: both register.
    assert!(EtherConn::new(r.clone(), mac(1), &[tag(0)], cfg()).is_ok());
    assert!(EtherConn::new(r.clone(), mac(2), &qinq(4094, 4094), cfg()).is_ok());
    // Three tags: 4095 is refused in the innermost place too.
    let (err, text) = refused(&r, mac(3), &[tag(1), tag(2), tag(4095)], cfg());
    assert!(matches!(err, RelayError::InvalidConfig(_)), "{err:?}");
    assert!(text.contains("VLAN id 4095 is reserved"), "{text}");
}

#[test]
fn three_tags_register_and_a_fourth_is_refused() {
    let r = loopback();
    let three = [
        VlanTag::new(Tpid::QINQ_LEGACY, VlanId::new(300).unwrap()),
        VlanTag::new(Tpid::QINQ, VlanId::new(200).unwrap()),
        tag(100),
    ];
    assert!(EtherConn::new(r.clone(), mac(1), &three, cfg()).is_ok());
    let four = [three[0], three[1], three[2], tag(50)];
    let (err, text) = refused(&r, mac(2), &four, cfg());
    assert!(
        matches!(err, RelayError::InvalidConfig("at most three VLAN tags")),
        "{err:?}"
    );
    assert!(text.contains("at most three VLAN tags"), "{text}");
}

#[test]
fn queue_depth_0_is_refused() {
    let r = loopback();
    let (err, text) = refused(&r, mac(1), &[], cfg().queue_depth(0));
    assert!(matches!(err, RelayError::InvalidConfig(_)), "{err:?}");
    assert!(text.contains("queue depth 0"), "{text}");
    assert_eq!(io::Error::from(err).kind(), ErrorKind::InvalidInput);
    let one = EtherConn::new(r, mac(1), &[], cfg().queue_depth(1)).unwrap();
    one.send_to(b"a", ET, mac(1)).unwrap();
    one.send_to(b"b", ET, mac(1)).unwrap();
    assert_eq!(one.queued(), 1, "a queue of one holds one frame");
}

#[test]
fn duplicate_key_error_names_shared_ether_conn() {
    let r = loopback();
    let _a = EtherConn::new(r.clone(), mac(1), &[], cfg()).unwrap();
    let (err, text) = refused(&r, mac(1), &[], cfg());
    assert!(
        matches!(err, RelayError::KeyInUse(k) if k.mac == mac(1)),
        "{err:?}"
    );
    assert!(
        text.contains("already registered to another conn"),
        "{text}"
    );
    assert!(text.contains("SharedEtherConn"), "{text}");
    assert!(text.contains("EtherConnConfig::replace"), "{text}");
    assert_eq!(io::Error::from(err).kind(), ErrorKind::AddrInUse);
}

/// A loopback relay behind a kernel-like filter that passes only some EtherTypes.
#[derive(Debug)]
struct FilteredRelay {
    inner: Arc<LoopbackRelay>,
    passes: Vec<EtherType>,
}

impl PacketRelay for FilteredRelay {
    fn dispatcher(&self) -> &Arc<Dispatcher> {
        self.inner.dispatcher()
    }

    fn send(&self, frame: &[u8], timeout: Option<Duration>) -> io::Result<()> {
        self.inner.send(frame, timeout)
    }

    fn receives(&self, ethertype: EtherType) -> bool {
        self.passes.contains(&ethertype)
    }

    fn stop(&self) {
        self.inner.stop();
    }
}

#[test]
fn an_ethertype_the_relay_does_not_receive_is_refused() {
    let r: Arc<dyn PacketRelay> = Arc::new(FilteredRelay {
        inner: LoopbackRelay::new(DispatcherConfig::default()),
        passes: vec![EtherType::ARP, EtherType::IPV4, EtherType::IPV6],
    });
    // The default EtherTypes pass.
    let ok = EtherConn::new(r.clone(), mac(1), &[], EtherConnConfig::default()).unwrap();
    drop(ok);
    for ets in [vec![ET], vec![EtherType::IPV4, ET]] {
        let c = EtherConnConfig::default().ethertypes(&ets);
        let (err, text) = refused(&r, mac(1), &[], c);
        assert!(
            matches!(err, RelayError::EtherTypeFiltered(et) if et == ET),
            "{err:?}"
        );
        assert!(
            text.contains("the relay does not receive EtherType 0x88b5"),
            "{text}"
        );
        assert!(text.contains("RawSocketRelayConfig::ethertypes"), "{text}");
        assert_eq!(io::Error::from(err).kind(), ErrorKind::InvalidInput);
    }
}

/// The `RelayError` inside an `io::Error` from a send.
fn relay_error(e: &io::Error) -> &RelayError {
    e.get_ref()
        .and_then(|e| e.downcast_ref::<RelayError>())
        .unwrap_or_else(|| panic!("not a RelayError: {e:?}"))
}

#[test]
fn payloads_over_the_link_limit_are_refused_up_front_with_the_reason() {
    let r = loopback();
    let vlan_stacks: [&[VlanTag]; 4] = [
        &[],
        &[tag(100)],
        &[VlanTag::new(Tpid::QINQ, VlanId::new(10).unwrap()), tag(20)],
        &[
            VlanTag::new(Tpid::QINQ, VlanId::new(10).unwrap()),
            tag(20),
            tag(30),
        ],
    ];
    for (i, (vlans, max)) in vlan_stacks
        .into_iter()
        .zip([1500, 1500, 1492, 1488])
        .enumerate()
    {
        let c = EtherConn::new(r.clone(), mac(i as u8 + 1), vlans, cfg()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        assert_eq!(c.max_payload(), max, "{} tag(s)", vlans.len());
        // The largest payload goes and comes back whole.
        let big = vec![0x5a; max];
        assert_eq!(c.send_to(&big, ET, c.local_mac()).unwrap(), max);
        let mut buf = vec![0u8; 4096];
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(n, max);
        // One byte more is refused before anything is sent.
        let tx = r.stats().tx;
        for len in [max + 1, 3000] {
            let e = c.send_to(&vec![0; len], ET, c.local_mac()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            match relay_error(&e) {
                RelayError::TooLarge { len: l, limit } => {
                    assert_eq!((*l, limit.payload(), limit.tags), (len, max, vlans.len()));
                }
                other => panic!("{other:?}"),
            }
            let text = e.to_string();
            assert!(
                text.starts_with(&format!(
                    "payload of {len} bytes does not fit one frame: at most {max} bytes fit"
                )),
                "{text}"
            );
            assert!(text.contains("the interface MTU of 1500 bytes"), "{text}");
            assert!(!text.contains("buffer"), "{text}");
            if vlans.len() >= 2 {
                let cost = 1500 - max;
                assert!(
                    text.contains(&format!(
                        "less {cost} bytes for VLAN tags (only an outermost 802.1Q tag"
                    )),
                    "{text}"
                );
            }
        }
        assert_eq!(r.stats().tx, tx, "nothing was sent");
    }
}

#[test]
fn a_jumbo_link_is_bounded_by_the_buffers_and_says_so() {
    let r: Arc<dyn PacketRelay> = LoopbackRelay::with_mtu(DispatcherConfig::default(), 9000);
    assert_eq!(r.mtu(), 9000);
    let c = EtherConn::new(r.clone(), mac(1), &[tag(5)], cfg()).unwrap();
    let limit = r.size_limit(&[tag(5)]);
    assert_eq!(limit, SizeLimit::new(9000, &[tag(5)], 2048));
    assert_eq!(c.max_payload(), 2048 - 18);
    c.send_to(&vec![1; 2030], ET, mac(1)).unwrap();
    let e = c.send_to(&vec![1; 2031], ET, mac(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let text = e.to_string();
    assert!(text.contains("at most 2030 bytes"), "{text}");
    assert!(
        text.contains("the relay's 2048-byte frame buffers less 18 bytes"),
        "{text}"
    );
}
