//! A relocatable object (`.o`) read into plain owned tables, with synthetic addresses so that
//! DWARF addresses can be mapped back to sections.

use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{ElfFile64, FileHeader, Rela as _, SectionHeader, Sym as _};
use object::{Endianness, Object, ObjectSection, RelocationFlags, RelocationTarget};

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

/// One RELA relocation.
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
    /// Name of the first STT_FILE symbol (the source file name the compiler recorded).
    pub file_name: String,
    pub sections: Vec<Sec>,
    pub symbols: Vec<Sym>,
    /// Raw DWARF sections by name (relocated against synthetic addresses).
    pub debug: std::collections::BTreeMap<String, Vec<u8>>,
    /// `(synthetic address, section index)` of allocatable sections, sorted by address.
    by_addr: Vec<(u64, usize)>,
}

/// A DWARF section to relocate: its index, its bytes and the RELA tables that apply to it.
type DwarfSection<'d> = (usize, Vec<u8>, Vec<&'d [elf::Rela64<Endianness>]>);

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
    /// Parses the bytes of an ELF64 x86_64 relocatable object read from `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Obj, Error> {
        let file = ElfFile64::<Endianness>::parse(bytes)
            .map_err(|e| bad(path, format!("not an ELF64 object: {e}")))?;
        let endian = file.endian();
        let header = file.elf_header();
        if header.e_type(endian) != elf::ET_REL {
            return Err(bad(path, "not a relocatable object (.o)"));
        }
        if header.e_machine(endian) != elf::EM_X86_64 {
            return Err(bad(path, "not an x86_64 object"));
        }
        let (mut sections, dwarf) = read_sections(&file, path)?;
        let (symbols, file_name) = read_symbols(&file, &sections, path)?;
        check_relocations(&sections, symbols.len(), path)?;
        index_sections(&mut sections, &symbols);
        let mut obj = Obj {
            path: path.to_path_buf(),
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
        let endian = Endianness::Little;
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
        for (index, mut data, tables) in dwarf {
            for r in tables.into_iter().flatten() {
                let Some(&address) = addresses.get(r.r_sym(endian, false) as usize) else {
                    continue;
                };
                let value = address.wrapping_add(r.r_addend(endian) as u64);
                let at = usize::try_from(r.r_offset(endian)).unwrap_or(usize::MAX);
                let bytes = match r.r_type(endian, false) {
                    elf::R_X86_64_64 => &value.to_le_bytes()[..],
                    elf::R_X86_64_32 | elf::R_X86_64_32S => &value.to_le_bytes()[..4],
                    _ => continue,
                };
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
fn read_sections<'d>(
    file: &ElfFile64<'d, Endianness>,
    path: &Path,
) -> Result<(Vec<Sec>, Vec<DwarfSection<'d>>), Error> {
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
                // x86_64 objects use RELA only (psABI).
                let tables = rela_tables(file, idx).unwrap_or_default();
                dwarf.push((idx, std::mem::take(&mut data), tables));
            }
        } else {
            relocs = relocations(file, &section, path)?;
            relocs.sort_by_key(|r| r.offset);
        }
        let flags = sh.sh_flags(endian);
        let align = sh.sh_addralign(endian).max(1);
        if !align.is_power_of_two() || align > MAX_ALIGN {
            return Err(bad(
                path,
                format!(
                    "section {name} has an alignment of {align:#x} (a power of two up to {MAX_ALIGN:#x} expected)"
                ),
            ));
        }
        let size = sh.sh_size(endian);
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
            entsize: sh.sh_entsize(endian),
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
fn read_symbols(
    file: &ElfFile64<'_, Endianness>,
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
        let (value, size) = (sym.st_value(endian), sym.st_size(endian));
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
/// with relocations.
fn index_sections(sections: &mut [Sec], symbols: &[Sym]) {
    for (i, s) in symbols.iter().enumerate() {
        if matches!(s.kind, SymKind::Func | SymKind::Object | SymKind::Tls) {
            if let Some(sec) = s.section.and_then(|x| sections.get_mut(x)) {
                sec.named.push(i);
            }
        }
    }
    for sec in sections {
        sec.named.sort_by_key(|&i| (symbols[i].value, i));
        // Bounds are only used to bias the section's own relocations.
        if sec.exec() && !sec.relocs.is_empty() {
            sec.instructions = crate::arch::x86_64::instruction_bounds(&sec.data);
        }
    }
}

/// The RELA tables that apply to section `index` (a chain, when there are several), or `None`
/// when one of them is not RELA (the generic reader handles that).
fn rela_tables<'d>(
    file: &ElfFile64<'d, Endianness>,
    index: usize,
) -> Option<Vec<&'d [elf::Rela64<Endianness>]>> {
    let endian = file.endian();
    let table = file.elf_section_table();
    let mut out = Vec::new();
    let mut at = object::SectionIndex(index);
    while let Some(rel) = file.elf_relocation_sections().get(at) {
        let header = table.section(rel).ok()?;
        if header.sh_type(endian) != elf::SHT_RELA {
            return None;
        }
        // As the generic reader: a table that does not parse counts as empty.
        out.push(header.data_as_array(endian, file.data()).unwrap_or(&[]));
        at = rel;
    }
    Some(out)
}

/// The relocations of a section, read straight from its RELA entries (x86_64 objects have no
/// other kind; the generic iterator classifies each entry for every architecture).
fn relocations(
    file: &ElfFile64<'_, Endianness>,
    section: &object::read::elf::ElfSection64<'_, '_, Endianness>,
    path: &Path,
) -> Result<Vec<Rel>, Error> {
    let endian = file.endian();
    if let Some(tables) = rela_tables(file, section.index().0) {
        let mut relocs = Vec::with_capacity(tables.iter().map(|t| t.len()).sum());
        for r in tables.into_iter().flatten() {
            relocs.push(Rel {
                offset: r.r_offset(endian),
                r_type: r.r_type(endian, false),
                sym: r.r_sym(endian, false) as usize,
                addend: r.r_addend(endian),
            });
        }
        return Ok(relocs);
    }
    let mut relocs = Vec::new();
    for (offset, rel) in section.relocations() {
        let RelocationFlags::Elf { r_type } = rel.flags() else {
            return Err(bad(path, "non-ELF relocation"));
        };
        let sym = match rel.target() {
            RelocationTarget::Symbol(s) => s.0,
            _ => 0,
        };
        relocs.push(Rel {
            offset,
            r_type,
            sym,
            addend: rel.addend(),
        });
    }
    Ok(relocs)
}

impl Obj {
    /// An object with nothing in it, standing for the old side of a new file.
    pub fn empty(like: &Obj) -> Obj {
        Obj {
            path: PathBuf::from("/dev/null"),
            file_name: like.file_name.clone(),
            sections: Vec::new(),
            symbols: Vec::new(),
            debug: Default::default(),
            by_addr: Vec::new(),
        }
    }
}
