//! i386 (32-bit x86, ELF32): relocation types, which bytes the linker may write around each,
//! and how DWARF addresses are relocated. Objects carry their addends in the relocated fields
//! themselves (REL entries): [`implicit_addend_width`] says how many bytes hold each.
//!
//! Position-independent code reaches its data through a register holding the GOT's address,
//! set up by `call __x86.get_pc_thunk.*; add $_GLOBAL_OFFSET_TABLE_, %reg` (`R_386_GOTPC`),
//! then `R_386_GOTOFF` (`sym - GOT`) and `R_386_GOT32X` (a GOT slot's offset from the GOT).

use object::elf;

use super::RelocClass;

/// Instructions are decoded in 32-bit mode.
pub const BITNESS: u32 = 32;

/// Position-independent code reaches data through the GOT register (`R_386_GOTOFF`).
pub const DATA_THROUGH_GOT: bool = true;

/// Whether function `name` is a helper gcc emits in every object that uses it, always the
/// same code: `__x86.get_pc_thunk.REG` (`mov (%esp), %REG; ret`), the PC for PIC code.
pub fn is_shared_helper(name: &str) -> bool {
    name.starts_with("__x86.get_pc_thunk.")
}

/// Class of a supported relocation type, or `None` when the applier cannot handle it
/// (general- and local-dynamic TLS, TLS descriptors, 8- and 16-bit fields).
pub fn reloc_class(r_type: u32) -> Option<RelocClass> {
    match r_type {
        // `S + A`, `S + A - GOT`, a GOT slot (or TLS slot) and the thread-pointer offset: the
        // addend is an offset into the symbol, whatever the instruction around the field.
        // `R_386_GOTPC`'s addend is the field's distance from the thunk's return address.
        elf::R_386_32
        | elf::R_386_GOTOFF
        | elf::R_386_GOTPC
        | elf::R_386_GOT32
        | elf::R_386_GOT32X
        | elf::R_386_TLS_LE
        | elf::R_386_TLS_LE_32
        | elf::R_386_TLS_IE
        | elf::R_386_TLS_GOTIE => Some(RelocClass::Absolute),
        elf::R_386_PC32 | elf::R_386_PLT32 => Some(RelocClass::PcRelative),
        _ => None,
    }
}

/// A readable name for a relocation type.
pub fn reloc_name(r_type: u32) -> String {
    let name = match r_type {
        elf::R_386_32 => "R_386_32",
        elf::R_386_PC32 => "R_386_PC32",
        elf::R_386_GOT32 => "R_386_GOT32",
        elf::R_386_PLT32 => "R_386_PLT32",
        elf::R_386_GOTOFF => "R_386_GOTOFF",
        elf::R_386_GOTPC => "R_386_GOTPC",
        elf::R_386_TLS_TPOFF => "R_386_TLS_TPOFF",
        elf::R_386_TLS_IE => "R_386_TLS_IE",
        elf::R_386_TLS_GOTIE => "R_386_TLS_GOTIE",
        elf::R_386_TLS_LE => "R_386_TLS_LE",
        elf::R_386_TLS_GD => "R_386_TLS_GD",
        elf::R_386_TLS_LDM => "R_386_TLS_LDM",
        elf::R_386_16 => "R_386_16",
        elf::R_386_PC16 => "R_386_PC16",
        elf::R_386_8 => "R_386_8",
        elf::R_386_PC8 => "R_386_PC8",
        elf::R_386_TLS_LDO_32 => "R_386_TLS_LDO_32",
        elf::R_386_TLS_IE_32 => "R_386_TLS_IE_32",
        elf::R_386_TLS_LE_32 => "R_386_TLS_LE_32",
        elf::R_386_TLS_DTPMOD32 => "R_386_TLS_DTPMOD32",
        elf::R_386_TLS_DTPOFF32 => "R_386_TLS_DTPOFF32",
        elf::R_386_TLS_TPOFF32 => "R_386_TLS_TPOFF32",
        elf::R_386_TLS_GOTDESC => "R_386_TLS_GOTDESC",
        elf::R_386_TLS_DESC_CALL => "R_386_TLS_DESC_CALL",
        elf::R_386_GOT32X => "R_386_GOT32X",
        _ => return format!("#{r_type}"),
    };
    name.to_string()
}

/// How many bytes at a relocation's offset hold its implicit addend (and receive its value).
pub fn implicit_addend_width(r_type: u32) -> usize {
    match r_type {
        elf::R_386_16 | elf::R_386_PC16 => 2,
        elf::R_386_8 | elf::R_386_PC8 => 1,
        elf::R_386_NONE | elf::R_386_TLS_DESC_CALL => 0,
        _ => 4,
    }
}

/// The width of the field a DWARF section's relocation of type `r_type` fills with an address,
/// or `None` for a type the builder's DWARF reader does not need.
pub fn dwarf_field_width(r_type: u32) -> Option<usize> {
    (r_type == elf::R_386_32).then_some(4)
}

/// A function's bytes from a section's `data` (`size` bytes at `start`), as `Option<u8>` with
/// `None` where the linker may write: the fields of the section's `relocations` (offset,
/// type), and the opcode bytes it may rewrite when relaxing GOT and TLS accesses
/// (`mov sym@GOT(%ebx)` into `lea sym@GOTOFF(%ebx)`, `call *sym@GOT(%ebx)` into
/// `addr32 call sym`, initial-exec TLS loads into immediates, general- and local-dynamic TLS
/// sequences up to the following `call ___tls_get_addr`).
pub fn masked_code(
    data: &[u8],
    relocations: impl Iterator<Item = (u64, u32)>,
    start: u64,
    size: u64,
) -> Vec<Option<u8>> {
    super::mask_fields(data, relocations, start, size, |r_type| match r_type {
        elf::R_386_GOT32 | elf::R_386_GOT32X | elf::R_386_TLS_IE | elf::R_386_TLS_GOTIE => {
            (2, 4, 0)
        }
        elf::R_386_TLS_GD | elf::R_386_TLS_LDM => (3, 4, 5),
        other => (0, implicit_addend_width(other), 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn got_loads_mask_their_opcode_and_tls_sequences_their_call() {
        // mov 0(%ebx), %eax (8b 83 field); ret
        let code = [0x8b, 0x83, 0, 0, 0, 0, 0xc3];
        let masked = masked_code(&code, [(2, elf::R_386_GOT32X)].into_iter(), 0, 7);
        assert_eq!(
            masked,
            [None, None, None, None, None, None, Some(0xc3)].to_vec()
        );
        // lea 0(,%ebx,1), %eax (8d 04 1d field); call ___tls_get_addr (e8 field); ret
        let code = [0x8d, 0x04, 0x1d, 0, 0, 0, 0, 0xe8, 0, 0, 0, 0, 0xc3];
        let masked = masked_code(&code, [(3, elf::R_386_TLS_GD)].into_iter(), 0, 13);
        assert!(masked[..12].iter().all(Option::is_none));
        assert_eq!(masked[12], Some(0xc3));
        // A plain GOTOFF field: only its 4 bytes.
        let code = [0x8d, 0x83, 0, 0, 0, 0];
        let masked = masked_code(&code, [(2, elf::R_386_GOTOFF)].into_iter(), 0, 6);
        assert_eq!(masked[..2], [Some(0x8d), Some(0x83)]);
        assert!(reloc_class(elf::R_386_TLS_GD).is_none());
    }
}
