//! i386 code: which relocation types the linker supports and how each is computed.
//!
//! An i386 module keeps each relocation's addend in the relocated field (REL). Its
//! position-independent code finds the GOT with `call __x86.get_pc_thunk.REG; add
//! $_GLOBAL_OFFSET_TABLE_, %REG` (`R_386_GOTPC`, `GOT + A - P`), then reaches data as
//! `sym - GOT` (`R_386_GOTOFF`) and GOT slots as `slot - GOT` (`R_386_GOT32X`): the GOT is the
//! address `_GLOBAL_OFFSET_TABLE_` resolves to (the target's, which the builder binds), the
//! slots are the module's own. Every address is 32 bits wide and arithmetic wraps at 4 GiB, so
//! a direct call reaches anything: no call stubs.

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

#[cfg(test)]
mod tests {
    use super::*;

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
