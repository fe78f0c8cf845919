//! The capture filter against the AF_PACKET relay's: the program the pcap relay installs where
//! the system has no ancillary VLAN loads (`without_ancillary_loads`) accepts and rejects
//! exactly the frames the core program does when no tag was moved out of the frame, judged
//! by two interpreters: `etherconn_core::bpf`'s and libpcap's own (`pcap_offline_filter`),
//! on random frames and on the scapy-built golden frames.

use etherconn_core::bpf::{ethertype_filter, FilterOptions, Program};
use etherconn_core::wire::EtherType;
use etherconn_pcap::filter::without_ancillary_loads;
use etherconn_pcap::sys::libpcap_filter_verdict;
use proptest::prelude::*;

/// TPIDs the filter skips, one that it does not (0x8a88), and EtherTypes in and out of the
/// default list.
const TYPES: [u16; 9] = [
    0x8100, 0x88a8, 0x9100, 0x8a88, 0x0800, 0x0806, 0x86dd, 0x88cc, 0x88b5,
];

fn frame(types: &[u16], tail: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for (i, t) in types.iter().enumerate() {
        f.extend_from_slice(&t.to_be_bytes());
        if i + 1 < types.len() {
            // The TCI of a tag (any value; the filter does not read it).
            f.extend_from_slice(&[0x00, 0x64]);
        }
    }
    f.resize(f.len() + tail, 0xab);
    f
}

/// The two programs and their verdicts on `f`, with both interpreters.
fn verdicts(core: &Program, inline: &Program, f: &[u8]) -> (bool, bool, bool) {
    let by_core = core.run(f, None) != 0;
    let inline_by_core = inline.run(f, None) != 0;
    let inline_by_libpcap = libpcap_filter_verdict(inline, f).expect("a valid program");
    (by_core, inline_by_core, inline_by_libpcap)
}

fn programs(ethertypes: &[EtherType], max_tags: usize) -> (Program, Program) {
    let opts = FilterOptions {
        max_tags,
        ..FilterOptions::default()
    };
    let core = ethertype_filter(ethertypes, opts).unwrap();
    let inline = without_ancillary_loads(&core);
    (core, inline)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn same_verdicts_on_random_frames(
        types in proptest::collection::vec(proptest::sample::select(&TYPES[..]), 1..6),
        tail in 0usize..40,
        cut in proptest::option::of(0usize..40),
        listed in proptest::sample::subsequence(&TYPES[4..], 1..5),
        max_tags in 0usize..=3,
    ) {
        let ets: Vec<EtherType> = listed.iter().map(|&t| EtherType(t)).collect();
        let (core, inline) = programs(&ets, max_tags);
        let mut f = frame(&types, tail);
        if let Some(c) = cut {
            f.truncate(c.min(f.len()));
        }
        let (a, b, c) = verdicts(&core, &inline, &f);
        prop_assert_eq!(a, b, "core interpreter: {:02x?}", f);
        prop_assert_eq!(a, c, "libpcap interpreter: {:02x?}", f);
    }
}

#[test]
fn default_filter_cases() {
    let (core, inline) = programs(&[EtherType::ARP, EtherType::IPV4, EtherType::IPV6], 3);
    assert_eq!(
        core,
        ethertype_filter(
            &[EtherType::ARP, EtherType::IPV4, EtherType::IPV6],
            FilterOptions::default()
        )
        .unwrap()
    );
    #[rustfmt::skip]
    let cases: [(&[u16], bool); 12] = [
        (&[0x0800], true),
        (&[0x86dd], true),
        (&[0x8100, 0x0806], true),
        (&[0x88a8, 0x8100, 0x0800], true),
        (&[0x9100, 0x8100, 0x86dd], true),
        (&[0x88a8, 0x8100, 0x8100, 0x0800], true),
        (&[0x9100, 0x88a8, 0x8100, 0x86dd], true),
        (&[0x88a8, 0x8100, 0x8100, 0x88cc], false),
        (&[0x88a8, 0x8100, 0x8100, 0x8100, 0x0800], false),
        (&[0x88cc], false),
        (&[0x8100, 0x88cc], false),
        (&[0x8a88, 0x0800], false),
    ];
    for (types, accept) in cases {
        let f = frame(types, 30);
        assert_eq!(
            verdicts(&core, &inline, &f),
            (accept, accept, accept),
            "{types:04x?}"
        );
    }
}

/// libpcap's interpreter has no ancillary data: the core program as it is, whose first
/// instruction asks whether a tag was moved out, rejects everything there. That is why the
/// program is rewritten where the system cannot answer (and why Linux must run it in the
/// kernel, which the relay's veth tests show by receiving tagged frames).
#[test]
fn unmodified_program_rejects_everything_in_libpcap() {
    let (core, _) = programs(&[EtherType::IPV4], 2);
    let f = frame(&[0x0800], 30);
    assert!(core.run(&f, None) != 0);
    assert_eq!(libpcap_filter_verdict(&core, &f), Some(false));
}

#[test]
fn golden_frames_same_verdicts() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../etherconn-core/tests/data/golden.pcap"
    );
    let mut cap = pcap::Capture::from_file(path).expect("golden.pcap");
    let (core, inline) = programs(&[EtherType::ARP, EtherType::IPV4, EtherType::IPV6], 3);
    let (mut n, mut accepted) = (0, 0);
    while let Ok(p) = cap.next_packet() {
        let (a, b, c) = verdicts(&core, &inline, p.data);
        assert_eq!((a, a), (b, c), "golden frame {n}: {:02x?}", p.data);
        n += 1;
        accepted += usize::from(a);
    }
    assert!(n >= 10, "only {n} golden frames");
    assert!(accepted > 0 && accepted <= n);
    println!("{n} golden frames, {accepted} accepted by both");
}

#[test]
fn invalid_program_is_not_run() {
    let bad = Program::from_instructions(vec![]);
    assert_eq!(libpcap_filter_verdict(&bad, &[0u8; 60]), None);
}
