//! Instruction decoding for the x86 family (x86_64 and i386 alike, `bitness` 64 or 32):
//! instruction bounds for relocation biases, entry checks, references to an address and
//! line-number-only difference detection.

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction};

/// Bytes overwritten at a replaced function's entry (`jmp rel32`, in both modes).
pub const JUMP_SIZE: u64 = 5;

/// `bytes` with `None` wherever `pattern` has `None`.
pub fn mask_like(bytes: &[u8], pattern: &[Option<u8>]) -> Vec<Option<u8>> {
    bytes
        .iter()
        .zip(pattern)
        .map(|(&b, p)| p.map(|_| b))
        .collect()
}

/// Whether `actual` (a function's bytes in a linked file) is the code of `old` (its bytes in an
/// object, `expected` the same masked by [`masked_code`]), instruction by instruction: the
/// same instructions, NOP padding aside, with every branch inside the function reaching the
/// same instruction and its short or near form left to the assembler. A build from the same
/// sources without `-ffunction-sections` may differ from the object so (gas relaxes branches
/// across alignment padding otherwise) and is still the same code.
pub fn same_instructions(bitness: u32, old: &[u8], expected: &[Option<u8>], actual: &[u8]) -> bool {
    if old.len() != expected.len() {
        return false;
    }
    let listing = |code: &[u8]| -> Vec<Instruction> {
        decode_all(bitness, code, 0)
            .into_iter()
            .filter(|i| i.mnemonic() != iced_x86::Mnemonic::Nop)
            .collect()
    };
    let (ours, theirs) = (listing(old), listing(actual));
    if ours.len() != theirs.len() || ours.iter().chain(&theirs).any(|i| i.is_invalid()) {
        return false;
    }
    // The instruction a branch target lands on (or the first after the padding it lands in).
    let index = |list: &[Instruction], target: u64| list.partition_point(|i| i.ip() < target);
    let inside = |i: &Instruction, size: usize| {
        near_branch(i.op0_kind()) && i.near_branch_target() < size as u64
    };
    ours.iter().zip(&theirs).all(|(o, t)| {
        let at = o.ip() as usize;
        let pattern = &expected[at..at + o.len()];
        if pattern.iter().all(Option::is_some) && inside(o, old.len()) {
            return inside(t, actual.len())
                && o.code().as_near_branch() == t.code().as_near_branch()
                && index(&ours, o.near_branch_target()) == index(&theirs, t.near_branch_target());
        }
        let from = t.ip() as usize;
        o.len() == t.len() && mask_like(&actual[from..from + t.len()], pattern) == pattern
    })
}

fn decode_all(bitness: u32, code: &[u8], ip: u64) -> Vec<Instruction> {
    let mut decoder = Decoder::with_ip(bitness, code, ip, DecoderOptions::NONE);
    let mut out = Vec::new();
    while decoder.can_decode() {
        out.push(decoder.decode());
    }
    out
}

/// Builds the decoder's tables, which the first decoding does otherwise (≈ 0.5 ms): for a
/// thread with nothing else to do.
pub fn prepare_decoder() {
    instruction_bounds(64, &[0x90]);
}

/// `(start, end)` of every instruction of a code section, in order.
pub fn instruction_bounds(bitness: u32, code: &[u8]) -> Vec<(u64, u64)> {
    let mut decoder = Decoder::with_ip(bitness, code, 0, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    let mut out = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        out.push((instruction.ip(), instruction.next_ip()));
    }
    out
}

/// The bias to add to a PC-relative relocation's addend to get the offset it really designates
/// in its target: the distance from the field to the end of its instruction (4 for a plain
/// `rip`-relative displacement, more when an immediate follows). `bounds` comes from
/// [`instruction_bounds`].
pub fn pc_relative_bias(bounds: &[(u64, u64)], reloc_offset: u64) -> i64 {
    let i = bounds.partition_point(|&(_, end)| end <= reloc_offset);
    match bounds.get(i) {
        Some(&(start, end)) if start <= reloc_offset => (end - reloc_offset) as i64,
        _ => 4,
    }
}

/// Why a function's entry cannot take a 5-byte jump, if it cannot. `room` is how many bytes
/// from its start may be overwritten: the function and the filler after it, which nothing
/// executes (a function shorter than the jump takes it there).
pub fn entry_problem(bitness: u32, code: &[u8], start: u64, room: u64) -> Option<String> {
    if room < JUMP_SIZE {
        return Some(format!(
            "function is {} bytes long, shorter than the {JUMP_SIZE}-byte jump, with {room} bytes of room up to the next symbol",
            code.len()
        ));
    }
    let instructions = decode_all(bitness, code, start);
    for ins in &instructions {
        if ins.ip() >= start + JUMP_SIZE {
            break;
        }
        if ins.is_invalid() {
            return Some(format!(
                "the first {JUMP_SIZE} bytes do not decode as whole instructions"
            ));
        }
    }
    for ins in &instructions {
        let branches = matches!(
            ins.flow_control(),
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch | FlowControl::Call
        );
        if branches {
            let to = ins.near_branch_target();
            if to > start && to < start + JUMP_SIZE {
                return Some(format!(
                    "a branch at offset {:#x} lands at offset {:#x}, inside the first {JUMP_SIZE} bytes",
                    ins.ip() - start,
                    to - start
                ));
            }
        }
    }
    None
}

/// How an instruction refers to an address (see [`references`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// A direct call or jump (`call`/`jmp`/`jcc` with a 4-byte displacement): `field` is the
    /// address of the displacement, the last 4 bytes of the instruction.
    Branch {
        /// Address of the 4-byte displacement.
        field: u64,
    },
    /// Anything else: a short branch, a `rip`-relative operand, an immediate or a
    /// displacement equal to the address (`lea f(%rip)`, `mov $f, %edi`).
    Other {
        /// Address of the instruction.
        at: u64,
    },
}

/// Every instruction of `code` (the function at `address`, decoded from its start) that
/// refers to address `to`; with `absolute` (code linked at a fixed address) also through an
/// immediate or a displacement (in position-independent code those are never addresses);
/// with `got` (32-bit position-independent code, which reaches data through a register
/// holding the GOT's address) also through a displacement equal to `to - got`.
pub fn references(
    bitness: u32,
    code: &[u8],
    address: u64,
    to: u64,
    absolute: bool,
    got: Option<u64>,
) -> Vec<Reference> {
    use iced_x86::OpKind;
    // Addresses wrap around at the width of the mode.
    let mask = if bitness == 64 {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    let mut decoder = Decoder::with_ip(bitness, code, address, DecoderOptions::NONE);
    let mut ins = Instruction::default();
    let mut out = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut ins);
        let branch = matches!(
            ins.flow_control(),
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch | FlowControl::Call
        ) && near_branch(ins.op0_kind());
        if branch && ins.near_branch_target() == to {
            let end = (ins.next_ip() - address) as usize;
            let field = ins.next_ip() - 4;
            let rel32 = ins.len() >= 5
                && code
                    .get(end - 4..end)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .is_some_and(|rel| ins.next_ip().wrapping_add(rel as i64 as u64) & mask == to);
            out.push(match rel32 {
                true => Reference::Branch { field },
                false => Reference::Other { at: ins.ip() },
            });
            continue;
        }
        let memory = (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory);
        let rip_relative = memory && ins.is_ip_rel_memory_operand();
        let displacement = ins.memory_displacement64() & mask;
        let refers = (rip_relative && ins.ip_rel_memory_address() == to)
            || (absolute && memory && !rip_relative && displacement == to)
            || got.is_some_and(|got| memory && displacement == to.wrapping_sub(got) & mask)
            || (absolute
                && (0..ins.op_count())
                    .any(|i| wide_immediate(ins.op_kind(i)) && ins.immediate(i) & mask == to));
        if refers {
            out.push(Reference::Other { at: ins.ip() });
        }
    }
    out
}

/// A near branch's target operand, in either mode.
fn near_branch(kind: iced_x86::OpKind) -> bool {
    matches!(
        kind,
        iced_x86::OpKind::NearBranch64 | iced_x86::OpKind::NearBranch32
    )
}

fn wide_immediate(kind: iced_x86::OpKind) -> bool {
    use iced_x86::OpKind;
    matches!(
        kind,
        OpKind::Immediate32 | OpKind::Immediate64 | OpKind::Immediate32to64
    )
}

/// When `old` and `new` differ only in immediate operands, the `(old, new)` immediate pairs.
/// `None` when they differ in anything else (length, opcode, registers, displacements).
pub fn immediate_only_differences(bitness: u32, old: &[u8], new: &[u8]) -> Option<Vec<(u64, u64)>> {
    if old.len() != new.len() {
        return None;
    }
    let mut d_old = Decoder::with_ip(bitness, old, 0, DecoderOptions::NONE);
    let mut d_new = Decoder::with_ip(bitness, new, 0, DecoderOptions::NONE);
    let mut pairs = Vec::new();
    while d_old.can_decode() {
        if !d_new.can_decode() {
            return None;
        }
        let a = d_old.decode();
        let b = d_new.decode();
        if a.ip() != b.ip() || a.len() != b.len() || a.code() != b.code() {
            return None;
        }
        let (start, end) = (a.ip() as usize, a.next_ip() as usize);
        if old[start..end] == new[start..end] {
            continue;
        }
        let offsets_a = d_old.get_constant_offsets(&a);
        let offsets_b = d_new.get_constant_offsets(&b);
        if !offsets_a.has_immediate()
            || offsets_a.immediate_offset() != offsets_b.immediate_offset()
            || offsets_a.immediate_size() != offsets_b.immediate_size()
        {
            return None;
        }
        let imm_start = start + offsets_a.immediate_offset();
        let imm_end = imm_start + offsets_a.immediate_size();
        if old[start..imm_start] != new[start..imm_start] || old[imm_end..end] != new[imm_end..end]
        {
            return None;
        }
        pairs.push((first_immediate(&a)?, first_immediate(&b)?));
    }
    if d_new.can_decode() {
        return None;
    }
    Some(pairs)
}

fn first_immediate(ins: &Instruction) -> Option<u64> {
    use iced_x86::OpKind;
    (0..ins.op_count()).find_map(|i| match ins.op_kind(i) {
        OpKind::Immediate8
        | OpKind::Immediate8_2nd
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => Some(ins.immediate(i)),
        _ => None,
    })
}

/// Whether `bytes` is only what assemblers and linkers put between functions: NOPs of any
/// length, `int3` or zeros. Such bytes after a function are never executed.
pub fn is_filler(bitness: u32, bytes: &[u8]) -> bool {
    if bytes.iter().all(|&b| b == 0) {
        return true;
    }
    let mut decoder = Decoder::new(bitness, bytes, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid()
            || !matches!(
                instruction.mnemonic(),
                iced_x86::Mnemonic::Nop | iced_x86::Mnemonic::Int3
            )
        {
            return false;
        }
    }
    true
}

/// One decoded instruction for display: its address, bytes and Intel-syntax text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Address (or offset) of the instruction.
    pub address: u64,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Intel syntax.
    pub text: String,
}

/// Disassembles `code` as if it were at `address`.
pub fn disassemble(bitness: u32, code: &[u8], address: u64) -> Vec<Line> {
    use iced_x86::{Formatter, IntelFormatter};
    let mut decoder = Decoder::with_ip(bitness, code, address, DecoderOptions::NONE);
    let mut formatter = IntelFormatter::new();
    let mut lines = Vec::new();
    let mut instruction = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        let start = (instruction.ip() - address) as usize;
        let mut text = String::new();
        formatter.format(&instruction, &mut text);
        lines.push(Line {
            address: instruction.ip(),
            bytes: code[start..start + instruction.len()].to_vec(),
            text,
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_instructions_with_branches_encoded_otherwise_are_the_same_code() {
        let unmasked = |code: &[u8]| code.iter().map(|&b| Some(b)).collect::<Vec<_>>();
        // je +1 (short) over a NOP to `ret`; then a call whose field is relocated.
        let old = [0x74, 0x01, 0x90, 0xc3, 0xe8, 0, 0, 0, 0, 0xc3];
        let mut expected = unmasked(&old);
        for b in &mut expected[5..9] {
            *b = None;
        }
        // The same with a near je and no padding, the call's field filled in by the linker.
        let near = [0x0f, 0x84, 0, 0, 0, 0, 0xc3, 0xe8, 1, 2, 3, 4, 0xc3];
        assert!(same_instructions(64, &old, &expected, &near));
        // jne instead of je; a je to the call instead of the ret; another instruction.
        let jne = [0x0f, 0x85, 0, 0, 0, 0, 0xc3, 0xe8, 1, 2, 3, 4, 0xc3];
        assert!(!same_instructions(64, &old, &expected, &jne));
        let elsewhere = [0x0f, 0x84, 1, 0, 0, 0, 0xc3, 0xe8, 1, 2, 3, 4, 0xc3];
        assert!(!same_instructions(64, &old, &expected, &elsewhere));
        let other = [0x0f, 0x84, 0, 0, 0, 0, 0xc3, 0xe9, 1, 2, 3, 4, 0xc3];
        assert!(!same_instructions(64, &old, &expected, &other));
        // Truncated or undecodable code is never the same.
        assert!(!same_instructions(64, &old, &expected, &near[..8]));
        assert!(!same_instructions(64, &old, &expected, &[0x0f, 0x0b, 0xff]));
    }

    #[test]
    fn filler_is_nops_int3_or_zeros() {
        assert!(is_filler(
            64,
            &[0x90, 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xcc]
        ));
        assert!(is_filler(64, &[0; 11]));
        assert!(is_filler(64, &[]));
        assert!(!is_filler(64, &[0x90, 0xc3]));
        assert!(!is_filler(64, &[0x00, 0x90]));
        assert!(!is_filler(64, &[0x0f, 0x1f])); // a truncated NOP
    }

    #[test]
    fn bias_is_distance_to_instruction_end() {
        // lea rax, [rip+0] (7 bytes, field at 3); cmp byte [rip+0], 0 (7 bytes, field at 9).
        let code = [
            0x48, 0x8d, 0x05, 0, 0, 0, 0, //
            0x80, 0x3d, 0, 0, 0, 0, 0x00, //
            0xc3,
        ];
        let bounds = instruction_bounds(64, &code);
        assert_eq!(pc_relative_bias(&bounds, 3), 4);
        assert_eq!(pc_relative_bias(&bounds, 9), 5);
    }

    #[test]
    fn entry_checks() {
        // mov rax, rdi; ret: 4 bytes.
        let short = entry_problem(64, &[0x48, 0x89, 0xf8, 0xc3], 0x1000, 4).unwrap();
        assert!(short.contains("4 bytes long"), "{short}");
        assert!(short.contains("4 bytes of room"), "{short}");
        // The same followed by filler: the jump runs into the padding.
        assert_eq!(
            entry_problem(64, &[0x48, 0x89, 0xf8, 0xc3], 0x1000, 16),
            None
        );
        // xor eax,eax; nop; 1: add rax,1; cmp rax,rdi; jl 1b; ret  (loop head at offset 3)
        let code = [
            0x31, 0xc0, 0x90, 0x48, 0x83, 0xc0, 0x01, 0x48, 0x39, 0xf8, 0x7c, 0xf7, 0xc3,
        ];
        let branch = entry_problem(64, &code, 0x1000, 13).unwrap();
        assert!(branch.contains("lands at offset 0x3"), "{branch}");
        // push rbx; mov rbx, rdi; ... ret: fine.
        assert_eq!(
            entry_problem(64, &[0x53, 0x48, 0x89, 0xfb, 0x5b, 0xc3], 0x1000, 6),
            None
        );
    }

    #[test]
    fn references_tell_calls_from_other_uses() {
        // At 0x100: call 0x120; lea rdi, [rip+0x14] (0x120); jmp 0x120 (rel8); mov edi, 0x120.
        let code = [
            0xe8, 0x1b, 0x00, 0x00, 0x00, //
            0x48, 0x8d, 0x3d, 0x14, 0x00, 0x00, 0x00, //
            0xeb, 0x12, //
            0xbf, 0x20, 0x01, 0x00, 0x00,
        ];
        let found = references(64, &code, 0x100, 0x120, false, None);
        assert_eq!(
            found,
            [
                Reference::Branch { field: 0x101 },
                Reference::Other { at: 0x105 },
                Reference::Other { at: 0x10c },
            ]
        );
        // In code at a fixed address the immediate is an address too.
        let found = references(64, &code, 0x100, 0x120, true, None);
        assert_eq!(found.last(), Some(&Reference::Other { at: 0x10e }));
    }

    #[test]
    fn immediate_only() {
        // mov edx, 10; ret  vs  mov edx, 12; ret
        let a = [0xba, 10, 0, 0, 0, 0xc3];
        let b = [0xba, 12, 0, 0, 0, 0xc3];
        assert_eq!(immediate_only_differences(64, &a, &b), Some(vec![(10, 12)]));
        // mov edx, 10 vs mov ecx, 10: a register differs.
        let c = [0xb9, 10, 0, 0, 0, 0xc3];
        assert_eq!(immediate_only_differences(64, &a, &c), None);
        // Displacement difference is not an immediate: mov eax,[rdi+8] vs [rdi+16].
        assert_eq!(
            immediate_only_differences(64, &[0x8b, 0x47, 8], &[0x8b, 0x47, 16]),
            None
        );
    }
}
