//! The kernel's opcode constants, ancillary offsets and limits for classic BPF, and the decoder
//! that maps an opcode to the operation it names.
//!
//! The constants keep Linux's names (`linux/bpf_common.h`, `linux/filter.h`) so that a program
//! written here reads like one written in C. The decoder is the single place that says which
//! opcodes exist: the validator, the interpreter and the disassembler all go through it.

// Instruction classes (the low three bits of `code`).

/// Instruction class: load into the accumulator.
pub const BPF_LD: u16 = 0x00;
/// Instruction class: load into the index register.
pub const BPF_LDX: u16 = 0x01;
/// Instruction class: store the accumulator into scratch memory.
pub const BPF_ST: u16 = 0x02;
/// Instruction class: store the index register into scratch memory.
pub const BPF_STX: u16 = 0x03;
/// Instruction class: arithmetic and logic on the accumulator.
pub const BPF_ALU: u16 = 0x04;
/// Instruction class: jumps.
pub const BPF_JMP: u16 = 0x05;
/// Instruction class: return (accept that many bytes; 0 drops the packet).
pub const BPF_RET: u16 = 0x06;
/// Instruction class: register transfers.
pub const BPF_MISC: u16 = 0x07;

// Load sizes.

/// Load size: 32-bit word.
pub const BPF_W: u16 = 0x00;
/// Load size: 16-bit half word (big-endian in the packet).
pub const BPF_H: u16 = 0x08;
/// Load size: byte.
pub const BPF_B: u16 = 0x10;

// Load modes.

/// Load mode: the constant `k`.
pub const BPF_IMM: u16 = 0x00;
/// Load mode: packet data at offset `k`.
pub const BPF_ABS: u16 = 0x20;
/// Load mode: packet data at offset `X + k`.
pub const BPF_IND: u16 = 0x40;
/// Load mode: scratch memory word `M[k]`.
pub const BPF_MEM: u16 = 0x60;
/// Load mode: the packet length.
pub const BPF_LEN: u16 = 0x80;
/// Load mode (`BPF_LDX` only): `4 * (P[k] & 0xf)`, an IPv4 header length.
pub const BPF_MSH: u16 = 0xa0;

// ALU operations.

/// ALU operation: `A += operand`.
pub const BPF_ADD: u16 = 0x00;
/// ALU operation: `A -= operand`.
pub const BPF_SUB: u16 = 0x10;
/// ALU operation: `A *= operand`.
pub const BPF_MUL: u16 = 0x20;
/// ALU operation: `A /= operand` (division by zero returns 0 from the program).
pub const BPF_DIV: u16 = 0x30;
/// ALU operation: `A |= operand`.
pub const BPF_OR: u16 = 0x40;
/// ALU operation: `A &= operand`.
pub const BPF_AND: u16 = 0x50;
/// ALU operation: `A <<= operand`.
pub const BPF_LSH: u16 = 0x60;
/// ALU operation: `A >>= operand`.
pub const BPF_RSH: u16 = 0x70;
/// ALU operation: `A = -A`.
pub const BPF_NEG: u16 = 0x80;
/// ALU operation: `A %= operand` (modulo zero returns 0 from the program).
pub const BPF_MOD: u16 = 0x90;
/// ALU operation: `A ^= operand`.
pub const BPF_XOR: u16 = 0xa0;

// Jump operations.

/// Jump: always, `k` instructions forward.
pub const BPF_JA: u16 = 0x00;
/// Jump: `jt` forward if `A == operand`, else `jf` forward.
pub const BPF_JEQ: u16 = 0x10;
/// Jump: `jt` forward if `A > operand`, else `jf` forward.
pub const BPF_JGT: u16 = 0x20;
/// Jump: `jt` forward if `A >= operand`, else `jf` forward.
pub const BPF_JGE: u16 = 0x30;
/// Jump: `jt` forward if `A & operand != 0`, else `jf` forward.
pub const BPF_JSET: u16 = 0x40;

// Operand sources.

/// Operand source: the constant `k`.
pub const BPF_K: u16 = 0x00;
/// Operand source: the index register `X`.
pub const BPF_X: u16 = 0x08;
/// Return value source (`BPF_RET` only): the accumulator.
pub const BPF_A: u16 = 0x10;

// Register transfers.

/// Misc operation: `X = A`.
pub const BPF_TAX: u16 = 0x00;
/// Misc operation: `A = X`.
pub const BPF_TXA: u16 = 0x80;

/// Most instructions the kernel accepts in one classic BPF program.
pub const BPF_MAXINSNS: usize = 4096;
/// Number of 32-bit scratch memory words (`M[0]` to `M[15]`).
pub const BPF_MEMWORDS: usize = 16;

/// Base of Linux's ancillary data offsets: an absolute load at `SKF_AD_OFF + n` reads packet
/// metadata `n` instead of packet data. `-0x1000` as a wrapping `u32`.
pub const SKF_AD_OFF: u32 = (-0x1000i32) as u32;
/// Ancillary offset of the TCI of the tag the kernel removed from the frame (0 if none).
pub const SKF_AD_VLAN_TAG: u32 = 44;
/// Ancillary offset of "a tag was removed from the frame" (1) or not (0); `vlan_avail`.
pub const SKF_AD_VLAN_TAG_PRESENT: u32 = 48;
/// Ancillary offset of the TPID of the tag the kernel removed from the frame.
pub const SKF_AD_VLAN_TPID: u32 = 60;

/// End of the ancillary offsets Linux defines; all multiples of 4 below it are defined.
pub(super) const SKF_AD_MAX: u32 = 64;
/// Base of offsets relative to the network header (`-0x100000`).
pub(super) const SKF_NET_OFF: u32 = (-0x10_0000i32) as u32;
/// Base of offsets relative to the link-layer header (`-0x200000`).
pub(super) const SKF_LL_OFF: u32 = (-0x20_0000i32) as u32;

/// An ALU operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AluOp {
    Add,
    Sub,
    Mul,
    Div,
    Or,
    And,
    Lsh,
    Rsh,
    Mod,
    Xor,
}

/// A conditional jump's comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JmpOp {
    Jeq,
    Jgt,
    Jge,
    Jset,
}

/// Where an ALU or jump operand comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Src {
    K,
    X,
}

/// A decoded opcode: exactly the opcodes Linux accepts in a classic program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// `A = P[k]` of the given width in bytes, or ancillary data.
    LdAbs(usize),
    /// `A = P[X + k]` of the given width in bytes.
    LdInd(usize),
    LdLen,
    LdImm,
    LdMem,
    LdxLen,
    LdxMsh,
    LdxImm,
    LdxMem,
    St,
    Stx,
    Alu(AluOp, Src),
    Neg,
    Ja,
    Jmp(JmpOp, Src),
    RetK,
    RetA,
    Tax,
    Txa,
}

/// The operation `code` names, or `None` for an opcode Linux refuses.
pub(super) fn decode(code: u16) -> Option<Op> {
    if code > 0xff {
        return None;
    }
    // Loads: size in bits 3-4, mode in bits 5-7.
    let size_mode = (code & 0x18, code & 0xe0);
    let src = if code & BPF_X == 0 { Src::K } else { Src::X };
    let op = match code & 0x07 {
        BPF_LD => match size_mode {
            (BPF_W, BPF_ABS) => Op::LdAbs(4),
            (BPF_H, BPF_ABS) => Op::LdAbs(2),
            (BPF_B, BPF_ABS) => Op::LdAbs(1),
            (BPF_W, BPF_IND) => Op::LdInd(4),
            (BPF_H, BPF_IND) => Op::LdInd(2),
            (BPF_B, BPF_IND) => Op::LdInd(1),
            (BPF_W, BPF_LEN) => Op::LdLen,
            (BPF_W, BPF_IMM) => Op::LdImm,
            (BPF_W, BPF_MEM) => Op::LdMem,
            _ => return None,
        },
        BPF_LDX => match size_mode {
            (BPF_W, BPF_LEN) => Op::LdxLen,
            (BPF_B, BPF_MSH) => Op::LdxMsh,
            (BPF_W, BPF_IMM) => Op::LdxImm,
            (BPF_W, BPF_MEM) => Op::LdxMem,
            _ => return None,
        },
        BPF_ST if code == BPF_ST => Op::St,
        BPF_STX if code == BPF_STX => Op::Stx,
        BPF_ALU => match code & !0x0f {
            BPF_NEG if code == BPF_ALU | BPF_NEG => Op::Neg,
            BPF_ADD => Op::Alu(AluOp::Add, src),
            BPF_SUB => Op::Alu(AluOp::Sub, src),
            BPF_MUL => Op::Alu(AluOp::Mul, src),
            BPF_DIV => Op::Alu(AluOp::Div, src),
            BPF_OR => Op::Alu(AluOp::Or, src),
            BPF_AND => Op::Alu(AluOp::And, src),
            BPF_LSH => Op::Alu(AluOp::Lsh, src),
            BPF_RSH => Op::Alu(AluOp::Rsh, src),
            BPF_MOD => Op::Alu(AluOp::Mod, src),
            BPF_XOR => Op::Alu(AluOp::Xor, src),
            _ => return None,
        },
        BPF_JMP => match code & !0x0f {
            BPF_JA if code == BPF_JMP | BPF_JA => Op::Ja,
            BPF_JEQ => Op::Jmp(JmpOp::Jeq, src),
            BPF_JGT => Op::Jmp(JmpOp::Jgt, src),
            BPF_JGE => Op::Jmp(JmpOp::Jge, src),
            BPF_JSET => Op::Jmp(JmpOp::Jset, src),
            _ => return None,
        },
        BPF_RET if code == BPF_RET | BPF_K => Op::RetK,
        BPF_RET if code == BPF_RET | BPF_A => Op::RetA,
        BPF_MISC if code == BPF_MISC | BPF_TAX => Op::Tax,
        BPF_MISC if code == BPF_MISC | BPF_TXA => Op::Txa,
        _ => return None,
    };
    Some(op)
}

/// Whether an absolute load at `k` reads ancillary data rather than the packet (the kernel
/// compares unsigned).
pub(super) fn is_ancillary(k: u32) -> bool {
    k >= SKF_AD_OFF
}
