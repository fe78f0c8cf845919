//! The receive filter the capture handle runs: the AF_PACKET relay's program from
//! `etherconn_core::bpf`, with its "was a VLAN tag moved out" read in the form libpcap's own
//! interpreter knows where the system can answer it (Linux), and made constant where it
//! cannot (npcap).
//!
//! On Linux the program runs in two places. The kernel runs it on every frame (libpcap
//! attaches it to its packet socket), with the ancillary loads at any size. But frames that
//! were already in the capture buffer when the filter was set are filtered by libpcap itself,
//! whose interpreter answers the VLAN ancillary loads only as byte loads (`ldb`, the form its
//! own filter compiler emits); a word load there reads past the frame and rejects it. The
//! answer is 0 or 1, so a byte load gives the same value in both places.

use etherconn_core::bpf::{
    Instruction, Program, BPF_ABS, BPF_B, BPF_IMM, BPF_LD, SKF_AD_OFF, SKF_AD_VLAN_TAG_PRESENT,
};

/// The relay's filter for this platform: [`with_byte_vlan_present_loads`] on Linux, where
/// libpcap gives it to the kernel and the kernel answers the ancillary VLAN loads;
/// [`without_ancillary_loads`] elsewhere.
pub fn capture_filter(program: &Program) -> Program {
    if crate::platform::ANCILLARY_VLAN_LOADS {
        with_byte_vlan_present_loads(program)
    } else {
        without_ancillary_loads(program)
    }
}

/// Class in the low 3 bits, mode in the top 3 (`BPF_CLASS`, `BPF_MODE`).
fn is_ld_abs(i: &Instruction) -> bool {
    i.code & 0x07 == BPF_LD && i.code & 0xe0 == BPF_ABS
}

/// `program` with every load of `SKF_AD_VLAN_TAG_PRESENT` (a word or half-word in
/// `etherconn_core::bpf`'s programs) made a byte load: the same value in the kernel, and the
/// only size libpcap's interpreter answers.
pub fn with_byte_vlan_present_loads(program: &Program) -> Program {
    let insns = program
        .as_slice()
        .iter()
        .map(|&i| {
            if is_ld_abs(&i) && i.k == SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT {
                Instruction::stmt(BPF_LD | BPF_B | BPF_ABS, i.k)
            } else {
                i
            }
        })
        .collect();
    Program::from_instructions(insns)
}

/// `program` with every ancillary load (`ld [SKF_AD_OFF + n]`, any size) replaced by
/// `ld #0`: what the program computes when no VLAN tag was moved out of the frame, so that
/// it runs on a filter machine without ancillary data (npcap, libpcap's own interpreter).
///
/// For the relay's filter (`etherconn_core::bpf::ethertype_filter`) that is the walk over the
/// tags in the frame: the program accepts exactly the frames it accepts when the kernel says
/// "no tag present" (a property test checks it, with libpcap's interpreter as the second
/// opinion).
pub fn without_ancillary_loads(program: &Program) -> Program {
    let insns = program
        .as_slice()
        .iter()
        .map(|&i| {
            if is_ld_abs(&i) && i.k >= SKF_AD_OFF {
                Instruction::stmt(BPF_LD | BPF_IMM, 0)
            } else {
                i
            }
        })
        .collect();
    Program::from_instructions(insns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherconn_core::bpf::{ethertype_filter, FilterOptions, BPF_W};
    use etherconn_core::wire::EtherType;

    #[test]
    fn only_ancillary_loads_change() {
        let p = ethertype_filter(
            &[EtherType::ARP, EtherType::IPV4, EtherType::IPV6],
            FilterOptions::default(),
        )
        .unwrap();
        let q = without_ancillary_loads(&p);
        assert_eq!(p.len(), q.len());
        let changed: Vec<usize> = (0..p.len())
            .filter(|&i| p.as_slice()[i] != q.as_slice()[i])
            .collect();
        // The relay's filter reads "tag present" once, first.
        assert_eq!(changed, [0]);
        assert_eq!(p.as_slice()[0].code, BPF_LD | BPF_W | BPF_ABS);
        assert_eq!(q.as_slice()[0], Instruction::stmt(BPF_LD | BPF_IMM, 0));
        q.validate().unwrap();
        // A plain packet load stays.
        let plain =
            Program::from_instructions(vec![Instruction::stmt(BPF_LD | BPF_B | BPF_ABS, 12)]);
        assert_eq!(without_ancillary_loads(&plain), plain);
    }

    #[test]
    fn vlan_present_becomes_a_byte_load_and_nothing_else_changes() {
        let p = ethertype_filter(&[EtherType::IPV4], FilterOptions::default()).unwrap();
        let q = with_byte_vlan_present_loads(&p);
        let changed: Vec<usize> = (0..p.len())
            .filter(|&i| p.as_slice()[i] != q.as_slice()[i])
            .collect();
        assert_eq!(changed, [0]);
        assert_eq!(
            q.as_slice()[0],
            Instruction::stmt(
                BPF_LD | BPF_B | BPF_ABS,
                SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT
            )
        );
        q.validate().unwrap();
    }
}
