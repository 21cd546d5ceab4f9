//! x86_64 code: which relocation types the linker supports and how each is computed, the
//! jump written over an entry, and what an old function's code lets a new body do in place.
//!
//! Everything here is specific to x86_64; i386 has its own module next to this one.

use object::elf;

use super::{put, RelocKind};
use crate::Error;

/// What relocation `r_type` needs from the linker; unsupported types are refused.
pub fn kind(r_type: u32) -> Result<RelocKind, Error> {
    Ok(match r_type {
        elf::R_X86_64_64 | elf::R_X86_64_32 | elf::R_X86_64_32S => RelocKind::Absolute,
        elf::R_X86_64_PC32 | elf::R_X86_64_PC64 => RelocKind::PcRelative,
        elf::R_X86_64_PLT32 => RelocKind::Plt,
        elf::R_X86_64_GOTPCREL | elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX => {
            RelocKind::Got
        }
        elf::R_X86_64_GOTTPOFF => RelocKind::GotTpOff,
        elf::R_X86_64_TPOFF32 => RelocKind::TpOff,
        other => {
            return Err(Error::UnsupportedRelocation {
                machine: "x86_64",
                r_type: other,
            })
        }
    })
}

/// Writes relocation `r_type` at the start of `at`, for a place at address `place` whose
/// resolved target (symbol, stub, GOT slot or TLS offset, per [`RelocKind`]) is `target`.
pub fn apply(
    r_type: u32,
    at: &mut [u8],
    place: u64,
    target: u64,
    addend: i64,
) -> Result<(), String> {
    let absolute = target.wrapping_add(addend as u64);
    let relative = absolute.wrapping_sub(place) as i64;
    match r_type {
        elf::R_X86_64_64 => put(at, &absolute.to_le_bytes()),
        elf::R_X86_64_PC64 => put(at, &relative.to_le_bytes()),
        elf::R_X86_64_32 => {
            let value = u32::try_from(absolute)
                .map_err(|_| format!("{absolute:#x} does not fit in 32 bits"))?;
            put(at, &value.to_le_bytes())
        }
        elf::R_X86_64_32S | elf::R_X86_64_TPOFF32 => {
            let value = i32::try_from(absolute as i64).map_err(|_| {
                format!(
                    "{:#x} does not fit in a signed 32-bit field",
                    absolute as i64
                )
            })?;
            put(at, &value.to_le_bytes())
        }
        _ => {
            let value = i32::try_from(relative).map_err(|_| {
                format!("target {absolute:#x} is out of ±2 GiB reach of {place:#x}")
            })?;
            put(at, &value.to_le_bytes())
        }
    }
}

/// `jmp *0(%rip)` followed by the absolute address: reaches anywhere in the address space.
pub fn indirect_jump_stub(target: u64) -> [u8; 14] {
    let mut stub = [0u8; 14];
    stub[..6].copy_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
    stub[6..].copy_from_slice(&target.to_le_bytes());
    stub
}

/// Most bytes of a patch module searched by [`may_lead_to`] (modules are kilobytes; a record
/// giving its length is the target's to forge).
pub const MAX_MODULE_SCAN: u64 = 64 << 20;

/// Whether `code` (bytes at `address`, instruction boundaries unknown) may lead to `to`: a
/// 4-byte window that, as the `rip`-relative displacement of an instruction ending 0, 1, 2 or
/// 4 bytes after it, designates `to` (every direct call, jump and `rip`-relative reference is
/// one), or an 8-byte word equal to it at any offset (a GOT slot, a call stub's address).
pub fn may_lead_to(code: &[u8], address: u64, to: u64) -> bool {
    let relative = code.windows(4).enumerate().any(|(i, w)| {
        let rel = i32::from_le_bytes([w[0], w[1], w[2], w[3]]) as i64 as u64;
        let end = address.wrapping_add(i as u64 + 4).wrapping_add(rel);
        [0u64, 1, 2, 4].iter().any(|&k| end.wrapping_add(k) == to)
    });
    let absolute =
        (code.windows(8)).any(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")) == to);
    relative || absolute
}

/// Length of the jump written over a function's entry.
pub const JUMP_LEN: usize = lpkg_kernel::arch::current::JMP_REL32_LEN;

/// `jmp rel32` from `from` to `to`, or `None` when `to` is out of ±2 GiB reach.
pub use lpkg_kernel::arch::current::encode_jmp_rel32 as jump;

/// Whether the function `code` at `address` can be entered only at its start and left only by
/// returning: no call (so no return address into it on any stack, suspended or not), no
/// indirect jump, no jump out of it (so no cold part or other code jumps back into its middle).
/// Only such a function's code may be overwritten by a whole new body: nothing can be in its
/// middle but a thread that is executing it, which the switch's stack check sees.
pub fn is_closed_leaf(code: &[u8], address: u64) -> bool {
    super::is_closed_leaf_in(64, code, address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_leaf_has_no_call_and_no_jump_out() {
        // f: mov %rdi,%rax; test %rax,%rax; je +1 (to ret); inc %rax; ret
        let leaf = [
            0x48, 0x89, 0xf8, 0x48, 0x85, 0xc0, 0x74, 0x03, 0x48, 0xff, 0xc0, 0xc3,
        ];
        assert!(is_closed_leaf(&leaf, 0x1000));
        let mut jumps_out = leaf;
        jumps_out[7] = 0x10; // je past the end: a cold part
        assert!(!is_closed_leaf(&jumps_out, 0x1000));
        // call rel32; ret
        assert!(!is_closed_leaf(&[0xe8, 0, 0, 0, 0, 0xc3], 0x1000));
        // jmp *%rax (a jump table or a tail call through a pointer)
        assert!(!is_closed_leaf(&[0xff, 0xe0], 0x1000));
        // a truncated instruction
        assert!(!is_closed_leaf(&[0x48, 0x89], 0x1000));
    }

    /// Where a `jmp rel32` at `from` leads, if `bytes` is one.
    fn jump_target(from: u64, bytes: &[u8]) -> Option<u64> {
        if bytes.len() < JUMP_LEN || bytes[0] != 0xe9 {
            return None;
        }
        let rel = i32::from_le_bytes(bytes[1..5].try_into().ok()?);
        Some(
            from.wrapping_add(JUMP_LEN as u64)
                .wrapping_add(rel as i64 as u64),
        )
    }

    #[test]
    fn module_bytes_that_may_lead_to_a_function() {
        // call 0x2000 from 0x1000; mov [rip+x], imm32 (field 4 bytes before the end).
        let call = [0xe8, 0xfb, 0x0f, 0x00, 0x00];
        assert!(may_lead_to(&call, 0x1000, 0x2000));
        assert!(!may_lead_to(&call, 0x1000, 0x2003));
        let store = [0xc7, 0x05, 0xf6, 0x0f, 0x00, 0x00, 1, 0, 0, 0];
        assert!(may_lead_to(&store, 0x1000, 0x2000));
        // An aligned GOT slot or stub address holding it.
        let mut slot = [0u8; 16];
        slot[8..].copy_from_slice(&0x7f00_0000_2000u64.to_le_bytes());
        assert!(may_lead_to(&slot, 0x1000, 0x7f00_0000_2000));
        assert!(!may_lead_to(&slot[..12], 0x1000, 0x7f00_0000_2000));
    }

    #[test]
    fn jump_round_trips_and_refuses_far_targets() {
        let bytes = jump(0x5555_0000_1000, 0x5555_0100_0000).unwrap();
        assert_eq!(
            jump_target(0x5555_0000_1000, &bytes),
            Some(0x5555_0100_0000)
        );
        let back = jump(0x5555_0100_0000, 0x5555_0000_1000).unwrap();
        assert_eq!(jump_target(0x5555_0100_0000, &back), Some(0x5555_0000_1000));
        assert!(jump(0x1000, 0x1000 + (1 << 32)).is_none());
    }

    #[test]
    fn pc32_out_of_range_is_an_error_not_a_panic() {
        let mut at = [0u8; 4];
        assert!(apply(elf::R_X86_64_PC32, &mut at, 0x1000, 0x7fff_0000_0000, 0).is_err());
        apply(elf::R_X86_64_PC32, &mut at, 0x1000, 0x2000, -4).unwrap();
        assert_eq!(i32::from_le_bytes(at), 0x2000 - 4 - 0x1000);
        let mut short = [0u8; 2];
        assert!(apply(elf::R_X86_64_64, &mut short, 0, 0, 0).is_err());
    }
}
