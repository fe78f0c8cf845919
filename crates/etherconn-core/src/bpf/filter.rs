//! The relays' receive filter: accept the configured EtherTypes behind at most `max_tags` VLAN
//! tags, drop every other frame in the kernel.

use alloc::vec::Vec;

use super::asm::Assembler;
use super::error::BpfError;
use super::insn::{Program, DEFAULT_ACCEPT_LEN};
use super::opcode::{
    BPF_ABS, BPF_H, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, SKF_AD_OFF,
    SKF_AD_VLAN_TAG_PRESENT,
};
use crate::wire::vlan::{self, MAX_TAGS};
use crate::wire::EtherType;

/// The TPIDs the filter skips over: those [`EtherType::is_vlan_tpid`] names (a test holds the two
/// together; a `const` cannot be built by filtering).
const VLAN_TPIDS: [EtherType; 3] = [EtherType::VLAN, EtherType::QINQ, EtherType::QINQ_LEGACY];
/// Offset of the EtherType (or first TPID) in an Ethernet frame.
const ETHERTYPE_OFFSET: u32 = 12;
/// Length of one VLAN tag.
const TAG_LEN: u32 = vlan::HEADER_LEN as u32;

/// The most distinct EtherTypes [`ethertype_filter`] puts in one program: a conditional jump
/// skips at most 255 instructions, and one of them must skip the EtherType comparisons and
/// the three TPID comparisons of its level.
pub const MAX_ETHERTYPES: usize = 255 - VLAN_TPIDS.len();

/// Options of [`ethertype_filter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FilterOptions {
    /// Most VLAN tags a frame may carry, counting one the kernel removed (0 to [`MAX_TAGS`]).
    pub max_tags: usize,
    /// What the program returns for an accepted frame: the bytes of it that are kept.
    pub accept_len: u32,
}

impl Default for FilterOptions {
    /// Up to [`MAX_TAGS`] tags, whole frames.
    fn default() -> Self {
        FilterOptions {
            max_tags: MAX_TAGS,
            accept_len: DEFAULT_ACCEPT_LEN,
        }
    }
}

/// Builds a filter that accepts frames whose EtherType after at most `opts.max_tags` VLAN tags
/// (TPID 0x8100, 0x88a8 or 0x9100, including a tag the kernel removed, see the
/// [module documentation](crate::bpf)) is one of `ethertypes`, returning `opts.accept_len` for them and
/// 0 for every other frame.
///
/// EtherTypes are compared in the order given (put the most frequent first); duplicates are
/// ignored. A listed EtherType is matched before a TPID is skipped, so listing a TPID accepts
/// every frame carrying that tag where it is read. Errors when `ethertypes` is empty or holds
/// more than [`MAX_ETHERTYPES`] distinct values, when `opts.max_tags` exceeds [`MAX_TAGS`] and
/// when `opts.accept_len` is 0.
pub fn ethertype_filter(
    ethertypes: &[EtherType],
    opts: FilterOptions,
) -> Result<Program, BpfError> {
    if opts.max_tags > MAX_TAGS {
        return Err(BpfError::TooManyTags {
            given: opts.max_tags,
            max: MAX_TAGS,
        });
    }
    if opts.accept_len == 0 {
        return Err(BpfError::ZeroAcceptLen);
    }
    let mut distinct: Vec<EtherType> = Vec::new();
    for &et in ethertypes {
        if !distinct.contains(&et) {
            if distinct.len() == MAX_ETHERTYPES {
                return Err(BpfError::TooManyEtherTypes {
                    max: MAX_ETHERTYPES,
                });
            }
            distinct.push(et);
        }
    }
    if distinct.is_empty() {
        return Err(BpfError::NoEtherTypes);
    }
    // A TPID that is also listed is accepted before it could be skipped.
    let tpids: Vec<EtherType> = VLAN_TPIDS
        .iter()
        .copied()
        .filter(|t| !distinct.contains(t))
        .collect();

    let mut asm = Assembler::default();
    let plain = asm.label();
    let offloaded = asm.label();
    let offloaded_budget = opts.max_tags.checked_sub(1);
    asm.stmt(
        BPF_LD | BPF_W | BPF_ABS,
        SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT,
    );
    asm.jump(BPF_JMP | BPF_JEQ | BPF_K, 0, Some(plain), None);
    match offloaded_budget {
        // A tag was removed and none is allowed.
        None => asm.stmt(BPF_RET | BPF_K, 0),
        // The offloaded walk comes after the plain one, beyond a conditional jump's reach.
        Some(_) => asm.ja(offloaded),
    }
    asm.bind(plain);
    emit_tag_walk(&mut asm, &distinct, &tpids, opts.max_tags, opts.accept_len);
    if let Some(budget) = offloaded_budget {
        asm.bind(offloaded);
        emit_tag_walk(&mut asm, &distinct, &tpids, budget, opts.accept_len);
    }
    asm.finish()
}

/// Emits the levels that read the EtherType at offsets 12, 16, ... and skip up to `budget`
/// tags. Each level ends with its own `ret #0` and `ret #accept`, so that no jump has to
/// reach past more than one level.
fn emit_tag_walk(
    asm: &mut Assembler,
    ethertypes: &[EtherType],
    tpids: &[EtherType],
    budget: usize,
    accept_len: u32,
) {
    let mut offset = ETHERTYPE_OFFSET;
    for level in 0..=budget {
        let accept = asm.label();
        let next_level = asm.label();
        asm.stmt(BPF_LD | BPF_H | BPF_ABS, offset);
        for et in ethertypes {
            asm.jump(
                BPF_JMP | BPF_JEQ | BPF_K,
                u32::from(et.0),
                Some(accept),
                None,
            );
        }
        if level < budget {
            for tpid in tpids {
                asm.jump(
                    BPF_JMP | BPF_JEQ | BPF_K,
                    u32::from(tpid.0),
                    Some(next_level),
                    None,
                );
            }
        }
        asm.stmt(BPF_RET | BPF_K, 0);
        asm.bind(accept);
        asm.stmt(BPF_RET | BPF_K, accept_len);
        asm.bind(next_level);
        offset += TAG_LEN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::testutil::frame;
    use crate::bpf::OffloadedVlan;
    use proptest::prelude::*;

    const ETS: [EtherType; 3] = [EtherType::ARP, EtherType::IPV4, EtherType::IPV6];
    const LLDP: u16 = 0x88cc;
    const ACCEPT: u32 = DEFAULT_ACCEPT_LEN;

    fn filter(max_tags: usize) -> Program {
        let opts = FilterOptions {
            max_tags,
            ..FilterOptions::default()
        };
        ethertype_filter(&ETS, opts).unwrap()
    }

    const TAG: Option<OffloadedVlan> = Some(OffloadedVlan {
        tpid: 0x8100,
        tci: 100,
    });

    #[test]
    fn untagged_listed_ethertypes_accepted() {
        let p = filter(2);
        for et in ETS {
            assert_eq!(p.run(&frame(&[], et.0), None), ACCEPT, "{et:?}");
        }
    }

    #[test]
    fn untagged_lldp_rejected() {
        assert_eq!(filter(2).run(&frame(&[], LLDP), None), 0);
    }

    #[test]
    fn single_tagged_accepted_for_each_tpid() {
        let p = filter(2);
        for tpid in [0x8100, 0x88a8, 0x9100] {
            assert_eq!(p.run(&frame(&[tpid], 0x0800), None), ACCEPT, "{tpid:x}");
        }
    }

    #[test]
    fn qinq_accepted() {
        let p = filter(2);
        assert_eq!(p.run(&frame(&[0x88a8, 0x8100], 0x0800), None), ACCEPT);
        assert_eq!(p.run(&frame(&[0x9100, 0x8100], 0x86dd), None), ACCEPT);
        assert_eq!(p.run(&frame(&[0x8100, 0x8100], 0x0806), None), ACCEPT);
    }

    #[test]
    fn three_tags_rejected_at_two() {
        let p = filter(2);
        assert_eq!(p.run(&frame(&[0x88a8, 0x8100, 0x8100], 0x0800), None), 0);
    }

    #[test]
    fn three_tags_accepted_four_rejected() {
        let p = filter(3);
        assert_eq!(p, ethertype_filter(&ETS, FilterOptions::default()).unwrap());
        for tags in [
            [0x88a8, 0x8100, 0x8100],
            [0x9100, 0x8100, 0x8100],
            [0x9100, 0x88a8, 0x8100],
            [0x8100, 0x8100, 0x8100],
        ] {
            assert_eq!(p.run(&frame(&tags, 0x0800), None), ACCEPT, "{tags:x?}");
            assert_eq!(p.run(&frame(&tags, LLDP), None), 0, "{tags:x?}");
        }
        let three = frame(&[0x88a8, 0x8100, 0x8100], 0x86dd);
        assert_eq!(p.run(&three[..25], None), 0);
        assert_eq!(p.run(&three[..26], None), ACCEPT);
        let four = frame(&[0x88a8, 0x8100, 0x8100, 0x8100], 0x0800);
        assert_eq!(p.run(&four, None), 0);
        // An offloaded tag counts: two more in the frame pass, three do not.
        assert_eq!(p.run(&frame(&[0x8100, 0x8100], 0x0800), TAG), ACCEPT);
        assert_eq!(p.run(&frame(&[0x8100, 0x8100, 0x8100], 0x0800), TAG), 0);
    }

    #[test]
    fn tagged_lldp_rejected() {
        let p = filter(2);
        assert_eq!(p.run(&frame(&[0x8100], LLDP), None), 0);
        assert_eq!(p.run(&frame(&[0x88a8, 0x8100], LLDP), None), 0);
    }

    #[test]
    fn runts_rejected() {
        let p = filter(2);
        let ipv4 = frame(&[], 0x0800);
        for len in 0..14 {
            assert_eq!(p.run(&ipv4[..len], None), 0, "len {len}");
        }
        assert_eq!(p.run(&ipv4[..14], None), ACCEPT);
        // A TPID whose tag and inner EtherType are cut off.
        let tagged = frame(&[0x8100], 0x0800);
        for len in 0..18 {
            assert_eq!(p.run(&tagged[..len], None), 0, "len {len}");
        }
        assert_eq!(p.run(&tagged[..18], None), ACCEPT);
        let qinq = frame(&[0x88a8, 0x8100], 0x0800);
        assert_eq!(p.run(&qinq[..21], None), 0);
        assert_eq!(p.run(&qinq[..22], None), ACCEPT);
    }

    #[test]
    fn offloaded_tag_counts_against_the_limit() {
        let p = filter(2);
        assert_eq!(p.run(&frame(&[], 0x0800), TAG), ACCEPT);
        assert_eq!(p.run(&frame(&[0x8100], 0x0800), TAG), ACCEPT);
        assert_eq!(p.run(&frame(&[0x8100, 0x8100], 0x0800), TAG), 0);
        assert_eq!(p.run(&frame(&[0x8100], LLDP), TAG), 0);
        assert_eq!(p.run(&frame(&[], LLDP), TAG), 0);
    }

    #[test]
    fn max_tags_zero_accepts_only_untagged() {
        let p = filter(0);
        assert_eq!(p.run(&frame(&[], 0x0800), None), ACCEPT);
        assert_eq!(p.run(&frame(&[0x8100], 0x0800), None), 0);
        assert_eq!(p.run(&frame(&[0x88a8, 0x8100], 0x0800), None), 0);
        assert_eq!(p.run(&frame(&[], 0x0800), TAG), 0);
    }

    #[test]
    fn max_tags_one() {
        let p = filter(1);
        assert_eq!(p.run(&frame(&[], 0x0806), None), ACCEPT);
        assert_eq!(p.run(&frame(&[0x8100], 0x0800), None), ACCEPT);
        assert_eq!(p.run(&frame(&[0x88a8, 0x8100], 0x0800), None), 0);
        assert_eq!(p.run(&frame(&[], 0x0800), TAG), ACCEPT);
        assert_eq!(p.run(&frame(&[0x8100], 0x0800), TAG), 0);
    }

    #[test]
    fn accept_len_is_returned() {
        let opts = FilterOptions {
            max_tags: 2,
            accept_len: 96,
        };
        let p = ethertype_filter(&ETS, opts).unwrap();
        assert_eq!(p.run(&frame(&[0x8100], 0x86dd), None), 96);
        assert_eq!(p.run(&frame(&[], LLDP), None), 0);
    }

    #[test]
    fn listed_tpid_is_matched_before_it_is_skipped() {
        let p = ethertype_filter(&[EtherType::VLAN], FilterOptions::default()).unwrap();
        assert_eq!(p.run(&frame(&[0x8100], LLDP), None), ACCEPT);
        assert_eq!(p.run(&frame(&[0x88a8, 0x8100], LLDP), None), ACCEPT);
        assert_eq!(p.run(&frame(&[0x88a8], LLDP), None), 0);
        assert_eq!(p.run(&frame(&[], 0x0800), None), 0);
    }

    #[test]
    fn option_errors() {
        let d = FilterOptions::default();
        assert_eq!(ethertype_filter(&[], d), Err(BpfError::NoEtherTypes));
        let four = FilterOptions { max_tags: 4, ..d };
        assert_eq!(
            ethertype_filter(&ETS, four),
            Err(BpfError::TooManyTags { given: 4, max: 3 })
        );
        let zero = FilterOptions { accept_len: 0, ..d };
        assert_eq!(ethertype_filter(&ETS, zero), Err(BpfError::ZeroAcceptLen));
    }

    #[test]
    fn duplicates_are_ignored() {
        let dup = [
            EtherType::IPV4,
            EtherType::IPV4,
            EtherType::ARP,
            EtherType::IPV4,
        ];
        let once = [EtherType::IPV4, EtherType::ARP];
        let d = FilterOptions::default();
        assert_eq!(ethertype_filter(&dup, d), ethertype_filter(&once, d));
    }

    #[test]
    fn many_ethertypes() {
        // EtherTypes 0x0600.. are never TPIDs, so every level skips all three TPIDs.
        let many: Vec<EtherType> = (0..MAX_ETHERTYPES as u16 + 1)
            .map(|i| EtherType(0x0600 + i))
            .collect();
        for max_tags in 0..=MAX_TAGS {
            let opts = FilterOptions {
                max_tags,
                ..FilterOptions::default()
            };
            for n in [16, MAX_ETHERTYPES] {
                let p = ethertype_filter(&many[..n], opts).unwrap();
                p.validate().unwrap();
                let last = many[n - 1].0;
                assert_eq!(p.run(&frame(&[], last), None), ACCEPT);
                if max_tags >= 2 {
                    assert_eq!(p.run(&frame(&[0x9100, 0x8100], last), None), ACCEPT);
                    assert_eq!(p.run(&frame(&[0x8100], last), TAG), ACCEPT);
                }
                if max_tags == 3 {
                    let tags = [0x9100, 0x88a8, 0x8100];
                    assert_eq!(p.run(&frame(&tags, last), None), ACCEPT);
                    assert_eq!(p.run(&frame(&tags[1..], last), TAG), ACCEPT);
                }
                assert_eq!(p.run(&frame(&[], many[n].0), None), 0);
            }
            assert_eq!(
                ethertype_filter(&many, opts),
                Err(BpfError::TooManyEtherTypes {
                    max: MAX_ETHERTYPES
                })
            );
        }
    }

    /// The filter's specification, written plainly.
    fn reference(ets: &[EtherType], opts: FilterOptions, data: &[u8], offloaded: bool) -> u32 {
        let budget = if offloaded {
            match opts.max_tags.checked_sub(1) {
                Some(b) => b,
                None => return 0,
            }
        } else {
            opts.max_tags
        };
        let mut at = 12;
        for level in 0..=budget {
            let Some(b) = data.get(at..at + 2) else {
                return 0;
            };
            let et = EtherType(u16::from_be_bytes([b[0], b[1]]));
            if ets.contains(&et) {
                return opts.accept_len;
            }
            if level == budget || !et.is_vlan_tpid() {
                return 0;
            }
            at += 4;
        }
        0
    }

    fn ethertype() -> impl Strategy<Value = u16> {
        prop_oneof![
            Just(0x0800u16),
            Just(0x0806),
            Just(0x86dd),
            Just(0x88cc),
            Just(0x8100),
            Just(0x88a8),
            Just(0x9100),
            any::<u16>(),
        ]
    }

    fn tpid() -> impl Strategy<Value = u16> {
        prop_oneof![Just(0x8100u16), Just(0x88a8), Just(0x9100), any::<u16>()]
    }

    #[test]
    fn skipped_tpids_are_the_wire_modules_tpids() {
        let wire: Vec<u16> = (0..=u16::MAX)
            .filter(|&v| EtherType(v).is_vlan_tpid())
            .collect();
        let skipped: Vec<u16> = VLAN_TPIDS.iter().map(|t| t.0).collect();
        assert_eq!(skipped, wire);
    }

    proptest! {
        #[test]
        fn filter_matches_reference(
            ets in proptest::collection::vec(ethertype().prop_map(EtherType), 1..20),
            max_tags in 0..=MAX_TAGS,
            accept_len in 1..=u32::MAX,
            tpids in proptest::collection::vec(tpid(), 0..=4),
            inner in ethertype(),
            payload in 0..40usize,
            cut in proptest::option::of(0..80usize),
            offloaded in proptest::option::of(any::<(u16, u16)>()),
        ) {
            let opts = FilterOptions { max_tags, accept_len };
            let p = ethertype_filter(&ets, opts).unwrap();
            prop_assert_eq!(p.validate(), Ok(()));
            let mut data = frame(&tpids, inner);
            data.truncate(14 + 4 * tpids.len() + payload);
            if let Some(cut) = cut {
                data.truncate(cut);
            }
            let meta = offloaded.map(|(tpid, tci)| OffloadedVlan { tpid, tci });
            prop_assert_eq!(
                p.run(&data, meta),
                reference(&ets, opts, &data, meta.is_some())
            );
        }

    }
}
