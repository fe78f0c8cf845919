//! A user-space interpreter with the kernel's semantics, so that filters can be tested without
//! attaching them.

use super::insn::{Instruction, Program};
use super::opcode::{
    decode, is_ancillary, AluOp, JmpOp, Op, Src, BPF_MEMWORDS, SKF_AD_OFF, SKF_AD_VLAN_TAG,
    SKF_AD_VLAN_TAG_PRESENT, SKF_AD_VLAN_TPID, SKF_LL_OFF, SKF_NET_OFF,
};
use crate::wire::vlan::VlanTag;

/// The VLAN tag the kernel removed from a frame, as the ancillary loads see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct OffloadedVlan {
    /// Tag protocol identifier (`vlan_tpid`), e.g. 0x8100.
    pub tpid: u16,
    /// Tag control information (`vlan_tci`): PCP, DEI and VLAN id.
    pub tci: u16,
}

impl From<VlanTag> for OffloadedVlan {
    fn from(tag: VlanTag) -> Self {
        OffloadedVlan {
            tpid: tag.tpid.get(),
            tci: tag.tci(),
        }
    }
}

impl Program {
    /// Runs the program on `packet` (starting at the Ethernet header) with the kernel's
    /// semantics and returns how many bytes it accepts; 0 means the packet is dropped.
    ///
    /// `offloaded` is the tag the kernel moved out of the frame, if any: it is what the
    /// ancillary loads `vlan_avail`, `vlan_tci` and `vlan_tpid` read. As in the kernel, a load
    /// beyond the packet, a division by zero, an invalid opcode or running off the end makes the
    /// program return 0. Other ancillary data and loads relative to the network header are not
    /// modelled and also return 0. This never panics and always terminates, whatever the
    /// program: classic BPF only jumps forward.
    pub fn run(&self, packet: &[u8], offloaded: Option<OffloadedVlan>) -> u32 {
        execute(self.as_slice(), packet, offloaded).unwrap_or(0)
    }
}

/// Runs a program; `None` is the kernel's "return 0 on error".
fn execute(insns: &[Instruction], packet: &[u8], offloaded: Option<OffloadedVlan>) -> Option<u32> {
    let mut a: u32 = 0;
    let mut x: u32 = 0;
    let mut mem = [0u32; BPF_MEMWORDS];
    let mut pc = 0usize;
    loop {
        let insn = *insns.get(pc)?;
        pc += 1;
        let k = insn.k;
        match decode(insn.code)? {
            Op::LdAbs(_) if is_ancillary(k) => a = ancillary(k - SKF_AD_OFF, offloaded)?,
            Op::LdAbs(size) => a = load(packet, k, size)?,
            Op::LdInd(size) => a = load(packet, x.wrapping_add(k), size)?,
            Op::LdLen => a = packet_len(packet),
            Op::LdImm => a = k,
            Op::LdMem => a = *mem.get(k as usize)?,
            Op::LdxLen => x = packet_len(packet),
            Op::LdxMsh => x = 4 * (load(packet, k, 1)? & 0xf),
            Op::LdxImm => x = k,
            Op::LdxMem => x = *mem.get(k as usize)?,
            Op::St => *mem.get_mut(k as usize)? = a,
            Op::Stx => *mem.get_mut(k as usize)? = x,
            Op::Alu(op, src) => {
                let v = if src == Src::K { k } else { x };
                a = match op {
                    AluOp::Add => a.wrapping_add(v),
                    AluOp::Sub => a.wrapping_sub(v),
                    AluOp::Mul => a.wrapping_mul(v),
                    AluOp::Div => a.checked_div(v)?,
                    AluOp::Mod => a.checked_rem(v)?,
                    AluOp::Or => a | v,
                    AluOp::And => a & v,
                    AluOp::Xor => a ^ v,
                    AluOp::Lsh => a.checked_shl(v).unwrap_or(0),
                    AluOp::Rsh => a.checked_shr(v).unwrap_or(0),
                };
            }
            Op::Neg => a = a.wrapping_neg(),
            Op::Ja => pc = pc.checked_add(usize::try_from(k).ok()?)?,
            Op::Jmp(op, src) => {
                let v = if src == Src::K { k } else { x };
                let taken = match op {
                    JmpOp::Jeq => a == v,
                    JmpOp::Jgt => a > v,
                    JmpOp::Jge => a >= v,
                    JmpOp::Jset => a & v != 0,
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            Op::RetK => return Some(k),
            Op::RetA => return Some(a),
            Op::Tax => x = a,
            Op::Txa => a = x,
        }
    }
}

fn packet_len(packet: &[u8]) -> u32 {
    u32::try_from(packet.len()).unwrap_or(u32::MAX)
}

/// The ancillary word at `SKF_AD_OFF + ad`; `None` for those not modelled.
fn ancillary(ad: u32, offloaded: Option<OffloadedVlan>) -> Option<u32> {
    match ad {
        SKF_AD_VLAN_TAG_PRESENT => Some(u32::from(offloaded.is_some())),
        SKF_AD_VLAN_TAG => Some(offloaded.map_or(0, |v| u32::from(v.tci))),
        SKF_AD_VLAN_TPID => Some(offloaded.map_or(0, |v| u32::from(v.tpid))),
        _ => None,
    }
}

/// A big-endian load of `size` bytes at `offset`; negative offsets (as the kernel reads them)
/// are relative to the link-layer header, which is where the packet starts, or to the network
/// header, which is not modelled.
fn load(packet: &[u8], offset: u32, size: usize) -> Option<u32> {
    let at = if (offset as i32) >= 0 {
        offset
    } else if offset >= SKF_NET_OFF {
        return None;
    } else if offset >= SKF_LL_OFF {
        offset - SKF_LL_OFF
    } else {
        return None;
    };
    let at = usize::try_from(at).ok()?;
    let bytes = packet.get(at..at.checked_add(size)?)?;
    Some(bytes.iter().fold(0u32, |v, &b| (v << 8) | u32::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::opcode::*;
    use crate::bpf::testutil::stmt;
    use alloc::vec;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn run(insns: &[Instruction], packet: &[u8]) -> u32 {
        Program::from(insns.to_vec()).run(packet, None)
    }

    #[test]
    fn interpreter_loads() {
        let p = [1u8, 2, 3, 4, 5, 6];
        let ret_a = stmt(BPF_RET | BPF_A, 0);
        assert_eq!(
            run(&[stmt(BPF_LD | BPF_W | BPF_ABS, 1), ret_a], &p),
            0x0203_0405
        );
        assert_eq!(run(&[stmt(BPF_LD | BPF_H | BPF_ABS, 4), ret_a], &p), 0x0506);
        assert_eq!(run(&[stmt(BPF_LD | BPF_B | BPF_ABS, 5), ret_a], &p), 6);
        // Out of bounds, by one byte and by wrapping.
        assert_eq!(run(&[stmt(BPF_LD | BPF_W | BPF_ABS, 3), ret_a], &p), 0);
        assert_eq!(run(&[stmt(BPF_LD | BPF_H | BPF_ABS, 5), ret_a], &p), 0);
        assert_eq!(
            run(&[stmt(BPF_LD | BPF_B | BPF_ABS, u32::MAX / 2), ret_a], &p),
            0
        );
        // Link-layer relative offsets read the packet; network-relative ones are not modelled.
        assert_eq!(
            run(&[stmt(BPF_LD | BPF_B | BPF_ABS, SKF_LL_OFF + 2), ret_a], &p),
            3
        );
        assert_eq!(
            run(&[stmt(BPF_LD | BPF_B | BPF_ABS, SKF_NET_OFF), ret_a], &p),
            0
        );
        // Indirect.
        let ldx2 = stmt(BPF_LDX | BPF_W | BPF_IMM, 2);
        assert_eq!(
            run(&[ldx2, stmt(BPF_LD | BPF_H | BPF_IND, 1), ret_a], &p),
            0x0405
        );
        assert_eq!(
            run(&[ldx2, stmt(BPF_LD | BPF_W | BPF_IND, 1), ret_a], &p),
            0
        );
        let ldx_max = stmt(BPF_LDX | BPF_W | BPF_IMM, u32::MAX);
        assert_eq!(
            run(&[ldx_max, stmt(BPF_LD | BPF_B | BPF_IND, 1), ret_a], &p),
            1
        );
        // Lengths, immediates, MSH.
        assert_eq!(run(&[stmt(BPF_LD | BPF_W | BPF_LEN, 0), ret_a], &p), 6);
        let txa = stmt(BPF_MISC | BPF_TXA, 0);
        assert_eq!(
            run(&[stmt(BPF_LDX | BPF_W | BPF_LEN, 0), txa, ret_a], &p),
            6
        );
        assert_eq!(run(&[stmt(BPF_LD | BPF_IMM, 77), ret_a], &p), 77);
        let msh = stmt(BPF_LDX | BPF_B | BPF_MSH, 4);
        assert_eq!(run(&[msh, txa, ret_a], &p), 20);
        assert_eq!(
            run(&[stmt(BPF_LDX | BPF_B | BPF_MSH, 6), txa, ret_a], &p),
            0
        );
    }

    #[test]
    fn interpreter_ancillary() {
        let ret_a = stmt(BPF_RET | BPF_A, 0);
        let prog = |ad| Program::from(vec![stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + ad), ret_a]);
        let tag = Some(OffloadedVlan {
            tpid: 0x88a8,
            tci: 0x2064,
        });
        assert_eq!(prog(SKF_AD_VLAN_TAG_PRESENT).run(&[], tag), 1);
        assert_eq!(prog(SKF_AD_VLAN_TAG_PRESENT).run(&[], None), 0);
        assert_eq!(prog(SKF_AD_VLAN_TAG).run(&[], tag), 0x2064);
        assert_eq!(prog(SKF_AD_VLAN_TPID).run(&[], tag), 0x88a8);
        // Not modelled: the program returns 0.
        let mark = Program::from(vec![
            stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + 20),
            stmt(BPF_RET | BPF_K, 1),
        ]);
        assert_eq!(mark.run(&[0; 64], tag), 0);
        let tag = VlanTag::dot1q(100).unwrap().with_pcp(5);
        assert_eq!(
            OffloadedVlan::from(tag),
            OffloadedVlan {
                tpid: 0x8100,
                tci: 0xa064
            }
        );
    }

    #[test]
    fn interpreter_alu_and_memory() {
        let ret_a = stmt(BPF_RET | BPF_A, 0);
        let alu = |a: u32, code: u16, k: u32| {
            run(
                &[stmt(BPF_LD | BPF_IMM, a), stmt(BPF_ALU | code, k), ret_a],
                &[],
            )
        };
        assert_eq!(alu(7, BPF_ADD | BPF_K, u32::MAX), 6);
        assert_eq!(alu(7, BPF_SUB | BPF_K, 8), u32::MAX);
        assert_eq!(alu(7, BPF_MUL | BPF_K, 6), 42);
        assert_eq!(alu(42, BPF_DIV | BPF_K, 5), 8);
        assert_eq!(alu(42, BPF_MOD | BPF_K, 5), 2);
        assert_eq!(alu(0b1100, BPF_OR | BPF_K, 0b1010), 0b1110);
        assert_eq!(alu(0b1100, BPF_AND | BPF_K, 0b1010), 0b1000);
        assert_eq!(alu(0b1100, BPF_XOR | BPF_K, 0b1010), 0b0110);
        assert_eq!(alu(1, BPF_LSH | BPF_K, 31), 1 << 31);
        assert_eq!(alu(1, BPF_LSH | BPF_K, 32), 0);
        assert_eq!(alu(u32::MAX, BPF_RSH | BPF_K, 28), 0xf);
        assert_eq!(alu(1, BPF_NEG, 0), u32::MAX);
        // Division and modulo by zero make the program return 0.
        assert_eq!(alu(42, BPF_DIV | BPF_K, 0), 0);
        assert_eq!(alu(42, BPF_MOD | BPF_K, 0), 0);
        let by_x = |code: u16, x: u32| {
            run(
                &[
                    stmt(BPF_LD | BPF_IMM, 42),
                    stmt(BPF_LDX | BPF_W | BPF_IMM, x),
                    stmt(BPF_ALU | code | BPF_X, 0),
                    ret_a,
                ],
                &[],
            )
        };
        assert_eq!(by_x(BPF_DIV, 0), 0);
        assert_eq!(by_x(BPF_MOD, 0), 0);
        assert_eq!(by_x(BPF_DIV, 4), 10);
        assert_eq!(by_x(BPF_SUB, 2), 40);
        // Scratch memory; an index past it makes the program return 0.
        let mem = [
            stmt(BPF_LD | BPF_IMM, 9),
            stmt(BPF_ST, 15),
            stmt(BPF_LDX | BPF_W | BPF_IMM, 11),
            stmt(BPF_STX, 0),
            stmt(BPF_LD | BPF_MEM, 0),
            stmt(BPF_MISC | BPF_TAX, 0),
            stmt(BPF_LD | BPF_MEM, 15),
            stmt(BPF_ALU | BPF_ADD | BPF_X, 0),
            ret_a,
        ];
        assert_eq!(run(&mem, &[]), 20);
        assert_eq!(run(&[stmt(BPF_ST, 16), stmt(BPF_RET | BPF_K, 1)], &[]), 0);
        assert_eq!(
            run(
                &[stmt(BPF_LDX | BPF_MEM, 16), stmt(BPF_RET | BPF_K, 1)],
                &[]
            ),
            0
        );
    }

    #[test]
    fn interpreter_jumps() {
        let ret = |k| stmt(BPF_RET | BPF_K, k);
        let cond = |code: u16, a: u32, k: u32| {
            run(
                &[
                    stmt(BPF_LD | BPF_IMM, a),
                    stmt(BPF_LDX | BPF_W | BPF_IMM, k),
                    Instruction::jump(BPF_JMP | code | BPF_K, k, 1, 0),
                    ret(2),
                    Instruction::jump(BPF_JMP | code | BPF_X, 0, 1, 0),
                    ret(3),
                    ret(1),
                ],
                &[],
            )
        };
        assert_eq!(cond(BPF_JEQ, 5, 5), 1);
        assert_eq!(cond(BPF_JEQ, 5, 6), 2);
        assert_eq!(cond(BPF_JGT, 6, 5), 1);
        assert_eq!(cond(BPF_JGT, 5, 5), 2);
        assert_eq!(cond(BPF_JGE, 5, 5), 1);
        assert_eq!(cond(BPF_JGE, 4, 5), 2);
        assert_eq!(cond(BPF_JSET, 6, 2), 1);
        assert_eq!(cond(BPF_JSET, 5, 2), 2);
        assert_eq!(run(&[stmt(BPF_JMP | BPF_JA, 1), ret(1), ret(2)], &[]), 2);
        // Jumps past the end, and running off it, return 0.
        assert_eq!(run(&[stmt(BPF_JMP | BPF_JA, u32::MAX), ret(1)], &[]), 0);
        assert_eq!(
            run(
                &[Instruction::jump(BPF_JMP | BPF_JEQ, 0, 9, 9), ret(1)],
                &[]
            ),
            0
        );
        assert_eq!(run(&[stmt(BPF_LD | BPF_IMM, 1)], &[]), 0);
        assert_eq!(run(&[], &[]), 0);
        // Unknown opcodes return 0.
        assert_eq!(run(&[stmt(BPF_RET | BPF_X, 0), ret(1)], &[]), 0);
        assert_eq!(run(&[stmt(0x100 | BPF_RET, 1)], &[]), 0);
    }

    fn instruction() -> impl Strategy<Value = Instruction> {
        let valid: Vec<u16> = (0..=0xffu16).filter(|&c| decode(c).is_some()).collect();
        let code = prop_oneof![4 => proptest::sample::select(valid), 1 => any::<u16>()];
        let k = prop_oneof![
            any::<u32>(),
            0..80u32,
            SKF_AD_OFF..=u32::MAX,
            SKF_LL_OFF..SKF_LL_OFF + 80,
        ];
        let jump = prop_oneof![0..4u8, any::<u8>()];
        (code, jump.clone(), jump, k).prop_map(|(code, jt, jf, k)| Instruction { code, jt, jf, k })
    }

    proptest! {
        #[test]
        fn interpreter_never_panics(
            insns in proptest::collection::vec(instruction(), 0..48),
            packet in proptest::collection::vec(any::<u8>(), 0..96),
            offloaded in proptest::option::of(any::<(u16, u16)>()),
        ) {
            let p = Program::from(insns);
            let meta = offloaded.map(|(tpid, tci)| OffloadedVlan { tpid, tci });
            let _ = p.run(&packet, meta);
            let _ = p.validate();
            let _ = alloc::string::ToString::to_string(&p);
        }
    }
}
