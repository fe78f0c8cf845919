//! Fuzzes the classic BPF validator, interpreter and filter builder.
//!
//! For every program (raw bytes, or "steered": opcodes mapped onto the known ones and jumps
//! kept inside the program, so that most programs pass the validator), on any frame, with or
//! without an offloaded VLAN tag:
//!
//! - `Program::run`, `Program::validate` and (up to 64 instructions) both `Display` forms
//!   return without panicking
//!   (a validated program cannot loop: classic BPF only jumps forward; libFuzzer's `-timeout`
//!   would report one that hangs);
//! - when `validate` accepts the program, `run` returns 0 or one of the program's `ret #k`
//!   values (or anything, if it has a `ret a`), and the running kernel accepts the program
//!   too (`SO_ATTACH_FILTER` on a UDP socket; skipped where no socket can be made);
//! - a steered program is refused only for a reason the steering leaves to chance (scratch
//!   memory, constants, ancillary offsets), never for its jumps, length, opcodes or end.
//!
//! For `ethertype_filter` with any EtherTypes and options: it fails exactly when the options
//! are invalid, its program always validates, and it accepts a frame exactly when the
//! EtherType after at most `max_tags` TPIDs (counting an offloaded tag) is listed, as a model
//! written here from its documentation says. The filter's program, with a few instructions
//! overwritten, also goes through the program checks above.
//!
//! Input layout (a reader yields zeros past the end): byte 0 is the mode (bits 0-1: 0 raw, 1
//! steered, 2 filter, 3 filter with overwritten instructions; bit 2: an offloaded tag), bytes
//! 1-4 the offloaded tag's TPID and TCI (big-endian). Programs: a big-endian `u16` count, then
//! as many 8-byte instructions as the input holds (`struct sock_filter` in little-endian: code,
//! jt, jf, k). Filters: `max_tags` (byte mod 5: 0 to 3, 4 is invalid), the accept length (big-endian `u32`), a count
//! byte and that many big-endian EtherTypes; then, in mode 3, a count byte and that many
//! overwrites (index `u16`, field byte, value `u32`). The rest is the frame. See
//! docs/fuzzing.md.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use etherconn_core::bpf::{
    ethertype_filter, BpfError, FilterOptions, Instruction, OffloadedVlan, Program, BPF_A, BPF_JA,
    BPF_JMP, BPF_K, BPF_MAXINSNS, BPF_RET, MAX_ETHERTYPES,
};
use etherconn_core::wire::vlan::MAX_TAGS;
use etherconn_core::wire::EtherType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    let mode = r.u8();
    let tag = OffloadedVlan {
        tpid: r.u16(),
        tci: r.u16(),
    };
    let offloaded = (mode & 4 != 0).then_some(tag);
    match mode & 3 {
        0 => {
            let insns = instructions(&mut r);
            check_program(&Program::from(insns), r.0, offloaded);
        }
        1 => {
            let insns = steer(instructions(&mut r));
            let p = Program::from(insns);
            check_steered(&p);
            check_program(&p, r.0, offloaded);
        }
        _ => check_filter(&mut r, mode & 3 == 3, offloaded),
    }
});

/// A byte source that yields zeros once the input runs out.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

/// A count, then as many instructions as the input holds.
fn instructions(r: &mut Reader<'_>) -> Vec<Instruction> {
    let n = usize::from(r.u16()).min(r.0.len() / 8);
    let (raw, rest) = r.0.split_at(n * 8);
    r.0 = rest;
    raw.chunks_exact(8)
        .map(|b| Instruction {
            code: u16::from_le_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect()
}

/// Every opcode the validator knows, found by asking it (so that this target cannot disagree
/// with its decoder about which exist).
fn known_opcodes() -> &'static [u16] {
    static CODES: OnceLock<Vec<u16>> = OnceLock::new();
    CODES.get_or_init(|| {
        let ret = Instruction::stmt(BPF_RET | BPF_K, 0);
        (0..=u16::MAX)
            .filter(|&code| {
                let p = Program::from(vec![Instruction::stmt(code, 0), ret]);
                !matches!(
                    p.validate(),
                    Err(BpfError::InvalidInstruction {
                        at: 0,
                        reason: "unknown opcode"
                    })
                )
            })
            .collect()
    })
}

/// Maps every opcode onto a known one, keeps every jump inside the program and makes the last
/// instruction return: what is left for the validator to refuse is scratch memory use, division
/// or shift constants and ancillary offsets.
fn steer(mut insns: Vec<Instruction>) -> Vec<Instruction> {
    let codes = known_opcodes();
    let len = insns.len();
    for (at, insn) in insns.iter_mut().enumerate() {
        insn.code = codes[usize::from(insn.code) % codes.len()];
        let remaining = len - at - 1;
        if remaining == 0 {
            let ret_a = insn.k & 1 != 0;
            insn.code = BPF_RET | if ret_a { BPF_A } else { BPF_K };
        } else if insn.code == BPF_JMP | BPF_JA {
            insn.k %= remaining as u32;
        } else if insn.code & 0x07 == BPF_JMP {
            // `remaining` may exceed 255; a jump field cannot.
            let reach = remaining.min(256);
            insn.jt = (usize::from(insn.jt) % reach) as u8;
            insn.jf = (usize::from(insn.jf) % reach) as u8;
        }
    }
    insns
}

fn check_steered(p: &Program) {
    match p.validate() {
        Ok(()) => {}
        Err(BpfError::BadLength { len, .. }) if len == 0 || len > BPF_MAXINSNS => {}
        Err(BpfError::InvalidInstruction { reason, .. })
            if [
                "scratch memory read before it is written",
                "division by the constant 0",
                "shift by 32 or more",
                "unknown ancillary offset",
                "scratch memory index out of range",
            ]
            .contains(&reason) => {}
        Err(e) => panic!("a steered program refused: {e}\n{p}"),
    }
}

fn check_program(p: &Program, packet: &[u8], offloaded: Option<OffloadedVlan>) {
    let verdict = p.run(packet, offloaded);
    // Printing is per instruction and costs as much as the rest together: long programs add
    // nothing to it but time.
    if p.len() <= 64 {
        let _ = p.to_string();
        let _ = format!("{p:#}");
    }
    if p.validate().is_err() {
        return;
    }
    let rets = p.as_slice().iter().filter(|i| i.code & 0x07 == BPF_RET);
    let ret_a = rets.clone().any(|i| i.code == BPF_RET | BPF_A);
    let ret_k = rets.filter(|i| i.code == BPF_RET | BPF_K).map(|i| i.k);
    assert!(
        verdict == 0 || ret_a || ret_k.clone().any(|k| k == verdict),
        "run returned {verdict}, which no ret of the program returns\n{p}"
    );
    if let Some(attached) = kernel_attach(p) {
        assert!(
            attached.is_ok(),
            "validate accepts a program the kernel refuses ({attached:?}):\n{p:#}"
        );
    }
}

/// `SO_ATTACH_FILTER` of `p` on a UDP socket of this process (which needs no privilege), or
/// `None` where no socket could be made.
#[allow(unsafe_code)]
fn kernel_attach(p: &Program) -> Option<std::io::Result<()>> {
    static SOCKET: OnceLock<Option<i32>> = OnceLock::new();
    let fd = (*SOCKET.get_or_init(|| {
        if std::env::var_os("BPF_FUZZ_NO_KERNEL").is_some() {
            eprintln!("bpf target: BPF_FUZZ_NO_KERNEL is set, the kernel cross-check is skipped");
            return None;
        }
        // SAFETY: socket(2) takes no pointers; the descriptor is kept for the whole run.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
        if fd < 0 {
            eprintln!("bpf target: no UDP socket, the kernel cross-check is skipped");
        }
        (fd >= 0).then_some(fd)
    }))?;
    let insns = p.as_slice();
    let fprog = libc::sock_fprog {
        len: u16::try_from(insns.len()).ok()?,
        // The kernel only reads through this pointer.
        filter: insns.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `Instruction` is `#[repr(C)]` with `struct sock_filter`'s layout (a test in
    // etherconn-core checks it); `fprog` points at `insns.len()` of them, alive for the call,
    // and the option length is `fprog`'s size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    Some(if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    })
}

const VLAN_TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];

fn check_filter(r: &mut Reader<'_>, overwrite: bool, offloaded: Option<OffloadedVlan>) {
    let max_tags = usize::from(r.u8() % 5);
    let accept_len = r.u32();
    let n = usize::from(r.u8());
    let ethertypes: Vec<EtherType> = (0..n).map(|_| EtherType(r.u16())).collect();
    let opts = FilterOptions {
        max_tags,
        accept_len,
    };
    let distinct: BTreeSet<u16> = ethertypes.iter().map(|e| e.0).collect();
    let filter = ethertype_filter(&ethertypes, opts);
    let expected = if max_tags > MAX_TAGS {
        Err(BpfError::TooManyTags {
            given: max_tags,
            max: MAX_TAGS,
        })
    } else if accept_len == 0 {
        Err(BpfError::ZeroAcceptLen)
    } else if distinct.len() > MAX_ETHERTYPES {
        Err(BpfError::TooManyEtherTypes {
            max: MAX_ETHERTYPES,
        })
    } else if distinct.is_empty() {
        Err(BpfError::NoEtherTypes)
    } else {
        Ok(())
    };
    assert_eq!(filter.as_ref().map(|_| ()).map_err(|e| *e), expected);
    let Ok(mut p) = filter else {
        return;
    };
    if let Err(e) = p.validate() {
        panic!("ethertype_filter built a program validate refuses: {e}\n{p}");
    }
    if !overwrite {
        let packet = r.0;
        let want = model(&distinct, max_tags, packet, offloaded.is_some());
        let got = p.run(packet, offloaded);
        assert_eq!(
            got,
            if want { accept_len } else { 0 },
            "{ethertypes:?} max_tags {max_tags} offloaded {offloaded:?}\n{p}"
        );
        check_program(&p, packet, offloaded);
        return;
    }
    let mut insns = p.into_instructions();
    for _ in 0..r.u8() {
        let at = usize::from(r.u16()) % insns.len();
        let field = r.u8();
        let value = r.u32();
        let insn = &mut insns[at];
        match field % 4 {
            0 => insn.code = value as u16,
            1 => insn.jt = value as u8,
            2 => insn.jf = value as u8,
            _ => insn.k = value,
        }
    }
    p = Program::from(insns);
    check_program(&p, r.0, offloaded);
}

/// Whether the filter must accept `frame`: its EtherType after at most `max_tags` VLAN TPIDs
/// (one fewer when the kernel removed a tag, whose TPID is not looked at) is listed; a listed
/// TPID is accepted where it is read; a frame too short to hold the EtherType read is refused.
fn model(listed: &BTreeSet<u16>, max_tags: usize, frame: &[u8], offloaded: bool) -> bool {
    let budget = match (offloaded, max_tags) {
        (true, 0) => return false,
        (true, n) => n - 1,
        (false, n) => n,
    };
    let mut at = 12;
    for level in 0..=budget {
        let Some(b) = frame.get(at..at + 2) else {
            return false;
        };
        let et = u16::from_be_bytes([b[0], b[1]]);
        if listed.contains(&et) {
            return true;
        }
        if level == budget || !VLAN_TPIDS.contains(&et) {
            return false;
        }
        at += 4;
    }
    false
}
