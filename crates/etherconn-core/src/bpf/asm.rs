//! A small assembler: instructions with symbolic forward jumps, resolved into a [`Program`].

use alloc::vec::Vec;

use super::error::BpfError;
use super::insn::{Instruction, Program};
use super::opcode::{BPF_JA, BPF_JMP};

/// A forward-jump target inside an [`Assembler`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Label(usize);

/// How an emitted instruction's jump fields are filled in once labels are bound.
#[derive(Clone, Copy, Debug)]
enum Fixup {
    None,
    /// A conditional jump; `None` is the next instruction.
    Cond {
        jt: Option<Label>,
        jf: Option<Label>,
    },
    /// `ja`, whose 32-bit `k` holds the offset.
    Always(Label),
}

/// Emits instructions with symbolic forward jumps and resolves them, refusing any jump its
/// field cannot hold, and any program the kernel would refuse, rather than emitting it.
#[derive(Default)]
pub(super) struct Assembler {
    insns: Vec<Instruction>,
    fixups: Vec<Fixup>,
    labels: Vec<Option<usize>>,
}

impl Assembler {
    pub(super) fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Makes `label` point at the next instruction emitted.
    pub(super) fn bind(&mut self, label: Label) {
        if let Some(slot) = self.labels.get_mut(label.0) {
            *slot = Some(self.insns.len());
        }
    }

    pub(super) fn stmt(&mut self, code: u16, k: u32) {
        self.insns.push(Instruction::stmt(code, k));
        self.fixups.push(Fixup::None);
    }

    pub(super) fn jump(&mut self, code: u16, k: u32, jt: Option<Label>, jf: Option<Label>) {
        self.insns.push(Instruction::jump(code, k, 0, 0));
        self.fixups.push(Fixup::Cond { jt, jf });
    }

    pub(super) fn ja(&mut self, target: Label) {
        self.insns.push(Instruction::stmt(BPF_JMP | BPF_JA, 0));
        self.fixups.push(Fixup::Always(target));
    }

    /// Instructions from the one after `at` to `label`.
    fn offset(&self, at: usize, label: Label) -> Result<usize, BpfError> {
        let target =
            self.labels
                .get(label.0)
                .copied()
                .flatten()
                .ok_or(BpfError::InvalidInstruction {
                    at,
                    reason: "jump to an unbound label",
                })?;
        target
            .checked_sub(at + 1)
            .ok_or(BpfError::JumpOutOfRange { at, target })
    }

    fn short_offset(&self, at: usize, label: Option<Label>) -> Result<u8, BpfError> {
        let Some(label) = label else { return Ok(0) };
        let off = self.offset(at, label)?;
        u8::try_from(off).map_err(|_| BpfError::JumpOutOfRange {
            at,
            target: at + 1 + off,
        })
    }

    /// Resolves the jumps and checks the result as the kernel will: the length limit, jumps
    /// past the end and the final return are [`Program::validate`]'s rules, not repeated here.
    pub(super) fn finish(mut self) -> Result<Program, BpfError> {
        for at in 0..self.insns.len() {
            match self.fixups[at] {
                Fixup::None => {}
                Fixup::Cond { jt, jf } => {
                    self.insns[at].jt = self.short_offset(at, jt)?;
                    self.insns[at].jf = self.short_offset(at, jf)?;
                }
                Fixup::Always(label) => {
                    let off = self.offset(at, label)?;
                    self.insns[at].k =
                        u32::try_from(off).map_err(|_| BpfError::JumpOutOfRange {
                            at,
                            target: at + 1 + off,
                        })?;
                }
            }
        }
        let program = Program::from_instructions(self.insns);
        program.validate()?;
        Ok(program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::opcode::{BPF_IMM, BPF_JEQ, BPF_K, BPF_LD, BPF_MAXINSNS, BPF_RET};

    #[test]
    fn assembler_refuses_long_and_backward_jumps() {
        let mut asm = Assembler::default();
        let far = asm.label();
        asm.jump(BPF_JMP | BPF_JEQ | BPF_K, 0, Some(far), None);
        for _ in 0..256 {
            asm.stmt(BPF_RET | BPF_K, 0);
        }
        asm.bind(far);
        asm.stmt(BPF_RET | BPF_K, 1);
        assert_eq!(
            asm.finish(),
            Err(BpfError::JumpOutOfRange { at: 0, target: 257 })
        );

        let mut asm = Assembler::default();
        let back = asm.label();
        asm.bind(back);
        asm.stmt(BPF_LD | BPF_IMM, 0);
        asm.ja(back);
        asm.stmt(BPF_RET | BPF_K, 1);
        assert_eq!(
            asm.finish(),
            Err(BpfError::JumpOutOfRange { at: 1, target: 0 })
        );
    }

    #[test]
    fn assembler_refuses_what_the_kernel_refuses() {
        let mut asm = Assembler::default();
        asm.stmt(BPF_LD | BPF_IMM, 0);
        assert_eq!(
            asm.finish(),
            Err(BpfError::InvalidInstruction {
                at: 0,
                reason: "the last instruction does not return"
            })
        );

        // A label bound after the last instruction: encodable, but past the end.
        let mut asm = Assembler::default();
        let end = asm.label();
        asm.ja(end);
        asm.stmt(BPF_RET | BPF_K, 1);
        asm.bind(end);
        assert_eq!(
            asm.finish(),
            Err(BpfError::JumpOutOfRange { at: 0, target: 2 })
        );

        let mut asm = Assembler::default();
        for _ in 0..=BPF_MAXINSNS {
            asm.stmt(BPF_RET | BPF_K, 0);
        }
        assert_eq!(
            asm.finish(),
            Err(BpfError::BadLength {
                len: BPF_MAXINSNS + 1,
                max: BPF_MAXINSNS
            })
        );
    }
}
