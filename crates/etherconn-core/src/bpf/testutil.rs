//! Helpers shared by the tests of several `bpf` files.

use alloc::vec;
use alloc::vec::Vec;

use super::insn::Instruction;

/// A frame with the given TPIDs (each tag with TCI 0x0064), then `ethertype` and a 46-byte
/// payload.
pub(super) fn frame(tpids: &[u16], ethertype: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    for tpid in tpids {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&0x0064u16.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(&[0x45; 46]);
    f
}

/// [`Instruction::stmt`], short enough for the tables of instructions the tests write.
pub(super) const fn stmt(code: u16, k: u32) -> Instruction {
    Instruction::stmt(code, k)
}
