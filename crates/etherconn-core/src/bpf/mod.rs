//! Classic BPF receive filters for the relays.
//!
//! A relay's AF_PACKET socket sees every frame on its interface. Most of them (the host's own
//! TCP, LLDP, STP, ...) are of no interest to any endpoint, and copying them to user space only to
//! drop them there costs a ring slot and a wake-up each. [`ethertype_filter`] builds a classic BPF
//! (cBPF) program, attached with `SO_ATTACH_FILTER`, that lets the kernel drop them instead: it
//! accepts a frame when the EtherType after zero to three VLAN tags (TPID 0x8100, 0x88a8 or
//! 0x9100) is one of the configured EtherTypes, and rejects everything else, including frames
//! with more tags than configured and frames too short to hold the EtherType it must read.
//!
//! # Why the filter reads ancillary data
//!
//! On receive, Linux moves the outer 802.1Q or 802.1ad tag out of the frame into packet metadata
//! before AF_PACKET sees it: in hardware when the NIC offloads VLAN stripping, and in software
//! (`skb_vlan_untag`) otherwise. Such a frame reaches the filter with one tag fewer in its data,
//! the EtherType at offset 12 being the inner TPID or the payload's EtherType. A filter that only
//! looked at the data would accept a frame with four tags as triple-tagged, so the program first
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

// One concern per file; an arrow points at what a file uses, and no two files use each other:
//
//   filter -> asm -> validate -> insn -> opcode      (the relays' filter, built and checked)
//   interpret -> insn, opcode; disasm -> insn, opcode (run a program, print it)
//   error <- validate, asm, filter                   (uses nothing)
//
// `validate`, `interpret` and `disasm` add `Program::validate`, `Program::run` and `Display` to
// the type `insn` defines, so that `insn` needs none of them.
mod asm;
mod disasm;
mod error;
mod filter;
mod insn;
mod interpret;
mod opcode;
#[cfg(test)]
mod testutil;
mod validate;

pub use error::BpfError;
pub use filter::{ethertype_filter, FilterOptions, MAX_ETHERTYPES};
pub use insn::{Instruction, Program, DEFAULT_ACCEPT_LEN};
pub use interpret::OffloadedVlan;
pub use opcode::{
    BPF_A, BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_DIV, BPF_H, BPF_IMM, BPF_IND, BPF_JA,
    BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH,
    BPF_MAXINSNS, BPF_MEM, BPF_MEMWORDS, BPF_MISC, BPF_MOD, BPF_MSH, BPF_MUL, BPF_NEG, BPF_OR,
    BPF_RET, BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR,
    SKF_AD_OFF, SKF_AD_VLAN_TAG, SKF_AD_VLAN_TAG_PRESENT, SKF_AD_VLAN_TPID,
};
