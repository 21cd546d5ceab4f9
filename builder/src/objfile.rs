//! A relocatable object (`.o`) read into plain owned tables, with synthetic addresses so that
//! DWARF addresses can be mapped back to sections.

use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{ElfFile, FileHeader, Rel as _, Rela as _, SectionHeader, Sym as _};
use object::{Endianness, Object, ObjectSection};

use crate::arch::Arch;
use crate::error::Error;

/// What a symbol is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymKind {
    /// STT_FUNC.
    Func,
    /// STT_OBJECT.
    Object,
    /// STT_TLS.
    Tls,
    /// STT_SECTION.
    Section,
    /// STT_FILE.
    File,
    /// Anything else (STT_NOTYPE labels such as `.LC0`, undefined references).
    Other,
}

/// One symbol table entry.
#[derive(Debug, Clone)]
pub struct Sym {
    pub name: String,
    pub kind: SymKind,
    pub local: bool,
    /// Defining section index; `None` when undefined (or absolute/common).
    pub section: Option<usize>,
    pub value: u64,
    pub size: u64,
}

/// One relocation, its addend explicit (from a RELA entry, or read out of the field of a REL
/// entry, whose bytes then read as zero as with RELA).
#[derive(Debug, Clone)]
pub struct Rel {
    pub offset: u64,
    pub r_type: u32,
    pub sym: usize,
    pub addend: i64,
}

/// One section.
#[derive(Debug, Clone)]
pub struct Sec {
    pub name: String,
    pub sh_type: u32,
    pub flags: u64,
    pub entsize: u64,
    pub align: u64,
    pub size: u64,
    /// Empty for SHT_NOBITS.
    pub data: Vec<u8>,
    pub relocs: Vec<Rel>,
    /// Synthetic address (alloc sections only) used to relocate DWARF.
    pub addr: u64,
    /// Member of a COMDAT group.
    pub comdat: bool,
    /// Named function/data symbols defined here, by value.
    pub named: Vec<usize>,
    /// Instruction boundaries `(start, end)` of executable sections with relocations, for
    /// their biases (empty without relocations: nothing asks).
    pub instructions: Vec<(u64, u64)>,
}

impl Sec {
    pub fn alloc(&self) -> bool {
        self.flags & u64::from(elf::SHF_ALLOC) != 0
    }
    pub fn exec(&self) -> bool {
        self.flags & u64::from(elf::SHF_EXECINSTR) != 0
    }
    pub fn write(&self) -> bool {
        self.flags & u64::from(elf::SHF_WRITE) != 0
    }
    pub fn tls(&self) -> bool {
        self.flags & u64::from(elf::SHF_TLS) != 0
    }
    pub fn nobits(&self) -> bool {
        self.sh_type == elf::SHT_NOBITS
    }
    pub fn strings(&self) -> bool {
        self.flags & u64::from(elf::SHF_STRINGS) != 0
    }
    pub fn merge(&self) -> bool {
        self.flags & u64::from(elf::SHF_MERGE) != 0
    }
}

/// A parsed relocatable object.
#[derive(Debug, Clone)]
pub struct Obj {
    pub path: PathBuf,
    /// The architecture the object is for.
    pub arch: Arch,
    /// Name of the first STT_FILE symbol (the source file name the compiler recorded).
    pub file_name: String,
    pub sections: Vec<Sec>,
    pub symbols: Vec<Sym>,
    /// Raw DWARF sections by name (relocated against synthetic addresses).
    pub debug: std::collections::BTreeMap<String, Vec<u8>>,
    /// `(synthetic address, section index)` of allocatable sections, sorted by address.
    by_addr: Vec<(u64, usize)>,
}

/// A DWARF section to relocate: its index, its bytes and the relocations that apply to it.
type DwarfSection = (usize, Vec<u8>, Vec<Rel>);

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadInput {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The largest section alignment accepted (gcc uses up to a page; a huge page is generous).
const MAX_ALIGN: u64 = 1 << 21;

/// The laid-out sections of one object must fit in this many bytes (a module is mapped whole).
const MAX_LAYOUT: u64 = 1 << 40;

impl Obj {
    /// Parses the bytes of an x86_64 (ELF64) or i386 (ELF32) relocatable object read from
    /// `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Obj, Error> {
        match object::FileKind::parse(bytes) {
            Ok(object::FileKind::Elf64) => {
                Obj::parse_elf::<elf::FileHeader64<Endianness>>(path, bytes)
            }
            Ok(object::FileKind::Elf32) => {
                Obj::parse_elf::<elf::FileHeader32<Endianness>>(path, bytes)
            }
            Ok(other) => Err(bad(path, format!("not an ELF object ({other:?})"))),
            Err(e) => Err(bad(path, format!("not an ELF object: {e}"))),
        }
    }

    fn parse_elf<Elf: FileHeader<Endian = Endianness>>(
        path: &Path,
        bytes: &[u8],
    ) -> Result<Obj, Error> {
        let file = ElfFile::<Elf>::parse(bytes)
            .map_err(|e| bad(path, format!("not an ELF object: {e}")))?;
        let endian = file.endian();
        let header = file.elf_header();
        if header.e_type(endian) != elf::ET_REL {
            return Err(bad(path, "not a relocatable object (.o)"));
        }
        let machine = header.e_machine(endian);
        let arch = Arch::of_elf(header.is_type_64(), machine).ok_or_else(|| {
            bad(
                path,
                format!("not an x86_64 (ELF64) or i386 (ELF32) object: e_machine {machine}"),
            )
        })?;
        let (mut sections, dwarf) = read_sections(&file, arch, path)?;
        let (mut symbols, file_name) = read_symbols(&file, &sections, path)?;
        check_relocations(&sections, symbols.len(), path)?;
        index_sections(arch, &mut sections, &mut symbols);
        let mut obj = Obj {
            path: path.to_path_buf(),
            arch,
            file_name,
            sections,
            symbols,
            debug: Default::default(),
            by_addr: Vec::new(),
        };
        obj.by_addr = obj
            .sections
            .iter()
            .enumerate()
            .filter(|(_, s)| s.alloc())
            .map(|(i, s)| (s.addr, i))
            .collect();
        obj.by_addr.sort();
        obj.relocate_debug(dwarf);
        Ok(obj)
    }

    /// Applies the relocations of the DWARF sections against the synthetic section addresses,
    /// so DWARF addresses identify sections. The relocated bytes go to `debug`; the sections
    /// keep neither bytes nor relocations (half of a `-g` object's size: not kept twice).
    fn relocate_debug(&mut self, dwarf: Vec<DwarfSection>) {
        let mut debug = std::collections::BTreeMap::new();
        // Each symbol's address, in one small table: looking it up through the symbol and its
        // section for each of a large object's ~100 000 DWARF relocations missed the caches.
        let addresses: Vec<u64> = self
            .symbols
            .iter()
            .map(|sym| {
                let base = sym
                    .section
                    .and_then(|s| self.sections.get(s))
                    .map(|s| s.addr)
                    .unwrap_or(0);
                base.wrapping_add(sym.value)
            })
            .collect();
        for (index, mut data, relocations) in dwarf {
            for r in relocations {
                let Some(&address) = addresses.get(r.sym) else {
                    continue;
                };
                let value = address.wrapping_add(r.addend as u64);
                let at = usize::try_from(r.offset).unwrap_or(usize::MAX);
                let Some(width) = self.arch.dwarf_field_width(r.r_type) else {
                    continue;
                };
                let bytes = &value.to_le_bytes()[..width];
                // A field outside the section (a damaged object) is left alone.
                let field = at
                    .checked_add(bytes.len())
                    .and_then(|end| data.get_mut(at..end));
                if let Some(field) = field {
                    field.copy_from_slice(bytes);
                }
            }
            debug.insert(self.sections[index].name.clone(), data);
        }
        self.debug = debug;
    }

    /// The named function/data symbol of section `sec` covering `offset`.
    pub fn covering_symbol(&self, sec: usize, offset: u64) -> Option<usize> {
        self.sections.get(sec)?.named.iter().copied().find(|&i| {
            let s = &self.symbols[i];
            s.value <= offset && offset < s.value + s.size.max(1)
        })
    }

    /// Named function/data symbols defined in section `sec`.
    pub fn named_in(&self, sec: usize) -> Vec<usize> {
        self.sections
            .get(sec)
            .map(|s| s.named.clone())
            .unwrap_or_default()
    }

    /// Address (synthetic) to (section, offset).
    pub fn section_at(&self, addr: u64) -> Option<(usize, u64)> {
        let i = self.by_addr.partition_point(|&(start, _)| start <= addr);
        let &(start, sec) = self.by_addr.get(i.checked_sub(1)?)?;
        (addr < start + self.sections[sec].size.max(1)).then_some((sec, addr - start))
    }
}

/// Whether the builder's DWARF reader (`dwarf.rs`) looks at the DWARF section `name`: location lists, address tables for
/// lookups by address, macros and the like are neither read nor relocated.
pub fn reads_dwarf_section(name: &str) -> bool {
    matches!(
        name,
        ".debug_info"
            | ".debug_abbrev"
            | ".debug_str"
            | ".debug_str_offsets"
            | ".debug_line"
            | ".debug_line_str"
            | ".debug_addr"
            | ".debug_ranges"
            | ".debug_rnglists"
    )
}

/// Every section of `file`, laid out at synthetic addresses (allocatable ones only, in
/// order), with its bytes and sorted relocations; and the DWARF sections the facts read, with
/// their relocation tables, to be relocated once the symbols are known.
fn read_sections<Elf: FileHeader<Endian = Endianness>>(
    file: &ElfFile<'_, Elf>,
    arch: Arch,
    path: &Path,
) -> Result<(Vec<Sec>, Vec<DwarfSection>), Error> {
    let endian = file.endian();
    let mut comdat_members = std::collections::BTreeSet::new();
    for comdat in file.comdats() {
        for idx in object::ObjectComdat::sections(&comdat) {
            comdat_members.insert(idx.0);
        }
    }
    let count = file.elf_section_table().len();
    let mut sections: Vec<Sec> = (0..count)
        .map(|_| Sec {
            name: String::new(),
            sh_type: 0,
            flags: 0,
            entsize: 0,
            align: 1,
            size: 0,
            data: Vec::new(),
            relocs: Vec::new(),
            addr: 0,
            comdat: false,
            named: Vec::new(),
            instructions: Vec::new(),
        })
        .collect();
    let mut next_addr = 0x1000u64;
    let mut dwarf: Vec<DwarfSection> = Vec::new();
    for section in file.sections() {
        let idx = section.index().0;
        let sh = section.elf_section_header();
        let name = section.name().unwrap_or("").to_string();
        let sh_type = sh.sh_type(endian);
        let is_debug = name.starts_with(".debug_");
        // Relocation, symbol and string tables are parsed below, and DWARF the facts do
        // not read is not read at all: their bytes are not kept.
        let parsed = matches!(
            sh_type,
            elf::SHT_NOBITS | elf::SHT_RELA | elf::SHT_REL | elf::SHT_SYMTAB | elf::SHT_STRTAB
        ) || (is_debug && !reads_dwarf_section(&name));
        let mut data = if parsed {
            Vec::new()
        } else {
            section
                .data()
                .map_err(|e| bad(path, format!("section {name}: {e}")))?
                .to_vec()
        };
        let mut relocs = Vec::new();
        if is_debug {
            if !parsed {
                let relocations = relocations(file, idx, arch, &mut data);
                dwarf.push((idx, std::mem::take(&mut data), relocations));
            }
        } else {
            relocs = relocations(file, idx, arch, &mut data);
            relocs.sort_by_key(|r| r.offset);
        }
        let flags: u64 = sh.sh_flags(endian).into();
        let align = sh.sh_addralign(endian).into().max(1);
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return Err(bad(
                path,
                format!(
                    "section {name} has an alignment of {align:#x} (a power of two up to {MAX_ALIGN:#x} expected)"
                ),
            ));
        }
        let size: u64 = sh.sh_size(endian).into();
        let mut addr = 0;
        if flags & u64::from(elf::SHF_ALLOC) != 0 {
            addr = next_addr
                .checked_next_multiple_of(align)
                .filter(|a| a.checked_add(size).is_some_and(|end| end <= MAX_LAYOUT))
                .ok_or_else(|| {
                    bad(
                        path,
                        format!("section {name} of {size:#x} bytes does not fit"),
                    )
                })?;
            next_addr = addr + size.max(1);
        }
        sections[idx] = Sec {
            name,
            sh_type,
            flags,
            entsize: sh.sh_entsize(endian).into(),
            align,
            size,
            data,
            relocs,
            addr,
            comdat: comdat_members.contains(&idx),
            named: Vec::new(),
            instructions: Vec::new(),
        };
    }
    Ok((sections, dwarf))
}

/// Every symbol of `file`, each inside its section, and the name of the first STT_FILE
/// symbol. A section symbol takes its section's name.
fn read_symbols<Elf: FileHeader<Endian = Endianness>>(
    file: &ElfFile<'_, Elf>,
    sections: &[Sec],
    path: &Path,
) -> Result<(Vec<Sym>, String), Error> {
    let endian = file.endian();
    let table = file.elf_symbol_table();
    let mut symbols = Vec::with_capacity(table.len());
    let mut file_name = String::new();
    for sym in table.iter() {
        let name = table
            .symbol_name(endian, sym)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let kind = match sym.st_type() {
            elf::STT_FUNC => SymKind::Func,
            elf::STT_OBJECT => SymKind::Object,
            elf::STT_TLS => SymKind::Tls,
            elf::STT_SECTION => SymKind::Section,
            elf::STT_FILE => SymKind::File,
            _ => SymKind::Other,
        };
        if kind == SymKind::File && file_name.is_empty() {
            file_name = name.clone();
        }
        let shndx = sym.st_shndx(endian);
        let section = if shndx != elf::SHN_UNDEF && (shndx as u32) < elf::SHN_LORESERVE as u32 {
            Some(shndx as usize)
        } else {
            None
        };
        if section.is_some_and(|s| s >= sections.len()) {
            return Err(bad(
                path,
                format!("symbol {name} is in section {shndx}, which does not exist"),
            ));
        }
        let (value, size): (u64, u64) = (sym.st_value(endian).into(), sym.st_size(endian).into());
        if let Some(sec) = section.and_then(|s| sections.get(s)) {
            if value.checked_add(size).is_none_or(|end| end > sec.size) {
                return Err(bad(
                    path,
                    format!(
                        "symbol {name} ({size} bytes at {value:#x}) runs past the end of section {} ({} bytes)",
                        sec.name, sec.size
                    ),
                ));
            }
        }
        let mut name = name;
        if kind == SymKind::Section {
            name = section
                .and_then(|s| sections.get(s))
                .map(|s| s.name.clone())
                .unwrap_or_default();
        }
        symbols.push(Sym {
            name,
            kind,
            local: sym.st_bind() == elf::STB_LOCAL,
            section,
            value,
            size,
        });
    }
    Ok((symbols, file_name))
}

/// Every relocation names an existing symbol and lies inside its section.
fn check_relocations(sections: &[Sec], symbol_count: usize, path: &Path) -> Result<(), Error> {
    for sec in sections {
        if let Some(r) = sec.relocs.iter().find(|r| {
            r.sym >= symbol_count || r.offset.checked_add(4).is_none_or(|end| end > sec.size)
        }) {
            return Err(bad(
                path,
                format!(
                    "a relocation of section {} at {:#x} names symbol {} or lies outside the section",
                    sec.name, r.offset, r.sym
                ),
            ));
        }
    }
    Ok(())
}

/// Each section's named symbols, by address, and the instruction bounds of code sections
/// with relocations. A function without a size (assembly without `.size`, such as gcc's
/// `__x86.get_pc_thunk.*`) runs up to the next symbol or the end of its section.
fn index_sections(arch: Arch, sections: &mut [Sec], symbols: &mut [Sym]) {
    for (i, s) in symbols.iter().enumerate() {
        if matches!(s.kind, SymKind::Func | SymKind::Object | SymKind::Tls) {
            if let Some(sec) = s.section.and_then(|x| sections.get_mut(x)) {
                sec.named.push(i);
            }
        }
    }
    for sec in sections {
        sec.named.sort_by_key(|&i| (symbols[i].value, i));
        if sec.exec() {
            for (k, &i) in sec.named.iter().enumerate() {
                if symbols[i].kind != SymKind::Func || symbols[i].size != 0 {
                    continue;
                }
                let value = symbols[i].value;
                let end = sec.named[k + 1..]
                    .iter()
                    .map(|&j| symbols[j].value)
                    .find(|&v| v > value)
                    .unwrap_or(sec.size);
                symbols[i].size = end.saturating_sub(value);
            }
        }
        // Bounds are only used to bias the section's own relocations.
        if sec.exec() && !sec.relocs.is_empty() {
            sec.instructions = arch.instruction_bounds(&sec.data);
        }
    }
}

/// The relocations of section `index` (from every relocation section that applies to it, a
/// chain when there are several). A REL entry's addend is read out of the section's `data`,
/// whose field is then zeroed: every object then reads as RELA would give it. Tables that do
/// not parse count as empty, as with the generic reader; entries whose field lies outside
/// `data` keep a zero addend (and are refused later, see [`check_relocations`]).
fn relocations<Elf: FileHeader<Endian = Endianness>>(
    file: &ElfFile<'_, Elf>,
    index: usize,
    arch: Arch,
    data: &mut [u8],
) -> Vec<Rel> {
    let endian = file.endian();
    let table = file.elf_section_table();
    let mut out = Vec::new();
    let mut at = object::SectionIndex(index);
    while let Some(rel) = file.elf_relocation_sections().get(at) {
        at = rel;
        let Ok(header) = table.section(rel) else {
            continue;
        };
        if let Ok(Some((entries, _))) = header.rela(endian, file.data()) {
            out.extend(entries.iter().map(|r| Rel {
                offset: r.r_offset(endian).into(),
                r_type: r.r_type(endian, false),
                sym: r.r_sym(endian, false) as usize,
                addend: r.r_addend(endian).into(),
            }));
        } else if let Ok(Some((entries, _))) = header.rel(endian, file.data()) {
            out.extend(entries.iter().map(|r| {
                let offset: u64 = r.r_offset(endian).into();
                let r_type = r.r_type(endian);
                let width = arch.implicit_addend_width(r_type).unwrap_or(0);
                Rel {
                    offset,
                    r_type,
                    sym: r.r_sym(endian) as usize,
                    addend: take_implicit_addend(data, offset, width),
                }
            }));
        }
    }
    out
}

/// The little-endian signed value of the `width` bytes at `offset` in `data`, which are then
/// zeroed; 0 when they lie outside.
fn take_implicit_addend(data: &mut [u8], offset: u64, width: usize) -> i64 {
    let Some(field) = usize::try_from(offset)
        .ok()
        .and_then(|at| data.get_mut(at..at.checked_add(width)?))
    else {
        return 0;
    };
    let value = match *field {
        [a] => i64::from(a as i8),
        [a, b] => i64::from(i16::from_le_bytes([a, b])),
        [a, b, c, d] => i64::from(i32::from_le_bytes([a, b, c, d])),
        _ => 0,
    };
    field.fill(0);
    value
}

impl Obj {
    /// An object with nothing in it, standing for the old side of a new file.
    pub fn empty(like: &Obj) -> Obj {
        Obj {
            path: PathBuf::from("/dev/null"),
            file_name: like.file_name.clone(),
            arch: like.arch,
            sections: Vec::new(),
            symbols: Vec::new(),
            debug: Default::default(),
            by_addr: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implicit_addends_are_read_signed_and_zeroed() {
        let mut data = [0x90, 0xfc, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(take_implicit_addend(&mut data, 1, 4), -4);
        assert_eq!(data, [0x90, 0, 0, 0, 0, 0x02]);
        assert_eq!(take_implicit_addend(&mut data, 5, 1), 2);
        // Outside the data, or with an offset that does not fit: no addend, nothing written.
        assert_eq!(take_implicit_addend(&mut data, 4, 4), 0);
        assert_eq!(take_implicit_addend(&mut data, u64::MAX, 4), 0);
        assert_eq!(take_implicit_addend(&mut data, 0, 0), 0);
    }
}
