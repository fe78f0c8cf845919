//! Prints a program the way `tcpdump -d` and `tcpdump -dd` do.

use alloc::format;
use alloc::string::String;
use core::fmt;

use super::insn::{Instruction, Program};
use super::opcode::{decode, is_ancillary, AluOp, JmpOp, Op, Src, SKF_AD_MAX, SKF_AD_OFF};

/// One instruction per line in the style of `tcpdump -d`, jump targets being absolute
/// instruction numbers; the alternate form (`{:#}`) prints the `tcpdump -dd` C array lines.
impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (pc, insn) in self.as_slice().iter().enumerate() {
            if f.alternate() {
                writeln!(
                    f,
                    "{{ 0x{:02x}, {}, {}, 0x{:08x} }},",
                    insn.code, insn.jt, insn.jf, insn.k
                )?;
            } else {
                writeln!(f, "{}", disassemble(pc, insn))?;
            }
        }
        Ok(())
    }
}

/// Linux `bpf_asm` names of the ancillary offsets, indexed by offset / 4; sized by
/// [`SKF_AD_MAX`] so that the validator and this table cannot disagree on how many there are.
const ANCILLARY_NAMES: [&str; (SKF_AD_MAX / 4) as usize] = [
    "proto",
    "type",
    "ifidx",
    "nla",
    "nlan",
    "mark",
    "queue",
    "hatype",
    "rxhash",
    "cpu",
    "xor_x",
    "vlan_tci",
    "vlan_avail",
    "poff",
    "rand",
    "vlan_tpid",
];

/// One line of `tcpdump -d` style output.
fn disassemble(pc: usize, insn: &Instruction) -> String {
    let k = insn.k;
    let target = |off: usize| pc + 1 + off;
    let Some(op) = decode(insn.code) else {
        return format!(
            "({pc:03}) {:<8} code 0x{:04x} jt {} jf {} k 0x{:x}",
            "unimp", insn.code, insn.jt, insn.jf, k
        );
    };
    let width = |size: usize| match size {
        4 => "ld",
        2 => "ldh",
        _ => "ldb",
    };
    let src = |src: Src| match src {
        Src::K => format!("#0x{k:x}"),
        Src::X => String::from("x"),
    };
    let (mnemonic, operand): (&str, String) = match op {
        Op::LdAbs(size) if is_ancillary(k) => {
            let name = ANCILLARY_NAMES
                .get(((k - SKF_AD_OFF) / 4) as usize)
                .copied()
                .unwrap_or("?");
            (width(size), String::from(name))
        }
        Op::LdAbs(size) => (width(size), format!("[{}]", k as i32)),
        Op::LdInd(size) => (width(size), format!("[x + {}]", k as i32)),
        Op::LdLen => ("ld", String::from("#pktlen")),
        Op::LdImm => ("ld", format!("#0x{k:x}")),
        Op::LdMem => ("ld", format!("M[{k}]")),
        Op::LdxLen => ("ldx", String::from("#pktlen")),
        Op::LdxMsh => ("ldxb", format!("4*([{}]&0xf)", k as i32)),
        Op::LdxImm => ("ldx", format!("#0x{k:x}")),
        Op::LdxMem => ("ldx", format!("M[{k}]")),
        Op::St => ("st", format!("M[{k}]")),
        Op::Stx => ("stx", format!("M[{k}]")),
        Op::Alu(op, s) => {
            let mnemonic = match op {
                AluOp::Add => "add",
                AluOp::Sub => "sub",
                AluOp::Mul => "mul",
                AluOp::Div => "div",
                AluOp::Or => "or",
                AluOp::And => "and",
                AluOp::Lsh => "lsh",
                AluOp::Rsh => "rsh",
                AluOp::Mod => "mod",
                AluOp::Xor => "xor",
            };
            (mnemonic, src(s))
        }
        Op::Neg => ("neg", String::new()),
        Op::Ja => ("ja", format!("{}", target(k as usize))),
        Op::Jmp(op, s) => {
            let mnemonic = match op {
                JmpOp::Jeq => "jeq",
                JmpOp::Jgt => "jgt",
                JmpOp::Jge => "jge",
                JmpOp::Jset => "jset",
            };
            return format!(
                "({pc:03}) {mnemonic:<8} {:<16} jt {:<4} jf {}",
                src(s),
                target(usize::from(insn.jt)),
                target(usize::from(insn.jf)),
            );
        }
        Op::RetK => ("ret", format!("#{k}")),
        Op::RetA => ("ret", String::from("a")),
        Op::Tax => ("tax", String::new()),
        Op::Txa => ("txa", String::new()),
    };
    let line = format!("({pc:03}) {mnemonic:<8} {operand}");
    String::from(line.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::{ethertype_filter, FilterOptions};
    use crate::wire::EtherType;
    use alloc::vec::Vec;

    #[test]
    fn display_is_tcpdump_like() {
        let p = ethertype_filter(&[EtherType::IPV4], FilterOptions::default()).unwrap();
        let text = alloc::string::ToString::to_string(&p);
        let expected = "\
(000) ld       vlan_avail
(001) jeq      #0x0             jt 3    jf 2
(002) ja       28
(003) ldh      [12]
(004) jeq      #0x800           jt 9    jf 5
(005) jeq      #0x8100          jt 10   jf 6
(006) jeq      #0x88a8          jt 10   jf 7
(007) jeq      #0x9100          jt 10   jf 8
(008) ret      #0
(009) ret      #262144
(010) ldh      [16]
(011) jeq      #0x800           jt 16   jf 12
(012) jeq      #0x8100          jt 17   jf 13
(013) jeq      #0x88a8          jt 17   jf 14
(014) jeq      #0x9100          jt 17   jf 15
(015) ret      #0
(016) ret      #262144
(017) ldh      [20]
(018) jeq      #0x800           jt 23   jf 19
(019) jeq      #0x8100          jt 24   jf 20
(020) jeq      #0x88a8          jt 24   jf 21
(021) jeq      #0x9100          jt 24   jf 22
(022) ret      #0
(023) ret      #262144
(024) ldh      [24]
(025) jeq      #0x800           jt 27   jf 26
(026) ret      #0
(027) ret      #262144
(028) ldh      [12]
(029) jeq      #0x800           jt 34   jf 30
(030) jeq      #0x8100          jt 35   jf 31
(031) jeq      #0x88a8          jt 35   jf 32
(032) jeq      #0x9100          jt 35   jf 33
(033) ret      #0
(034) ret      #262144
(035) ldh      [16]
(036) jeq      #0x800           jt 41   jf 37
(037) jeq      #0x8100          jt 42   jf 38
(038) jeq      #0x88a8          jt 42   jf 39
(039) jeq      #0x9100          jt 42   jf 40
(040) ret      #0
(041) ret      #262144
(042) ldh      [20]
(043) jeq      #0x800           jt 45   jf 44
(044) ret      #0
(045) ret      #262144
";
        assert_eq!(text, expected, "\n{text}");
        let dd = format!("{:#}", Program::reject_all());
        assert_eq!(dd, "{ 0x06, 0, 0, 0x00000000 },\n");
    }

    #[test]
    fn display_covers_every_opcode() {
        let insns: Vec<Instruction> = (0..=0xffu16)
            .chain([0x100, 0xffff])
            .map(|code| Instruction::jump(code, SKF_AD_OFF + 44, 1, 2))
            .collect();
        let text = alloc::string::ToString::to_string(&Program::from(insns));
        assert_eq!(text.lines().count(), 258);
        assert!(text.contains("ld       vlan_tci"));
        assert!(text.contains("unimp"));
    }
}
