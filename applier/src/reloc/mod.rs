//! Machine code knowledge of the linker and the applier, one module per architecture
//! (`x86_64`, `i386`): which relocation types are supported and how each is computed, the jump
//! written over an entry, and what an old function's code lets a new body do in place.
//! [`Machine`] names the architecture of a module or a process and picks between them.

pub mod i386;
pub mod x86_64;

pub use i386::FramedCode;
pub use x86_64::{indirect_jump_stub, JUMP_LEN, MAX_MODULE_SCAN};

use std::ops::Range;

use crate::Error;

/// What a relocation needs from the linker before it can be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocKind {
    /// `S + A`.
    Absolute,
    /// `S + A - P`.
    PcRelative,
    /// A call: `L + A - P`, through a stub when the callee is in another library.
    Plt,
    /// A GOT slot holding the symbol's address.
    Got,
    /// A GOT slot holding the symbol's thread-pointer offset.
    GotTpOff,
    /// The symbol's thread-pointer offset itself.
    TpOff,
    /// `S + A - GOT`: relative to the GOT's address (i386 `R_386_GOTOFF`).
    GotOffset,
}

/// What GOT-relative relocations need besides their symbol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GotContext {
    /// The GOT's address, where the machine has GOT-relative relocations and the module
    /// names the GOT symbol.
    pub got: Option<u64>,
    /// The byte before the relocated field in its section: the ModRM byte of the instruction
    /// holding a GOT slot's offset, which says whether a base register holds the GOT.
    pub modrm: Option<u8>,
}

/// The architecture of a patch module or a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// ELF64, `EM_X86_64`.
    X86_64,
    /// ELF32, `EM_386`: a 32-bit process on an x86_64 kernel (IA32 emulation).
    I386,
}

impl Machine {
    /// The machine of a file the `object` crate read, when lpkg knows it.
    pub fn of_object(architecture: object::Architecture) -> Option<Machine> {
        match architecture {
            object::Architecture::X86_64 => Some(Machine::X86_64),
            object::Architecture::I386 => Some(Machine::I386),
            _ => None,
        }
    }

    /// The machine a manifest names (`target.machine`), when lpkg knows it.
    pub fn of_name(name: &str) -> Option<Machine> {
        [Machine::X86_64, Machine::I386]
            .into_iter()
            .find(|m| m.name() == name)
    }

    /// The name manifests use.
    pub fn name(self) -> &'static str {
        match self {
            Machine::X86_64 => "x86_64",
            Machine::I386 => "i386",
        }
    }

    /// Size of a pointer in a process of this machine.
    pub fn pointer_size(self) -> usize {
        match self {
            Machine::X86_64 => 8,
            Machine::I386 => 4,
        }
    }

    /// What relocation `r_type` needs from the linker; unsupported types are refused.
    pub fn reloc_kind(self, r_type: u32) -> Result<RelocKind, Error> {
        match self {
            Machine::X86_64 => x86_64::kind(r_type),
            Machine::I386 => i386::kind(r_type),
        }
    }

    /// The symbol whose address GOT-relative relocations ([`RelocKind::GotOffset`], and the
    /// GOT slots of i386) are relative to, if the machine has them.
    pub fn got_symbol(self) -> Option<&'static str> {
        match self {
            Machine::X86_64 => None,
            Machine::I386 => Some(i386::GOT_SYMBOL),
        }
    }

    /// The addend of a relocation of type `r_type` that keeps it in its field (REL), read
    /// from the field's bytes `at`.
    pub fn implicit_addend(self, r_type: u32, at: &[u8]) -> Result<i64, String> {
        match self {
            Machine::X86_64 => Err(format!(
                "an x86_64 relocation (type {r_type}) without an addend (REL)"
            )),
            Machine::I386 => i386::implicit_addend(r_type, at),
        }
    }

    /// Writes relocation `r_type` at the start of `at`, for a place at address `place` whose
    /// resolved target (symbol, stub, GOT slot or TLS offset, per [`RelocKind`]) is `target`;
    /// `got` says what GOT-relative types need.
    pub fn apply(
        self,
        r_type: u32,
        at: &mut [u8],
        place: u64,
        target: u64,
        addend: i64,
        got: GotContext,
    ) -> Result<(), String> {
        match self {
            Machine::X86_64 => x86_64::apply(r_type, at, place, target, addend),
            Machine::I386 => i386::apply(r_type, at, place, target, addend, got),
        }
    }
}

/// [`x86_64::is_closed_leaf`] for code decoded in mode `bitness` (64 or 32): the x86
/// instruction set is the same in both.
fn is_closed_leaf_in(bitness: u32, code: &[u8], address: u64) -> bool {
    use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction};
    let end = address.saturating_add(code.len() as u64);
    let mut decoder = Decoder::with_ip(bitness, code, address, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            return false;
        }
        let closed = match instruction.flow_control() {
            FlowControl::Next
            | FlowControl::Return
            | FlowControl::Interrupt
            | FlowControl::Exception => true,
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch => {
                let near = instruction.is_jmp_short_or_near()
                    || instruction.is_jcc_short_or_near()
                    || instruction.is_loop()
                    || instruction.is_loopcc()
                    || instruction.is_jcx_short();
                near && (address..end).contains(&instruction.near_branch_target())
            }
            _ => false,
        };
        if !closed {
            return false;
        }
    }
    true
}

impl Machine {
    /// `jmp rel32` from `from` to `to` in a process of this machine, or `None` when `to` is
    /// out of reach (±2 GiB on x86_64; an i386 jump reaches all 4 GiB).
    pub fn jump(self, from: u64, to: u64) -> Option<[u8; JUMP_LEN]> {
        match self {
            Machine::X86_64 => x86_64::jump(from, to),
            Machine::I386 => i386::jump(from, to),
        }
    }

    /// Whether a direct jump or call whose 4-byte displacement ends at `end` reaches `to` in a
    /// process of this machine: within ±2 GiB on x86_64; anywhere in the 4 GiB of an i386
    /// process, where the displacement wraps.
    pub fn reaches(self, end: u64, to: u64) -> bool {
        match self {
            Machine::X86_64 => i32::try_from(to.wrapping_sub(end) as i64).is_ok(),
            Machine::I386 => end <= u64::from(u32::MAX) && to <= u64::from(u32::MAX),
        }
    }

    /// Whether the function `code` at `address` is a closed leaf (see
    /// [`x86_64::is_closed_leaf`]), decoded in this machine's mode.
    pub fn is_closed_leaf(self, code: &[u8], address: u64) -> bool {
        match self {
            Machine::X86_64 => x86_64::is_closed_leaf(code, address),
            Machine::I386 => i386::is_closed_leaf(code, address),
        }
    }

    /// Where the functions `functions` (runtime address ranges) of `image`, loaded at
    /// `address`, have a frame set up by a frame pointer that unwinds them without CFI: the
    /// 32-bit vDSO's time functions (see [`i386::FramedCode`]). Nothing on x86_64, whose vDSO
    /// has CFI for all its code.
    pub fn framed_code(self, image: &[u8], address: u64, functions: &[Range<u64>]) -> FramedCode {
        match self {
            Machine::X86_64 => FramedCode::default(),
            Machine::I386 => FramedCode::of(image, address, functions),
        }
    }

    /// Whether module `code` at `address` may lead to `to` (see [`x86_64::may_lead_to`]), with
    /// this machine's pointer size and address width.
    pub fn may_lead_to(self, code: &[u8], address: u64, to: u64) -> bool {
        match self {
            Machine::X86_64 => x86_64::may_lead_to(code, address, to),
            Machine::I386 => i386::may_lead_to(code, address, to),
        }
    }
}

/// Copies `value` to the start of `at`, or fails when `at` is shorter.
fn put(at: &mut [u8], value: &[u8]) -> Result<(), String> {
    at.get_mut(..value.len())
        .ok_or_else(|| "relocation runs past the end of its section".to_owned())?
        .copy_from_slice(value);
    Ok(())
}
