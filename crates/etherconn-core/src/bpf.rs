//! Classic BPF receive filters for the relays.
//!
//! A relay's AF_PACKET socket sees every frame on its interface. Most of them (the host's own
//! TCP, LLDP, STP, ...) are of no interest to any endpoint, and copying them to user space only to
//! drop them there costs a ring slot and a wake-up each. [`ethertype_filter`] builds a classic BPF
//! (cBPF) program, attached with `SO_ATTACH_FILTER`, that lets the kernel drop them instead: it
//! accepts a frame when the EtherType after zero, one or two VLAN tags (TPID 0x8100, 0x88a8 or
//! 0x9100) is one of the configured EtherTypes, and rejects everything else, including frames
//! with more tags than configured and frames too short to hold the EtherType it must read.
//!
//! # Why the filter reads ancillary data
//!
//! On receive, Linux moves the outer 802.1Q or 802.1ad tag out of the frame into packet metadata
//! before AF_PACKET sees it: in hardware when the NIC offloads VLAN stripping, and in software
//! (`skb_vlan_untag`) otherwise. Such a frame reaches the filter with one tag fewer in its data,
//! the EtherType at offset 12 being the inner TPID or the payload's EtherType. A filter that only
//! looked at the data would accept a triple-tagged frame as double-tagged, so the program first
//! loads `vlan_avail` (the ancillary word at [`SKF_AD_OFF`] + [`SKF_AD_VLAN_TAG_PRESENT`]): when
//! a tag was removed, it allows one tag fewer in the data. The relay puts the removed tag back
//! (from `PACKET_AUXDATA` or the ring header) before it classifies the frame.
//!
//! [`Program::run`] interprets a program in user space with the kernel's semantics, so filters
//! can be tested without a kernel, and [`Program::validate`] applies the checks the kernel makes
//! when a program is attached.
//!
//! # Example
//!
//! ```
//! use etherconn_core::bpf::{ethertype_filter, FilterOptions, OffloadedVlan};
//! use etherconn_core::wire::EtherType;
//!
//! let opts = FilterOptions::default();
//! let filter = ethertype_filter(&[EtherType::ARP, EtherType::IPV4, EtherType::IPV6], opts)?;
//! filter.validate()?;
//!
//! // An 802.1Q-tagged IPv4 frame, VLAN 100, as it is on the wire...
//! let mut frame = [0u8; 64];
//! frame[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
//! frame[14..16].copy_from_slice(&100u16.to_be_bytes());
//! frame[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
//! assert_eq!(filter.run(&frame, None), opts.accept_len);
//!
//! // ...and after the kernel moved its tag into packet metadata.
//! let mut stripped = [0u8; 60];
//! stripped[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
//! let tag = OffloadedVlan { tpid: 0x8100, tci: 100 };
//! assert_eq!(filter.run(&stripped, Some(tag)), opts.accept_len);
//!
//! // LLDP is rejected (0 means drop).
//! frame[16..18].copy_from_slice(&0x88ccu16.to_be_bytes());
//! assert_eq!(filter.run(&frame, None), 0);
//! # Ok::<(), etherconn_core::bpf::BpfError>(())
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::wire::vlan::{VlanTag, MAX_TAGS};
use crate::wire::EtherType;

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
const SKF_AD_MAX: u32 = 64;
/// Base of offsets relative to the network header (`-0x100000`).
const SKF_NET_OFF: u32 = (-0x10_0000i32) as u32;
/// Base of offsets relative to the link-layer header (`-0x200000`).
const SKF_LL_OFF: u32 = (-0x20_0000i32) as u32;

/// The TPIDs the filter skips over.
const VLAN_TPIDS: [EtherType; 3] = [EtherType::VLAN, EtherType::QINQ, EtherType::QINQ_LEGACY];
/// Offset of the EtherType (or first TPID) in an Ethernet frame.
const ETHERTYPE_OFFSET: u32 = 12;
/// Length of one VLAN tag.
const TAG_LEN: u32 = 4;

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

/// Why a filter could not be built or a program would not be accepted by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BpfError {
    /// No EtherType was given: the filter would reject every frame.
    #[error("no EtherType to accept: the filter would reject every frame")]
    NoEtherTypes,
    /// More distinct EtherTypes than a jump can skip over.
    #[error("more than {max} distinct EtherTypes given")]
    TooManyEtherTypes {
        /// The most a filter holds ([`MAX_ETHERTYPES`]).
        max: usize,
    },
    /// More VLAN tags than etherconn dispatches on.
    #[error("max_tags is {given}, etherconn dispatches on at most {max} VLAN tags")]
    TooManyTags {
        /// The `max_tags` asked for.
        given: usize,
        /// The most allowed ([`MAX_TAGS`]).
        max: usize,
    },
    /// An accept length of 0, which would drop every frame the filter accepts.
    #[error("accept length 0 would drop every accepted frame")]
    ZeroAcceptLen,
    /// A program is empty or longer than [`BPF_MAXINSNS`].
    #[error("program has {len} instructions, the kernel accepts 1 to {max}")]
    BadLength {
        /// Instructions in the program.
        len: usize,
        /// [`BPF_MAXINSNS`].
        max: usize,
    },
    /// A jump goes backwards or further than its offset field can say.
    #[error("jump at instruction {at} cannot reach instruction {target}")]
    JumpOutOfRange {
        /// Index of the jump.
        at: usize,
        /// Index it should reach.
        target: usize,
    },
    /// An instruction the kernel would refuse.
    #[error("instruction {at} is invalid: {reason}")]
    InvalidInstruction {
        /// Index of the instruction.
        at: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

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

    /// Checks the program as Linux's `bpf_check_classic` does when it is attached: its length,
    /// that every opcode and ancillary offset is known, that jumps stay inside the program,
    /// that no division or modulo is by the constant 0 and no shift by 32 or more, that scratch
    /// memory is in range and written before it is read on every path, and that the last
    /// instruction returns.
    pub fn validate(&self) -> Result<(), BpfError> {
        validate(&self.insns)
    }

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
        execute(&self.insns, packet, offloaded).unwrap_or(0)
    }
}

impl From<Vec<Instruction>> for Program {
    fn from(insns: Vec<Instruction>) -> Self {
        Program::from_instructions(insns)
    }
}

/// One instruction per line in the style of `tcpdump -d`, jump targets being absolute
/// instruction numbers; the alternate form (`{:#}`) prints the `tcpdump -dd` C array lines.
impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (pc, insn) in self.insns.iter().enumerate() {
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

/// What [`Program::run`] returns for an accepted frame by default: more than any frame, so the
/// whole frame is kept.
pub const DEFAULT_ACCEPT_LEN: u32 = 0x40000;

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

/// A forward-jump target inside an [`Assembler`].
#[derive(Clone, Copy, Debug)]
struct Label(usize);

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
/// field cannot hold rather than emitting a wrong program.
#[derive(Default)]
struct Assembler {
    insns: Vec<Instruction>,
    fixups: Vec<Fixup>,
    labels: Vec<Option<usize>>,
}

impl Assembler {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Makes `label` point at the next instruction emitted.
    fn bind(&mut self, label: Label) {
        if let Some(slot) = self.labels.get_mut(label.0) {
            *slot = Some(self.insns.len());
        }
    }

    fn stmt(&mut self, code: u16, k: u32) {
        self.insns.push(Instruction::stmt(code, k));
        self.fixups.push(Fixup::None);
    }

    fn jump(&mut self, code: u16, k: u32, jt: Option<Label>, jf: Option<Label>) {
        self.insns.push(Instruction::jump(code, k, 0, 0));
        self.fixups.push(Fixup::Cond { jt, jf });
    }

    fn ja(&mut self, target: Label) {
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

    fn finish(mut self) -> Result<Program, BpfError> {
        if self.insns.len() > BPF_MAXINSNS {
            return Err(BpfError::BadLength {
                len: self.insns.len(),
                max: BPF_MAXINSNS,
            });
        }
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
        let program = Program { insns: self.insns };
        debug_assert_eq!(program.validate(), Ok(()));
        Ok(program)
    }
}

/// An ALU operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AluOp {
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
enum JmpOp {
    Jeq,
    Jgt,
    Jge,
    Jset,
}

/// Where an ALU or jump operand comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Src {
    K,
    X,
}

/// A decoded opcode: exactly the opcodes Linux accepts in a classic program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
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

fn decode(code: u16) -> Option<Op> {
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
fn is_ancillary(k: u32) -> bool {
    k >= SKF_AD_OFF
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

/// Linux `bpf_asm` names of the ancillary offsets, indexed by offset / 4.
const ANCILLARY_NAMES: [&str; 16] = [
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
    use alloc::vec;
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

    /// A frame with the given TPIDs (each tag with TCI 0x0064), then `ethertype` and a 46-byte
    /// payload.
    fn frame(tpids: &[u16], ethertype: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
        for tpid in tpids {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&0x0064u16.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(&[0x45; 46]);
        f
    }

    const TAG: Option<OffloadedVlan> = Some(OffloadedVlan {
        tpid: 0x8100,
        tci: 100,
    });

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
    fn three_tags_rejected() {
        let p = filter(2);
        assert_eq!(p.run(&frame(&[0x88a8, 0x8100, 0x8100], 0x0800), None), 0);
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
        let three = FilterOptions { max_tags: 3, ..d };
        assert_eq!(
            ethertype_filter(&ETS, three),
            Err(BpfError::TooManyTags { given: 3, max: 2 })
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
                if max_tags == 2 {
                    assert_eq!(p.run(&frame(&[0x9100, 0x8100], last), None), ACCEPT);
                    assert_eq!(p.run(&frame(&[0x8100], last), TAG), ACCEPT);
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

    #[test]
    fn display_is_tcpdump_like() {
        let p = ethertype_filter(&[EtherType::IPV4], FilterOptions::default()).unwrap();
        let text = alloc::string::ToString::to_string(&p);
        let expected = "\
(000) ld       vlan_avail
(001) jeq      #0x0             jt 3    jf 2
(002) ja       21
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
(018) jeq      #0x800           jt 20   jf 19
(019) ret      #0
(020) ret      #262144
(021) ldh      [12]
(022) jeq      #0x800           jt 27   jf 23
(023) jeq      #0x8100          jt 28   jf 24
(024) jeq      #0x88a8          jt 28   jf 25
(025) jeq      #0x9100          jt 28   jf 26
(026) ret      #0
(027) ret      #262144
(028) ldh      [16]
(029) jeq      #0x800           jt 31   jf 30
(030) ret      #0
(031) ret      #262144
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

    fn run(insns: &[Instruction], packet: &[u8]) -> u32 {
        Program::from(insns.to_vec()).run(packet, None)
    }

    const fn stmt(code: u16, k: u32) -> Instruction {
        Instruction::stmt(code, k)
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
        fn filter_matches_reference(
            ets in proptest::collection::vec(ethertype().prop_map(EtherType), 1..20),
            max_tags in 0..=MAX_TAGS,
            accept_len in 1..=u32::MAX,
            tpids in proptest::collection::vec(tpid(), 0..=3),
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
