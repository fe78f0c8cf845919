//! One instruction in the kernel's layout, and a program of them.
//!
//! Checking a program and running it are added to [`Program`] by the `validate` and
//! `interpret` modules, printing it by `disasm`: this module only holds the instructions.

use alloc::vec::Vec;

use super::opcode::{BPF_K, BPF_RET};

/// One classic BPF instruction, laid out exactly as Linux's `struct sock_filter`, so that a
/// program's [`Program::as_slice`] can be handed to `SO_ATTACH_FILTER` as it is.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Instruction {
    /// Opcode: class | size/operation | mode/source, e.g. `BPF_LD | BPF_H | BPF_ABS`.
    pub code: u16,
    /// Conditional jumps: instructions to skip when the condition holds.
    pub jt: u8,
    /// Conditional jumps: instructions to skip when it does not.
    pub jf: u8,
    /// The constant operand: an offset, an immediate, a jump length or a return value.
    pub k: u32,
}

impl Instruction {
    /// A non-jump instruction, like Linux's `BPF_STMT(code, k)`.
    pub const fn stmt(code: u16, k: u32) -> Instruction {
        Instruction {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }

    /// A jump instruction, like Linux's `BPF_JUMP(code, k, jt, jf)`.
    pub const fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Instruction {
        Instruction { code, jt, jf, k }
    }
}

/// What [`Program::run`] returns for an accepted frame by default: more than any frame, so the
/// whole frame is kept.
pub const DEFAULT_ACCEPT_LEN: u32 = 0x40000;

/// A classic BPF program.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Program {
    insns: Vec<Instruction>,
}

impl Program {
    /// A program that accepts every packet whole ([`DEFAULT_ACCEPT_LEN`] bytes).
    pub fn accept_all() -> Program {
        Program {
            insns: alloc::vec![Instruction::stmt(BPF_RET | BPF_K, DEFAULT_ACCEPT_LEN)],
        }
    }

    /// A program that rejects every packet; attach it while swapping filters so that no frame
    /// slips through unfiltered.
    pub fn reject_all() -> Program {
        Program {
            insns: alloc::vec![Instruction::stmt(BPF_RET | BPF_K, 0)],
        }
    }

    /// A program of the given instructions, unchecked: see [`Program::validate`].
    pub fn from_instructions(insns: Vec<Instruction>) -> Program {
        Program { insns }
    }

    /// The instructions, ready for a `struct sock_fprog`.
    pub fn as_slice(&self) -> &[Instruction] {
        &self.insns
    }

    /// Number of instructions.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether the program has no instruction (the kernel refuses such a program).
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// The instructions, by value.
    pub fn into_instructions(self) -> Vec<Instruction> {
        self.insns
    }
}

impl From<Vec<Instruction>> for Program {
    fn from(insns: Vec<Instruction>) -> Self {
        Program::from_instructions(insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::opcode::{BPF_ABS, BPF_H, BPF_JEQ, BPF_JMP, BPF_LD, SKF_AD_OFF};
    use crate::bpf::testutil::frame;

    const LLDP: u16 = 0x88cc;
    const ACCEPT: u32 = DEFAULT_ACCEPT_LEN;

    #[test]
    fn instruction_has_sock_filter_layout() {
        assert_eq!(core::mem::size_of::<Instruction>(), 8);
        assert_eq!(core::mem::align_of::<Instruction>(), 4);
        assert_eq!(core::mem::offset_of!(Instruction, code), 0);
        assert_eq!(core::mem::offset_of!(Instruction, jt), 2);
        assert_eq!(core::mem::offset_of!(Instruction, jf), 3);
        assert_eq!(core::mem::offset_of!(Instruction, k), 4);
        assert_eq!(SKF_AD_OFF, 0xffff_f000);
        assert_eq!(BPF_LD | BPF_H | BPF_ABS, 0x28);
        assert_eq!(BPF_JMP | BPF_JEQ | BPF_K, 0x15);
        assert_eq!(BPF_RET | BPF_K, 0x06);
    }

    #[test]
    fn accept_and_reject_all() {
        let any = frame(&[0x8100, 0x8100, 0x8100], LLDP);
        assert_eq!(Program::accept_all().run(&any, None), ACCEPT);
        assert_eq!(Program::accept_all().run(&[], None), ACCEPT);
        assert_eq!(Program::reject_all().run(&any, None), 0);
        Program::accept_all().validate().unwrap();
        Program::reject_all().validate().unwrap();
        assert_eq!(Program::reject_all().len(), 1);
        assert!(!Program::reject_all().is_empty());
    }
}
