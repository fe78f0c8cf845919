//! The checks the kernel makes when a classic program is attached.

use alloc::vec::Vec;

use super::error::BpfError;
use super::insn::{Instruction, Program};
use super::opcode::{
    decode, is_ancillary, AluOp, Op, Src, BPF_MAXINSNS, BPF_MEMWORDS, SKF_AD_MAX, SKF_AD_OFF,
};

impl Program {
    /// Checks the program as Linux's `bpf_check_classic` does when it is attached: its length,
    /// that every opcode and ancillary offset is known, that jumps stay inside the program,
    /// that no division or modulo is by the constant 0 and no shift by 32 or more, that scratch
    /// memory is in range and written before it is read on every path, and that the last
    /// instruction returns.
    pub fn validate(&self) -> Result<(), BpfError> {
        validate(self.as_slice())
    }
}

fn validate(insns: &[Instruction]) -> Result<(), BpfError> {
    let len = insns.len();
    if len == 0 || len > BPF_MAXINSNS {
        return Err(BpfError::BadLength {
            len,
            max: BPF_MAXINSNS,
        });
    }
    let invalid = |at, reason| Err(BpfError::InvalidInstruction { at, reason });
    let mut ops = Vec::with_capacity(len);
    for (at, insn) in insns.iter().enumerate() {
        let Some(op) = decode(insn.code) else {
            return invalid(at, "unknown opcode");
        };
        let k = insn.k;
        let remaining = len - at - 1;
        match op {
            Op::LdAbs(_) if is_ancillary(k) => {
                let ad = k - SKF_AD_OFF;
                if ad >= SKF_AD_MAX || ad % 4 != 0 {
                    return invalid(at, "unknown ancillary offset");
                }
            }
            Op::LdMem | Op::LdxMem | Op::St | Op::Stx if k as usize >= BPF_MEMWORDS => {
                return invalid(at, "scratch memory index out of range");
            }
            Op::Alu(AluOp::Div | AluOp::Mod, Src::K) if k == 0 => {
                return invalid(at, "division by the constant 0");
            }
            Op::Alu(AluOp::Lsh | AluOp::Rsh, Src::K) if k >= 32 => {
                return invalid(at, "shift by 32 or more");
            }
            Op::Ja if k as usize >= remaining => {
                return Err(BpfError::JumpOutOfRange {
                    at,
                    target: (at + 1).saturating_add(k as usize),
                });
            }
            Op::Jmp(..) if usize::from(insn.jt.max(insn.jf)) >= remaining => {
                return Err(BpfError::JumpOutOfRange {
                    at,
                    target: at + 1 + usize::from(insn.jt.max(insn.jf)),
                });
            }
            _ => {}
        }
        ops.push(op);
    }
    if !matches!(ops.last(), Some(Op::RetK | Op::RetA)) {
        return invalid(len - 1, "the last instruction does not return");
    }
    check_memory_use(insns, &ops)
}

/// Rejects a program that may read a scratch word before writing it, as the kernel does:
/// `valid[pc]` is the set of words written on every path reaching `pc`.
fn check_memory_use(insns: &[Instruction], ops: &[Op]) -> Result<(), BpfError> {
    let mut valid = alloc::vec![u16::MAX; insns.len()];
    let mut written: u16 = 0;
    for (at, (insn, op)) in insns.iter().zip(ops).enumerate() {
        written &= valid[at];
        // Indices and jump targets were range-checked by the caller.
        let bit = 1u16.checked_shl(insn.k).unwrap_or(0);
        match op {
            Op::St | Op::Stx => written |= bit,
            Op::LdMem | Op::LdxMem if written & bit == 0 => {
                return Err(BpfError::InvalidInstruction {
                    at,
                    reason: "scratch memory read before it is written",
                });
            }
            Op::Ja => {
                valid[at + 1 + insn.k as usize] &= written;
                written = u16::MAX;
            }
            Op::Jmp(..) => {
                valid[at + 1 + usize::from(insn.jt)] &= written;
                valid[at + 1 + usize::from(insn.jf)] &= written;
                written = u16::MAX;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::opcode::*;
    use crate::bpf::testutil::stmt;
    use alloc::vec;

    #[test]
    fn validate_rejects_what_the_kernel_rejects() {
        let ret = stmt(BPF_RET | BPF_K, 1);
        let check = |insns: &[Instruction]| Program::from(insns.to_vec()).validate();
        assert!(check(&[]).is_err());
        assert!(check(&vec![ret; BPF_MAXINSNS + 1]).is_err());
        check(&vec![ret; BPF_MAXINSNS]).unwrap();
        assert!(check(&[stmt(BPF_LD | BPF_IMM, 0)]).is_err());
        assert!(check(&[stmt(BPF_RET | BPF_X, 0)]).is_err());
        assert!(check(&[stmt(BPF_ALU | BPF_DIV | BPF_K, 0), ret]).is_err());
        assert!(check(&[stmt(BPF_ALU | BPF_MOD | BPF_K, 0), ret]).is_err());
        assert!(check(&[stmt(BPF_ALU | BPF_LSH | BPF_K, 32), ret]).is_err());
        check(&[stmt(BPF_ALU | BPF_DIV | BPF_X, 0), ret]).unwrap();
        assert!(check(&[stmt(BPF_ST, 16), ret]).is_err());
        assert!(check(&[stmt(BPF_JMP | BPF_JA, 1), ret]).is_err());
        check(&[stmt(BPF_JMP | BPF_JA, 0), ret]).unwrap();
        assert!(check(&[Instruction::jump(BPF_JMP | BPF_JEQ, 0, 0, 1), ret]).is_err());
        assert!(check(&[stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + 64), ret]).is_err());
        assert!(check(&[stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + 2), ret]).is_err());
        check(&[
            stmt(BPF_LD | BPF_B | BPF_ABS, SKF_AD_OFF + SKF_AD_VLAN_TPID),
            ret,
        ])
        .unwrap();
        // Scratch memory must be written on every path before it is read.
        assert!(check(&[stmt(BPF_LD | BPF_MEM, 3), ret]).is_err());
        check(&[stmt(BPF_ST, 3), stmt(BPF_LD | BPF_MEM, 3), ret]).unwrap();
        let one_path = [
            Instruction::jump(BPF_JMP | BPF_JEQ, 0, 1, 0),
            stmt(BPF_ST, 3),
            stmt(BPF_LD | BPF_MEM, 3),
            ret,
        ];
        assert!(check(&one_path).is_err());
        let both_paths = [
            stmt(BPF_STX, 3),
            Instruction::jump(BPF_JMP | BPF_JEQ, 0, 1, 0),
            stmt(BPF_ST, 3),
            stmt(BPF_LD | BPF_MEM, 3),
            ret,
        ];
        check(&both_paths).unwrap();
    }
}
