//! Architecture-specific knowledge: one module per architecture (`x86_64`, `i386`) for its
//! relocation types, the x86 instruction decoding both share (`decode`), and [`Arch`], which
//! an object or target file names and which picks between them.

pub mod decode;
pub mod i386;
pub mod x86_64;

pub use decode::{mask_like, prepare_decoder, Line, Reference, JUMP_SIZE};

/// How the applier treats a relocation type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocClass {
    /// Absolute (`S + A`) or relative to something other than the field (the GOT): the
    /// addend is the offset into the target.
    Absolute,
    /// PC-relative (`S + A - P`) or GOT-relative: the addend is biased by the distance from the
    /// relocated field to the end of the instruction.
    PcRelative,
}

/// The architecture of an ELF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// ELF64, `EM_X86_64`.
    X86_64,
    /// ELF32, `EM_386`.
    I386,
}

impl Arch {
    /// The architecture of an ELF file of class `elf64` and machine `e_machine`, when lpkg
    /// knows it.
    pub fn of_elf(elf64: bool, e_machine: u16) -> Option<Arch> {
        match (elf64, e_machine) {
            (true, object::elf::EM_X86_64) => Some(Arch::X86_64),
            (false, object::elf::EM_386) => Some(Arch::I386),
            _ => None,
        }
    }

    /// The architecture of a file the `object` crate read, when lpkg knows it.
    pub fn of_object(architecture: object::Architecture) -> Option<Arch> {
        match architecture {
            object::Architecture::X86_64 => Some(Arch::X86_64),
            object::Architecture::I386 => Some(Arch::I386),
            _ => None,
        }
    }

    /// The name the manifest records (`target.machine`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::I386 => "i386",
        }
    }

    /// The `object` crate's name for it, to write the module with.
    pub fn object_architecture(self) -> object::Architecture {
        match self {
            Arch::X86_64 => object::Architecture::X86_64,
            Arch::I386 => object::Architecture::I386,
        }
    }

    /// Size of an address in data.
    pub fn pointer_size(self) -> usize {
        match self {
            Arch::X86_64 => 8,
            Arch::I386 => 4,
        }
    }

    /// Whether position-independent code reaches data relative to the GOT's address, held in
    /// a register (`sym - GOT` displacements), rather than relative to the instruction.
    pub fn data_through_got(self) -> bool {
        match self {
            Arch::X86_64 => x86_64::DATA_THROUGH_GOT,
            Arch::I386 => i386::DATA_THROUGH_GOT,
        }
    }

    /// Whether function `name` is a helper the compiler emits, always the same code, in
    /// every object that uses it (a COMDAT group the linker keeps one copy of).
    pub fn is_shared_helper(self, name: &str) -> bool {
        match self {
            Arch::X86_64 => false,
            Arch::I386 => i386::is_shared_helper(name),
        }
    }

    fn bitness(self) -> u32 {
        match self {
            Arch::X86_64 => x86_64::BITNESS,
            Arch::I386 => i386::BITNESS,
        }
    }

    /// Whether relocations keep their addends in the relocated fields (REL), and how many
    /// bytes hold the addend of type `r_type`; `None` for RELA.
    pub fn implicit_addend_width(self, r_type: u32) -> Option<usize> {
        match self {
            Arch::X86_64 => None,
            Arch::I386 => Some(i386::implicit_addend_width(r_type)),
        }
    }

    /// Class of a supported relocation type, or `None` when the applier cannot handle it.
    pub fn reloc_class(self, r_type: u32) -> Option<RelocClass> {
        match self {
            Arch::X86_64 => x86_64::reloc_class(r_type),
            Arch::I386 => i386::reloc_class(r_type),
        }
    }

    /// A readable name for a relocation type.
    pub fn reloc_name(self, r_type: u32) -> String {
        match self {
            Arch::X86_64 => x86_64::reloc_name(r_type),
            Arch::I386 => i386::reloc_name(r_type),
        }
    }

    /// The width of the address a DWARF relocation of type `r_type` writes, if the builder
    /// needs it.
    pub fn dwarf_field_width(self, r_type: u32) -> Option<usize> {
        match self {
            Arch::X86_64 => x86_64::dwarf_field_width(r_type),
            Arch::I386 => i386::dwarf_field_width(r_type),
        }
    }

    /// A function's bytes with `None` where the linker may write (see
    /// [`x86_64::masked_code`]).
    pub fn masked_code(
        self,
        data: &[u8],
        relocations: impl Iterator<Item = (u64, u32)>,
        start: u64,
        size: u64,
    ) -> Vec<Option<u8>> {
        match self {
            Arch::X86_64 => x86_64::masked_code(data, relocations, start, size),
            Arch::I386 => i386::masked_code(data, relocations, start, size),
        }
    }

    /// See [`decode::same_instructions`].
    pub fn same_instructions(self, old: &[u8], expected: &[Option<u8>], actual: &[u8]) -> bool {
        decode::same_instructions(self.bitness(), old, expected, actual)
    }

    /// See [`decode::instruction_bounds`].
    pub fn instruction_bounds(self, code: &[u8]) -> Vec<(u64, u64)> {
        decode::instruction_bounds(self.bitness(), code)
    }

    /// See [`decode::entry_problem`].
    pub fn entry_problem(self, code: &[u8], start: u64, room: u64) -> Option<String> {
        decode::entry_problem(self.bitness(), code, start, room)
    }

    /// See [`decode::references`].
    pub fn references(
        self,
        code: &[u8],
        address: u64,
        to: u64,
        absolute: bool,
        got: Option<u64>,
    ) -> Vec<Reference> {
        decode::references(self.bitness(), code, address, to, absolute, got)
    }

    /// See [`decode::immediate_only_differences`].
    pub fn immediate_only_differences(self, old: &[u8], new: &[u8]) -> Option<Vec<(u64, u64)>> {
        decode::immediate_only_differences(self.bitness(), old, new)
    }

    /// See [`decode::is_filler`].
    pub fn is_filler(self, bytes: &[u8]) -> bool {
        decode::is_filler(self.bitness(), bytes)
    }

    /// See [`decode::disassemble`].
    pub fn disassemble(self, code: &[u8], address: u64) -> Vec<Line> {
        decode::disassemble(self.bitness(), code, address)
    }
}

/// The bytes `[start, start + size)` of `data` as `Option<u8>`, `None` where the linker may
/// write around each relocation: `span(r_type)` gives (bytes before the field, field width,
/// bytes after the field).
fn mask_fields(
    data: &[u8],
    relocations: impl Iterator<Item = (u64, u32)>,
    start: u64,
    size: u64,
    span: impl Fn(u32) -> (usize, usize, usize),
) -> Vec<Option<u8>> {
    let end = (start.saturating_add(size) as usize).min(data.len());
    let mut out: Vec<Option<u8>> = data[(start as usize).min(end)..end]
        .iter()
        .map(|&b| Some(b))
        .collect();
    for (offset, r_type) in relocations {
        if offset < start || offset >= start.saturating_add(size) {
            continue;
        }
        let at = (offset - start) as usize;
        let (before, width, after) = span(r_type);
        // Clamped: a symbol's size may run past its section's bytes in a damaged object.
        let from = at.saturating_sub(before).min(out.len());
        let to = (at + width + after).clamp(from, out.len());
        for b in &mut out[from..to] {
            *b = None;
        }
    }
    out
}
