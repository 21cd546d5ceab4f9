//! x86_64: relocation types, which bytes the linker may write around each, and how DWARF
//! addresses are relocated. Objects carry their addends in RELA entries.

use object::elf;

use super::RelocClass;

/// Instructions are decoded in 64-bit mode.
pub const BITNESS: u32 = 64;

/// Position-independent code reaches data `rip`-relatively.
pub const DATA_THROUGH_GOT: bool = false;

/// The width of the field a DWARF section's relocation of type `r_type` fills with an address,
/// or `None` for a type the builder's DWARF reader does not need.
pub fn dwarf_field_width(r_type: u32) -> Option<usize> {
    match r_type {
        elf::R_X86_64_64 => Some(8),
        elf::R_X86_64_32 | elf::R_X86_64_32S => Some(4),
        _ => None,
    }
}

/// Class of a supported relocation type, or `None` when the applier cannot handle it.
pub fn reloc_class(r_type: u32) -> Option<RelocClass> {
    match r_type {
        elf::R_X86_64_64 | elf::R_X86_64_32 | elf::R_X86_64_32S | elf::R_X86_64_TPOFF32 => {
            Some(RelocClass::Absolute)
        }
        elf::R_X86_64_PC32
        | elf::R_X86_64_PLT32
        | elf::R_X86_64_GOTPCREL
        | elf::R_X86_64_GOTPCRELX
        | elf::R_X86_64_REX_GOTPCRELX
        | elf::R_X86_64_GOTTPOFF => Some(RelocClass::PcRelative),
        _ => None,
    }
}

/// A readable name for a relocation type.
pub fn reloc_name(r_type: u32) -> String {
    let name = match r_type {
        elf::R_X86_64_64 => "R_X86_64_64",
        elf::R_X86_64_PC32 => "R_X86_64_PC32",
        elf::R_X86_64_GOT32 => "R_X86_64_GOT32",
        elf::R_X86_64_PLT32 => "R_X86_64_PLT32",
        elf::R_X86_64_GOTPCREL => "R_X86_64_GOTPCREL",
        elf::R_X86_64_32 => "R_X86_64_32",
        elf::R_X86_64_32S => "R_X86_64_32S",
        elf::R_X86_64_16 => "R_X86_64_16",
        elf::R_X86_64_PC16 => "R_X86_64_PC16",
        elf::R_X86_64_8 => "R_X86_64_8",
        elf::R_X86_64_PC8 => "R_X86_64_PC8",
        elf::R_X86_64_DTPMOD64 => "R_X86_64_DTPMOD64",
        elf::R_X86_64_DTPOFF64 => "R_X86_64_DTPOFF64",
        elf::R_X86_64_TPOFF64 => "R_X86_64_TPOFF64",
        elf::R_X86_64_TLSGD => "R_X86_64_TLSGD",
        elf::R_X86_64_TLSLD => "R_X86_64_TLSLD",
        elf::R_X86_64_DTPOFF32 => "R_X86_64_DTPOFF32",
        elf::R_X86_64_GOTTPOFF => "R_X86_64_GOTTPOFF",
        elf::R_X86_64_TPOFF32 => "R_X86_64_TPOFF32",
        elf::R_X86_64_PC64 => "R_X86_64_PC64",
        elf::R_X86_64_GOTOFF64 => "R_X86_64_GOTOFF64",
        elf::R_X86_64_GOTPC32 => "R_X86_64_GOTPC32",
        elf::R_X86_64_GOTPCRELX => "R_X86_64_GOTPCRELX",
        elf::R_X86_64_REX_GOTPCRELX => "R_X86_64_REX_GOTPCRELX",
        _ => return format!("#{r_type}"),
    };
    name.to_string()
}

/// A function's bytes from a section's `data` (`size` bytes at `start`), as `Option<u8>` with
/// `None` where the linker may write: the fields of the section's `relocations` (offset,
/// type), and the opcode bytes it may rewrite when relaxing GOT and TLS accesses.
pub fn masked_code(
    data: &[u8],
    relocations: impl Iterator<Item = (u64, u32)>,
    start: u64,
    size: u64,
) -> Vec<Option<u8>> {
    // (bytes before the field, field width, bytes after the field) the linker may rewrite;
    // TLS general/local-dynamic sequences are rewritten up to the following call.
    super::mask_fields(data, relocations, start, size, |r_type| match r_type {
        elf::R_X86_64_64 => (0, 8, 0),
        elf::R_X86_64_GOTPCREL
        | elf::R_X86_64_GOTPCRELX
        | elf::R_X86_64_REX_GOTPCRELX
        | elf::R_X86_64_GOTTPOFF => (4, 4, 0),
        elf::R_X86_64_TLSGD | elf::R_X86_64_TLSLD => (4, 4, 8),
        _ => (0, 4, 0),
    })
}
