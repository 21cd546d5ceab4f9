//! i386 code: which relocation types the linker supports and how each is computed.
//!
//! An i386 module keeps each relocation's addend in the relocated field (REL). Its
//! position-independent code finds the GOT with `call __x86.get_pc_thunk.REG; add
//! $_GLOBAL_OFFSET_TABLE_, %REG` (`R_386_GOTPC`, `GOT + A - P`), then reaches data as
//! `sym - GOT` (`R_386_GOTOFF`) and GOT slots as `slot - GOT` (`R_386_GOT32X`): the GOT is the
//! address `_GLOBAL_OFFSET_TABLE_` resolves to (the target's, which the builder binds), the
//! slots are the module's own. Every address is 32 bits wide and arithmetic wraps at 4 GiB, so
//! a direct call reaches anything: no call stubs.

use std::ops::Range;

use iced_x86::{
    Code, Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, OpAccess,
    OpKind, Register,
};
use object::elf;

use super::{put, GotContext, RelocKind};
use crate::Error;

/// The symbol GOT-relative relocations are relative to.
pub const GOT_SYMBOL: &str = "_GLOBAL_OFFSET_TABLE_";

/// What relocation `r_type` needs from the linker; unsupported types are refused (general-
/// and local-dynamic TLS, TLS descriptors, 8- and 16-bit fields).
pub fn kind(r_type: u32) -> Result<RelocKind, Error> {
    Ok(match r_type {
        elf::R_386_32 => RelocKind::Absolute,
        // `R_386_GOTPC` is `S + A - P` with `S` the GOT symbol.
        elf::R_386_PC32 | elf::R_386_PLT32 | elf::R_386_GOTPC => RelocKind::PcRelative,
        elf::R_386_GOTOFF => RelocKind::GotOffset,
        elf::R_386_GOT32 | elf::R_386_GOT32X => RelocKind::Got,
        elf::R_386_TLS_IE | elf::R_386_TLS_GOTIE => RelocKind::GotTpOff,
        elf::R_386_TLS_LE | elf::R_386_TLS_LE_32 => RelocKind::TpOff,
        other => {
            return Err(Error::UnsupportedRelocation {
                machine: "i386",
                r_type: other,
            })
        }
    })
}

/// The addend a supported relocation keeps in its 4-byte field `at`.
pub fn implicit_addend(r_type: u32, at: &[u8]) -> Result<i64, String> {
    let field: [u8; 4] = at
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("relocation type {r_type} runs past the end of its section"))?;
    Ok(i64::from(i32::from_le_bytes(field)))
}

/// Writes relocation `r_type` at the start of `at`, for a place at address `place` whose
/// resolved target (symbol, GOT slot or thread-pointer offset, per [`kind`]) is `target`;
/// `context` gives the GOT's address (needed by GOT-relative types) and the ModRM byte before
/// a GOT slot's field: without a base register (`mov sym@GOT, %reg` in code that is not
/// position-independent) the field holds the slot's address itself, not its offset from the
/// GOT.
pub fn apply(
    r_type: u32,
    at: &mut [u8],
    place: u64,
    target: u64,
    addend: i64,
    context: GotContext,
) -> Result<(), String> {
    let address = |value: u64, what: &str| {
        u32::try_from(value).map_err(|_| format!("{what} {value:#x} is above 4 GiB"))
    };
    let offset = |value: i64| {
        i32::try_from(value)
            .map(|v| v as u32)
            .map_err(|_| format!("thread-pointer offset {value} does not fit in 32 bits"))
    };
    let got = || {
        context.got.ok_or_else(|| format!("relocation type {r_type} is relative to {GOT_SYMBOL}, which the module does not name"))
            .and_then(|g| address(g, "the GOT's address"))
    };
    let sum = |base: u32| base.wrapping_add(addend as u32);
    let value = match r_type {
        elf::R_386_32 | elf::R_386_TLS_IE => sum(address(target, "address")?),
        elf::R_386_PC32 | elf::R_386_PLT32 | elf::R_386_GOTPC => {
            sum(address(target, "address")?).wrapping_sub(address(place, "place")?)
        }
        // ModRM with mod 00 and r/m 101: a 32-bit displacement, no base register.
        elf::R_386_GOT32 | elf::R_386_GOT32X if context.modrm.is_some_and(|m| m & 0xc7 == 0x05) => {
            sum(address(target, "address")?)
        }
        elf::R_386_GOTOFF | elf::R_386_GOT32 | elf::R_386_GOT32X | elf::R_386_TLS_GOTIE => {
            sum(address(target, "address")?).wrapping_sub(got()?)
        }
        // `target` is the offset from the thread pointer (negative, variant II); `@tpoff`
        // (`R_386_TLS_LE_32`, used with `sub`) is its negation.
        elf::R_386_TLS_LE => sum(offset(target as i64)?),
        elf::R_386_TLS_LE_32 => sum(offset((target as i64).wrapping_neg())?),
        other => return Err(format!("relocation type {other} is not supported")),
    };
    put(at, &value.to_le_bytes())
}

/// `jmp rel32` from `from` to `to`: the displacement wraps at 4 GiB, so it reaches any
/// address of a 32-bit process (`None` only for addresses above 4 GiB).
pub use lpkg_kernel::arch::i386::encode_jmp_rel32 as jump;

/// Whether the function `code` at `address` is a closed leaf (see
/// [`super::x86_64::is_closed_leaf`]), decoded in 32-bit mode.
pub fn is_closed_leaf(code: &[u8], address: u64) -> bool {
    super::is_closed_leaf_in(32, code, address)
}

/// Whether `code` (bytes at `address`, instruction boundaries unknown) may lead to `to`: a
/// 4-byte window that, as the displacement of a direct call or jump ending 0, 1, 2 or 4
/// bytes after it, designates `to` (wrapping at 4 GiB), or a 4-byte word equal to it at any
/// offset (an absolute address: a GOT slot, a pointer, an `R_386_32` operand).
pub fn may_lead_to(code: &[u8], address: u64, to: u64) -> bool {
    let Ok(to) = u32::try_from(to) else {
        return false;
    };
    let address = address as u32;
    code.windows(4).enumerate().any(|(i, w)| {
        let word = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let end = address.wrapping_add(i as u32 + 4).wrapping_add(word);
        word == to || [0u32, 1, 2, 4].iter().any(|&k| end.wrapping_add(k) == to)
    })
}

/// Where functions built with a frame pointer (`push %ebp; mov %esp,%ebp`) have their frame
/// set: `ebp` holds the address of the caller's saved `ebp`, the return address above it, the
/// caller's stack pointer 8 bytes up. The 32-bit vDSO's time functions are built so, and have
/// no CFI: this is how a thread inside one is unwound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FramedCode {
    /// Addresses of the instructions that run with the frame set, sorted.
    executing: Vec<u64>,
    /// Addresses just past the calls made with the frame set (their return addresses), sorted.
    returning: Vec<u64>,
}

/// Bytes of one function decoded at most (the vDSO's are a few hundred).
const MAX_FRAMED_FUNCTION: u64 = 64 * 1024;

impl FramedCode {
    /// The frame of every function of `functions` (runtime address ranges) whose code is in
    /// `image`, loaded at `address`. A function whose code is not all in `image`, does not
    /// decode, jumps through a register, or returns popping its arguments adds nothing.
    pub fn of(image: &[u8], address: u64, functions: &[Range<u64>]) -> FramedCode {
        let mut framed = FramedCode::default();
        for function in functions {
            if let Some(code) = function_code(image, address, function) {
                framed.add(code, function.start, image, address);
            }
        }
        framed.executing.sort_unstable();
        framed.returning.sort_unstable();
        framed.executing.dedup();
        framed.returning.dedup();
        framed
    }

    /// The same code loaded `delta` bytes further.
    pub fn moved(&self, delta: u64) -> FramedCode {
        let shift = |addresses: &[u64]| {
            let mut moved: Vec<u64> = addresses.iter().map(|a| a.wrapping_add(delta)).collect();
            moved.sort_unstable();
            moved
        };
        FramedCode {
            executing: shift(&self.executing),
            returning: shift(&self.returning),
        }
    }

    /// Whether the frame is set where a thread executes `pc` (`executing`) or will return to
    /// it.
    pub fn is_set_at(&self, pc: u64, executing: bool) -> bool {
        let addresses = match executing {
            true => &self.executing,
            false => &self.returning,
        };
        addresses.binary_search(&pc).is_ok()
    }

    /// The frame states of one function's instructions, found from its entry along every
    /// branch: a state that differs between two paths into an instruction is unknown there.
    fn add(&mut self, code: &[u8], start: u64, image: &[u8], address: u64) {
        let mut decoder = Decoder::with_ip(32, code, start, DecoderOptions::NONE);
        let instructions: Vec<Instruction> = decoder.iter().collect();
        if instructions.iter().any(|i| i.is_invalid()) || instructions.is_empty() {
            return;
        }
        let index = |ip: u64| instructions.binary_search_by_key(&ip, |i| i.ip()).ok();
        let end = start.saturating_add(code.len() as u64);
        let mut info = InstructionInfoFactory::new();
        let mut states: Vec<Option<FrameState>> = vec![None; instructions.len()];
        states[0] = Some(FrameState::Entry);
        let mut work = vec![0];
        while let Some(at) = work.pop() {
            let instruction = &instructions[at];
            let Some(state) = states[at] else { continue };
            let thunk = is_pc_thunk_call(instruction, image, address);
            let after = state.after(instruction, &mut info, thunk);
            let next = (at + 1 < instructions.len()).then_some(at + 1);
            let target = || {
                let to = instruction.near_branch_target();
                match (start..end).contains(&to) {
                    // Into the middle of an instruction: not code this decoding knows.
                    true => index(to).map(Some).ok_or(()),
                    // A tail call, or a jump to a cold part (which has this frame as well).
                    false => Ok(None),
                }
            };
            let successors = match instruction.flow_control() {
                FlowControl::Next | FlowControl::Call | FlowControl::IndirectCall => [next, None],
                FlowControl::Interrupt => [next, None],
                FlowControl::Return | FlowControl::Exception => [None, None],
                FlowControl::UnconditionalBranch if near(instruction) => match target() {
                    Ok(to) => [to, None],
                    Err(()) => return,
                },
                FlowControl::ConditionalBranch if near(instruction) => match target() {
                    Ok(to) => [next, to],
                    Err(()) => return,
                },
                _ => return,
            };
            // `ret $n` pops arguments: the caller's stack pointer is not 8 bytes above `ebp`
            // (and `iret`, `retf` are no function's return).
            if instruction.flow_control() == FlowControl::Return
                && instruction.code() != Code::Retnd
            {
                return;
            }
            for successor in successors.into_iter().flatten() {
                let merged = match states[successor] {
                    None => after,
                    Some(seen) if seen == after => continue,
                    Some(_) => FrameState::Unknown,
                };
                if states[successor] != Some(merged) {
                    states[successor] = Some(merged);
                    work.push(successor);
                }
            }
        }
        for (instruction, state) in instructions.iter().zip(&states) {
            if *state != Some(FrameState::Set) {
                continue;
            }
            self.executing.push(instruction.ip());
            if matches!(
                instruction.flow_control(),
                FlowControl::Call | FlowControl::IndirectCall
            ) {
                self.returning.push(instruction.next_ip());
            }
        }
    }
}

/// The bytes of `function` in `image` (loaded at `address`), if all there and not too long.
fn function_code<'a>(image: &'a [u8], address: u64, function: &Range<u64>) -> Option<&'a [u8]> {
    let len = function.end.checked_sub(function.start)?;
    if len == 0 || len > MAX_FRAMED_FUNCTION {
        return None;
    }
    let from = usize::try_from(function.start.checked_sub(address)?).ok()?;
    image.get(from..from.checked_add(len as usize)?)
}

/// What is known of a function's frame before an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameState {
    /// As at the entry: the return address at `esp`, `ebp` the caller's.
    Entry,
    /// `ebp` pushed: the caller's `ebp` at `esp`, the return address above.
    Pushed,
    /// `mov %esp,%ebp` done, `ebp` unchanged since.
    Set,
    /// Anything else: before or inside an epilogue (`leave`, `pop %ebp`), or code the
    /// compiler did not write the usual way.
    Unknown,
}

impl FrameState {
    /// The state after `instruction`, which `thunk` says is a call of a `get_pc_thunk`.
    fn after(
        self,
        instruction: &Instruction,
        info: &mut InstructionInfoFactory,
        thunk: bool,
    ) -> FrameState {
        // The thunk returns at once, `esp` and `ebp` as they were.
        if thunk {
            return self;
        }
        let (writes_ebp, writes_esp) = writes_frame_registers(instruction, info);
        match self {
            FrameState::Entry if is_push_ebp(instruction) => FrameState::Pushed,
            FrameState::Pushed if is_mov_esp_to_ebp(instruction) => FrameState::Set,
            FrameState::Entry | FrameState::Pushed if writes_ebp || writes_esp => {
                FrameState::Unknown
            }
            // `esp` moves in the body (pushes, calls, locals); `ebp` only in the epilogue.
            FrameState::Set if writes_ebp => FrameState::Unknown,
            state => state,
        }
    }
}

/// Whether `instruction` writes `ebp` and whether it writes `esp` (any part of either,
/// implicit uses like `push` and `leave` included).
fn writes_frame_registers(
    instruction: &Instruction,
    info: &mut InstructionInfoFactory,
) -> (bool, bool) {
    // `pusha`, `popa` and the like: registers that `used_registers` may not list.
    if instruction.is_save_restore_instruction() {
        return (true, true);
    }
    let (mut ebp, mut esp) = (false, false);
    for used in info.info(instruction).used_registers() {
        let written = !matches!(
            used.access(),
            OpAccess::Read | OpAccess::CondRead | OpAccess::NoMemAccess | OpAccess::None
        );
        match used.register().full_register32() {
            Register::EBP => ebp |= written,
            Register::ESP => esp |= written,
            _ => {}
        }
    }
    (ebp, esp)
}

/// `push %ebp`.
fn is_push_ebp(instruction: &Instruction) -> bool {
    instruction.code() == Code::Push_r32 && instruction.op0_register() == Register::EBP
}

/// `mov %esp,%ebp` (either encoding).
fn is_mov_esp_to_ebp(instruction: &Instruction) -> bool {
    matches!(instruction.code(), Code::Mov_r32_rm32 | Code::Mov_rm32_r32)
        && instruction.op0_kind() == OpKind::Register
        && instruction.op1_kind() == OpKind::Register
        && instruction.op0_register() == Register::EBP
        && instruction.op1_register() == Register::ESP
}

/// Whether `instruction` is a direct call of a `__x86.get_pc_thunk.REG` in `image` (at
/// `address`): `mov (%esp),REG; ret`, with `REG` neither `esp` nor `ebp`.
fn is_pc_thunk_call(instruction: &Instruction, image: &[u8], address: u64) -> bool {
    if instruction.code() != Code::Call_rel32_32 {
        return false;
    }
    let thunk = instruction.near_branch_target();
    let Some(code) = function_code(image, address, &(thunk..thunk.saturating_add(4))) else {
        return false;
    };
    let mut decoder = Decoder::new(32, code, DecoderOptions::NONE);
    let (load, ret) = (decoder.decode(), decoder.decode());
    load.code() == Code::Mov_r32_rm32
        && !matches!(load.op0_register(), Register::ESP | Register::EBP)
        && load.op1_kind() == OpKind::Memory
        && load.memory_base() == Register::ESP
        && load.memory_index() == Register::None
        && load.memory_displacement32() == 0
        && load.segment_prefix() == Register::None
        && ret.code() == Code::Retnd
}

/// A direct near branch (its target in the instruction).
fn near(instruction: &Instruction) -> bool {
    instruction.is_jmp_short_or_near()
        || instruction.is_jcc_short_or_near()
        || instruction.is_loop()
        || instruction.is_loopcc()
        || instruction.is_jcx_short()
}

/// A function built with a frame pointer, as the 32-bit vDSO's are, for tests: the code at
/// `address` (with the PC thunk it calls after it), and the function's length.
/// ```text
/// 00 call thunk (0x40)   0a push %ebp           0d push %ebx          13 je 1f
/// 05 add $0x1000,%eax    0b mov %esp,%ebp       0e sub $0x10,%esp      15 call 0x60 (outside)
///                                               11 test %eax,%eax      1a mov -0x4(%ebp),%ebx
/// 1d leave   1e ret   1f xor %eax,%eax   21 jmp 1a   ...   40 mov (%esp),%eax; ret
/// ```
#[cfg(test)]
pub(crate) fn framed_example() -> (Vec<u8>, u64) {
    let mut code = vec![
        0xe8, 0x3b, 0, 0, 0, 0x05, 0x00, 0x10, 0x00, 0x00, 0x55, 0x89, 0xe5,
    ];
    code.extend([
        0x53, 0x83, 0xec, 0x10, 0x85, 0xc0, 0x74, 0x0a, 0xe8, 0x46, 0, 0, 0,
    ]);
    code.extend([0x8b, 0x5d, 0xfc, 0xc9, 0xc3, 0x31, 0xc0, 0xeb, 0xf7]);
    let len = code.len() as u64;
    code.resize(0x40, 0x90);
    code.extend([0x8b, 0x04, 0x24, 0xc3]);
    (code, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame of the function of `len` bytes at the start of `code`, at 0x1000.
    fn framed_function(code: &[u8], len: u64) -> FramedCode {
        FramedCode::of(code, 0x1000, std::slice::from_ref(&(0x1000..0x1000 + len)))
    }

    /// The frame of [`framed_example`] with `edit` applied to its bytes, at 0x1000.
    fn framed(edit: impl FnOnce(&mut Vec<u8>)) -> FramedCode {
        let (mut code, len) = framed_example();
        edit(&mut code);
        framed_function(&code, len)
    }

    #[test]
    fn the_frame_is_set_from_past_mov_esp_ebp_to_the_epilogue() {
        let f = framed(|_| {});
        let set = |offset: u64| f.is_set_at(0x1000 + offset, true);
        // Before `push %ebp` (the PC thunk's call included), and between it and the `mov`.
        for offset in [0x00, 0x05, 0x0a, 0x0b] {
            assert!(!set(offset), "{offset:#x}");
        }
        // The body, the restore of `ebx`, the `leave` itself (not executed yet), and code
        // past the `ret` that a branch reaches from the body.
        for offset in [0x0d, 0x0e, 0x11, 0x13, 0x15, 0x1a, 0x1d, 0x1f, 0x21] {
            assert!(set(offset), "{offset:#x}");
        }
        // After `leave`: `ebp` is the caller's.
        assert!(!set(0x1e));
        // Not an instruction's start; past the function.
        assert!(!set(0x16) && !set(0x23) && !set(0x40));
        // The call's return address; not any other address as one.
        assert!(f.is_set_at(0x101a, false));
        assert!(!f.is_set_at(0x1015, false) && !f.is_set_at(0x1005, false));
    }

    #[test]
    fn a_pop_ebp_epilogue_ends_the_frame_after_it() {
        // `pop %ebx; pop %ebp; ret` instead of `mov -0x4(%ebp),%ebx; leave; ret`.
        let f = framed(|code| code[0x1a..0x1f].copy_from_slice(&[0x90, 0x90, 0x5b, 0x5d, 0xc3]));
        assert!(f.is_set_at(0x101c, true) && f.is_set_at(0x101d, true));
        assert!(!f.is_set_at(0x101e, true));
    }

    #[test]
    fn the_prologue_may_interleave_instructions_that_leave_esp_and_ebp_alone() {
        // `push %ebp; mov $0x7b,%eax; mov %esp,%ebp` (the vDSO's getcpu), entered at 0x0a.
        let code = [
            0x55, 0xb8, 0x7b, 0, 0, 0, 0x89, 0xe5, 0x31, 0xc0, 0xc9, 0xc3,
        ];
        let f = framed_function(&code, 0x0c);
        assert!(!f.is_set_at(0x1000, true) && !f.is_set_at(0x1001, true));
        assert!(!f.is_set_at(0x1006, true));
        assert!(f.is_set_at(0x1008, true) && f.is_set_at(0x100a, true));
        // The other encoding of `mov %esp,%ebp` (8b ec).
        let code = [0x55, 0x8b, 0xec, 0x31, 0xc0, 0x5d, 0xc3];
        let f = framed_function(&code, 0x07);
        assert!(f.is_set_at(0x1003, true));
    }

    #[test]
    fn code_not_written_the_usual_way_has_no_frame_anywhere_or_after_it() {
        // A call before the frame of something that is no PC thunk (`mov (%esp),%eax; nop`).
        let f = framed(|code| code[0x43] = 0x90);
        assert_eq!(f, FramedCode::default());
        // `ebp` written in the body: unknown from there on.
        let f = framed(|code| code[0x11..0x13].copy_from_slice(&[0x89, 0xc5]));
        assert!(f.is_set_at(0x100e, true) && f.is_set_at(0x1011, true));
        assert!(!f.is_set_at(0x1013, true) && !f.is_set_at(0x101a, true));
        // `popa` restores `ebp` too.
        let f = framed(|code| code[0x11..0x13].copy_from_slice(&[0x61, 0x90]));
        assert!(!f.is_set_at(0x1013, true));
        // Two paths into one instruction, with and without the frame: not set there.
        // `push %ebp; test %eax,%eax; je +2; mov %esp,%ebp; xor %eax,%eax; leave; ret`
        let code = [
            0x55, 0x85, 0xc0, 0x74, 0x02, 0x89, 0xe5, 0x31, 0xc0, 0xc9, 0xc3,
        ];
        let f = framed_function(&code, 0x0b);
        assert_eq!(f, FramedCode::default());
        // A jump through a register, or into the middle of an instruction: nothing known.
        assert_eq!(
            framed(|code| code[0x21..0x23].copy_from_slice(&[0xff, 0xe0])),
            FramedCode::default()
        );
        assert_eq!(framed(|code| code[0x22] = 0xf8), FramedCode::default());
        // `ret $4`: the caller's stack pointer is not where the frame says.
        let code = [0x55, 0x89, 0xe5, 0x31, 0xc0, 0xc9, 0xc2, 0x04, 0x00];
        let f = framed_function(&code, 0x09);
        assert_eq!(f, FramedCode::default());
    }

    /// The code is the target's: every byte of it changed to every value gives frames (or
    /// none), never a panic, and never a frame at the entry (nothing is pushed there yet).
    #[test]
    fn any_byte_changed_anywhere_never_panics_and_never_sets_the_frame_at_the_entry() {
        let (code, len) = framed_example();
        for at in 0..code.len() {
            for value in 0..=255u8 {
                let mut changed = code.clone();
                changed[at] = value;
                let f = framed_function(&changed, len);
                assert!(!f.is_set_at(0x1000, true), "byte {at:#x} = {value:#x}");
            }
        }
        // The image at the top of the address space.
        let top = u64::MAX - code.len() as u64 + 1;
        let _ = FramedCode::of(&code, top, std::slice::from_ref(&(top..u64::MAX)));
    }

    #[test]
    fn functions_outside_the_image_or_truncated_add_nothing() {
        let (code, len) = framed_example();
        for function in [
            0x0fff..0x0fff + len,
            0x1000..0x1000 + code.len() as u64 + 1,
            0x1000..0x1000,
            Range {
                start: 0x1010,
                end: 0x1000,
            },
            0..u64::MAX,
            u64::MAX - 1..u64::MAX,
        ] {
            let f = FramedCode::of(&code, 0x1000, std::slice::from_ref(&function));
            assert_eq!(f, FramedCode::default(), "{function:x?}");
        }
        // Cut in the middle of an instruction (`sub $0x10,%esp`).
        let f = framed_function(&code, 0x10);
        assert_eq!(f, FramedCode::default());
    }

    fn applied(r_type: u32, place: u64, target: u64, addend: i64, got: Option<u64>) -> u32 {
        let mut at = [0u8; 4];
        // ModRM 0x83: disp32(%ebx), as position-independent code writes it.
        let context = GotContext {
            got,
            modrm: Some(0x83),
        };
        apply(r_type, &mut at, place, target, addend, context).unwrap();
        u32::from_le_bytes(at)
    }

    #[test]
    fn values_wrap_at_4_gib() {
        // A call from high to low memory: the displacement wraps.
        assert_eq!(
            applied(elf::R_386_PC32, 0xf7f0_0001, 0x5655_6000, -4, None),
            0x5655_6000u32.wrapping_sub(4).wrapping_sub(0xf7f0_0001)
        );
        assert_eq!(applied(elf::R_386_32, 0, 0x5655_6000, 8, None), 0x5655_6008);
        // GOT-relative: to the GOT's address, whichever side of it.
        let got = Some(0x5655_8ff4);
        assert_eq!(
            applied(elf::R_386_GOTOFF, 0, 0x5655_9010, 0, got),
            0x5655_9010 - 0x5655_8ff4
        );
        assert_eq!(
            applied(elf::R_386_GOT32X, 0, 0xf7f1_0000, 0, got),
            0xf7f1_0000u32.wrapping_sub(0x5655_8ff4)
        );
        // TLS: the offset, or its negation.
        assert_eq!(
            applied(elf::R_386_TLS_LE, 0, -8i64 as u64, 0, None),
            -8i32 as u32
        );
        assert_eq!(applied(elf::R_386_TLS_LE_32, 0, -8i64 as u64, 0, None), 8);
        // `mov sym@GOT, %eax` without a base register (8b 05): the slot's address itself.
        let mut at = [0u8; 4];
        let absolute = GotContext {
            got,
            modrm: Some(0x05),
        };
        apply(elf::R_386_GOT32X, &mut at, 0, 0xf7f1_0000, 0, absolute).unwrap();
        assert_eq!(u32::from_le_bytes(at), 0xf7f1_0000);
    }

    #[test]
    fn a_jump_reaches_all_4_gib() {
        // From the executable near the bottom to a module near the top: more than 2 GiB.
        let bytes = jump(0x0804_9000, 0xf7f0_0000).unwrap();
        let rel = u32::from_le_bytes(bytes[1..].try_into().unwrap());
        assert_eq!(0x0804_9005u32.wrapping_add(rel), 0xf7f0_0000);
        assert_eq!(bytes[0], 0xe9);
        assert!(jump(0x1_0000_0000, 0x1000).is_none());
    }

    #[test]
    fn closed_leaves_decode_in_32_bit_mode() {
        // inc %eax; ret  (in 64-bit mode 0x40 would be a REX prefix of the ret)
        assert!(is_closed_leaf(&[0x40, 0xc3], 0x1000));
        // call rel32; ret
        assert!(!is_closed_leaf(&[0xe8, 0, 0, 0, 0, 0xc3], 0x1000));
        // jmp *%eax
        assert!(!is_closed_leaf(&[0xff, 0xe0], 0x1000));
    }

    #[test]
    fn module_bytes_that_may_lead_to_a_function() {
        // call from 0xf7f0_0000 to 0x0804_9000: wraps.
        let rel = 0x0804_9000u32.wrapping_sub(0xf7f0_0005);
        let mut call = vec![0xe8];
        call.extend(rel.to_le_bytes());
        assert!(may_lead_to(&call, 0xf7f0_0000, 0x0804_9000));
        assert!(!may_lead_to(&call, 0xf7f0_0000, 0x0804_9003));
        // An absolute address (a GOT slot or pointer), 4 bytes at any offset.
        let mut slot = vec![0x90; 7];
        slot[3..].copy_from_slice(&0x0804_9000u32.to_le_bytes());
        assert!(may_lead_to(&slot, 0x3000_0000, 0x0804_9000));
        assert!(!may_lead_to(&slot, 0x3000_0000, 0x1_0804_9000));
    }

    #[test]
    fn what_cannot_be_computed_is_an_error() {
        let mut at = [0u8; 4];
        assert!(apply(
            elf::R_386_GOTOFF,
            &mut at,
            0,
            0x1000,
            0,
            GotContext::default()
        )
        .is_err());
        assert!(apply(
            elf::R_386_32,
            &mut at,
            0,
            0x1_0000_0000,
            0,
            GotContext::default()
        )
        .is_err());
        assert!(apply(
            elf::R_386_PC32,
            &mut at,
            0x1_0000_0000,
            0x1000,
            0,
            GotContext::default()
        )
        .is_err());
        assert!(apply(
            elf::R_386_TLS_LE,
            &mut at,
            0,
            (-1i64 << 40) as u64,
            0,
            GotContext::default()
        )
        .is_err());
        assert!(apply(
            elf::R_386_32,
            &mut [0u8; 3],
            0,
            0x1000,
            0,
            GotContext::default()
        )
        .is_err());
        assert!(apply(
            elf::R_386_TLS_GD,
            &mut at,
            0,
            0x1000,
            0,
            GotContext::default()
        )
        .is_err());
        assert!(kind(elf::R_386_TLS_GD).is_err());
        assert_eq!(
            implicit_addend(elf::R_386_PC32, &[0xfc, 0xff, 0xff, 0xff]),
            Ok(-4)
        );
        assert!(implicit_addend(elf::R_386_PC32, &[0xfc]).is_err());
    }
}
