//! The receive filter the capture handle runs: the AF_PACKET relay's program from
//! `etherconn_core::bpf`, as it is where the system can read a VLAN tag it moved out of the
//! frame (Linux), and with those reads made constant where it cannot (npcap).

use etherconn_core::bpf::{Instruction, Program, BPF_ABS, BPF_IMM, BPF_LD, SKF_AD_OFF};

/// The relay's filter for this platform: `program` itself on Linux, where libpcap gives it to
/// the kernel and the kernel answers the ancillary VLAN loads; [`without_ancillary_loads`]
/// elsewhere.
pub fn capture_filter(program: &Program) -> Program {
    if crate::platform::ANCILLARY_VLAN_LOADS {
        program.clone()
    } else {
        without_ancillary_loads(program)
    }
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
            // Class in the low 3 bits, mode in the top 3 (`BPF_CLASS`, `BPF_MODE`).
            let is_ld_abs = i.code & 0x07 == BPF_LD && i.code & 0xe0 == BPF_ABS;
            if is_ld_abs && i.k >= SKF_AD_OFF {
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
    use etherconn_core::bpf::{ethertype_filter, FilterOptions, BPF_B, BPF_W};
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

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_installs_the_core_program_as_it_is() {
        let p = ethertype_filter(&[EtherType::IPV4], FilterOptions::default()).unwrap();
        assert_eq!(capture_filter(&p), p);
    }
}
