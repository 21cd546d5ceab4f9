//! Links the patch module (an ELF relocatable object) at the address where it will live in the
//! target: lays its sections out in three regions (code, read-only, writable), resolves every
//! symbol and applies every relocation, all in our own memory before the target is touched.
//!
//! The mapping is laid out as `[text | read-only (incl. GOT) | writable]`, each region page
//! aligned so it gets its own protection: code r-x, read-only r--, data rw-; never rwx.

use std::collections::BTreeMap;

use object::read::{Object, ObjectSection, ObjectSymbol, RelocationTarget, SymbolSection};
use object::{RelocationFlags, SectionFlags, SectionKind, SymbolIndex};

use crate::reloc::{self, GotContext, Machine, RelocKind};
use crate::Error;

const PAGE: u64 = 4096;
/// Largest patch mapping accepted (the package format caps a payload at 256 MiB too).
const MAX_LEN: u64 = 256 << 20;

/// The three regions of the patch mapping, in mapping order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Region {
    /// Executable code and call stubs: mapped r-x.
    Text,
    /// Constants and the GOT: mapped r--.
    ReadOnly,
    /// Writable data and bss: mapped rw-.
    Data,
}

/// How the linker finds what the patch module does not define.
pub trait Resolve {
    /// The run-time address of an undefined symbol of the module.
    fn address(&self, name: &str) -> Result<u64, Error>;
    /// The offset from the thread pointer of a TLS symbol of the target (x86_64 variant II).
    fn tls_offset(&self, name: &str) -> Result<i64, Error>;
}

/// Where every allocated section of the module goes, and how big each region is.
#[derive(Debug, Clone)]
pub struct Layout {
    sections: BTreeMap<usize, (Region, u64)>,
    /// GOT slots by (symbol index, is TLS offset), each 8 bytes in the read-only region.
    got: BTreeMap<(usize, bool), u64>,
    /// Indirect call stubs by symbol index, each `STUB_LEN` bytes in the text region.
    stubs: BTreeMap<usize, u64>,
    /// Copies of read-only data of other objects, by symbol name: offset in the read-only
    /// region and bytes (see [`Layout::with_copies`]).
    copies: BTreeMap<String, (u64, Vec<u8>)>,
    sizes: [u64; 3],
}

/// A call stub: `jmp *0(%rip)` followed by the 8-byte absolute target.
const STUB_LEN: u64 = 14;

/// The linked image, ready to be written at its base address.
#[derive(Debug, Clone)]
pub struct Image {
    /// Address of the first byte of the mapping in the target.
    pub base: u64,
    /// The whole mapping's bytes (bss included as zeros).
    pub bytes: Vec<u8>,
    /// Run-time address of every global symbol the module defines.
    pub symbols: BTreeMap<String, u64>,
}

fn align_up(value: u64, align: u64) -> u64 {
    let align = align.max(1);
    value.div_ceil(align) * align
}

fn region_of(section: &object::Section<'_, '_>) -> Option<Region> {
    let SectionFlags::Elf { sh_flags } = section.flags() else {
        return None;
    };
    if sh_flags & u64::from(object::elf::SHF_ALLOC) == 0 {
        return None;
    }
    if sh_flags & u64::from(object::elf::SHF_EXECINSTR) != 0 {
        Some(Region::Text)
    } else if sh_flags & u64::from(object::elf::SHF_WRITE) != 0 {
        Some(Region::Data)
    } else {
        Some(Region::ReadOnly)
    }
}

fn r_type(flags: RelocationFlags) -> Result<u32, Error> {
    match flags {
        RelocationFlags::Elf { r_type } => Ok(r_type),
        other => Err(Error::BadModule(format!(
            "unexpected relocation flags {other:?}"
        ))),
    }
}

fn parse(module: &[u8]) -> Result<(object::File<'_>, Machine), Error> {
    let file = object::File::parse(module)
        .map_err(|e| Error::BadModule(format!("patch module is not a valid ELF object: {e}")))?;
    let machine = Machine::of_object(file.architecture());
    match machine {
        Some(machine) if file.kind() == object::ObjectKind::Relocatable => Ok((file, machine)),
        _ => Err(Error::BadModule(
            "patch module is not an x86_64 or i386 relocatable object".into(),
        )),
    }
}

/// The machine `module` is for.
pub fn module_machine(module: &[u8]) -> Result<Machine, Error> {
    Ok(parse(module)?.1)
}

/// The undefined symbols of `module` that its loaded sections reach PC-relatively (not
/// through the GOT or a call), by name.
pub fn pc_relative_undefined(module: &[u8]) -> Result<std::collections::BTreeSet<String>, Error> {
    let (file, machine) = parse(module)?;
    let mut names = std::collections::BTreeSet::new();
    for section in file.sections() {
        if region_of(&section).is_none() {
            continue;
        }
        for (_, relocation) in section.relocations() {
            let RelocationTarget::Symbol(index) = relocation.target() else {
                continue;
            };
            if machine.reloc_kind(r_type(relocation.flags())?)? != RelocKind::PcRelative
                || is_defined(&file, index)?
            {
                continue;
            }
            if let Ok(name) = file.symbol_by_index(index).and_then(|s| s.name()) {
                names.insert(name.to_owned());
            }
        }
    }
    Ok(names)
}

/// Whether `module` defines a symbol `name` (false for a module that does not parse).
pub fn module_defines(module: &[u8], name: &str) -> bool {
    object::File::parse(module).is_ok_and(|file| {
        file.symbols()
            .any(|s| s.name() == Ok(name) && !matches!(s.section(), SymbolSection::Undefined))
    })
}

fn is_defined(file: &object::File<'_>, index: SymbolIndex) -> Result<bool, Error> {
    let symbol = file
        .symbol_by_index(index)
        .map_err(|e| Error::BadModule(format!("relocation names a bad symbol: {e}")))?;
    Ok(!matches!(symbol.section(), SymbolSection::Undefined))
}

impl Layout {
    /// Lays out every allocated section of `module`.
    pub fn new(module: &[u8]) -> Result<Layout, Error> {
        Layout::with_copies(module, BTreeMap::new())
    }

    /// Lays out `module` with a copy of each object of `copies` (undefined symbol name to
    /// the object's bytes in the target) in its read-only region, to which the symbol then
    /// resolves: what a copy relocation does for an executable. For code compiled as a
    /// position-independent executable, which reaches other objects' data PC-relatively,
    /// while those lie more than ±2 GiB away. Only for data that never changes (the caller
    /// checks that it lies in a read-only mapping): a copy of anything else would diverge.
    pub fn with_copies(module: &[u8], copies: BTreeMap<String, Vec<u8>>) -> Result<Layout, Error> {
        let (file, machine) = parse(module)?;
        let mut sizes = [0u64; 3];
        let mut sections = BTreeMap::new();
        for section in file.sections() {
            let Some(region) = region_of(&section) else {
                continue;
            };
            let name = section.name().unwrap_or("?");
            if section.align() > PAGE {
                return Err(Error::BadModule(format!(
                    "section {name} wants {}-byte alignment",
                    section.align()
                )));
            }
            let slot = &mut sizes[region as usize];
            let offset = align_up(*slot, section.align());
            *slot = offset
                .checked_add(section.size())
                .filter(|&end| end <= MAX_LEN)
                .ok_or_else(|| {
                    Error::BadModule(format!(
                        "section {name} makes the module larger than {MAX_LEN} bytes"
                    ))
                })?;
            sections.insert(section.index().0, (region, offset));
        }
        let mut got = BTreeMap::new();
        let mut stubs = BTreeMap::new();
        for section in file.sections() {
            if !sections.contains_key(&section.index().0) {
                continue;
            }
            for (_, relocation) in section.relocations() {
                let RelocationTarget::Symbol(symbol) = relocation.target() else {
                    continue;
                };
                match machine.reloc_kind(r_type(relocation.flags())?)? {
                    RelocKind::Got => {
                        got.entry((symbol.0, false)).or_insert(0);
                    }
                    RelocKind::GotTpOff => {
                        got.entry((symbol.0, true)).or_insert(0);
                    }
                    // Calls to other libraries may be further than ±2 GiB: route them through a stub.
                    RelocKind::Plt if !is_defined(&file, symbol)? => {
                        stubs.entry(symbol.0).or_insert(0);
                    }
                    _ => {}
                }
            }
        }
        for offset in stubs.values_mut() {
            *offset = sizes[Region::Text as usize];
            sizes[Region::Text as usize] += STUB_LEN;
        }
        // Each stub and GOT slot comes from a distinct relocation, which the sections' sizes bound.
        sizes[Region::ReadOnly as usize] = align_up(sizes[Region::ReadOnly as usize], 8);
        for offset in got.values_mut() {
            *offset = sizes[Region::ReadOnly as usize];
            sizes[Region::ReadOnly as usize] += 8;
        }
        let mut placed_copies = BTreeMap::new();
        for (name, bytes) in copies {
            let offset = align_up(sizes[Region::ReadOnly as usize], 16);
            sizes[Region::ReadOnly as usize] = offset
                .checked_add(bytes.len() as u64)
                .filter(|&end| end <= MAX_LEN)
                .ok_or_else(|| Error::BadModule(format!("the copy of {name} is too large")))?;
            placed_copies.insert(name, (offset, bytes));
        }
        Ok(Layout {
            sections,
            got,
            stubs,
            copies: placed_copies,
            sizes,
        })
    }

    /// Offset of a region from the start of the mapping.
    fn region_start(&self, region: Region) -> u64 {
        let mut start = 0;
        for r in [Region::Text, Region::ReadOnly, Region::Data] {
            if r == region {
                return start;
            }
            start += align_up(self.sizes[r as usize], PAGE);
        }
        unreachable!("every region is in the list")
    }

    /// Length of the whole mapping, a multiple of the page size (at least one page).
    #[allow(clippy::len_without_is_empty)] // never empty: at least one page
    pub fn len(&self) -> u64 {
        (self.region_start(Region::Data) + align_up(self.sizes[Region::Data as usize], PAGE))
            .max(PAGE)
    }

    /// Offset of a section of the module from the start of the mapping.
    pub fn section_offset(&self, index: usize) -> Option<u64> {
        self.sections
            .get(&index)
            .map(|&(region, offset)| self.region_start(region) + offset)
    }

    /// The functions of `module` that are alone in a loaded section, at its start (they can
    /// be linked elsewhere alone): symbol name to section index and size.
    pub fn lone_functions(&self, module: &[u8]) -> Result<BTreeMap<String, (usize, u64)>, Error> {
        let (file, _) = parse(module)?;
        let mut lone = BTreeMap::new();
        for symbol in file.symbols() {
            let (SymbolSection::Section(index), Ok(name)) = (symbol.section(), symbol.name())
            else {
                continue;
            };
            if symbol.kind() != object::SymbolKind::Text || !self.sections.contains_key(&index.0) {
                continue;
            }
            let alone = symbol.address() == 0
                && file
                    .section_by_index(index)
                    .is_ok_and(|s| s.size() == symbol.size());
            if alone {
                lone.insert(name.to_owned(), (index.0, symbol.size()));
            }
        }
        Ok(lone)
    }

    /// Links the module to live at `base`, resolving undefined symbols through `resolve`.
    pub fn link(&self, module: &[u8], base: u64, resolve: &dyn Resolve) -> Result<Image, Error> {
        self.link_placed(module, base, resolve, &BTreeMap::new())
    }

    /// Links the module like [`Layout::link`], except that the sections in `placed` (section
    /// index to address) are linked to run at those addresses instead of inside the mapping:
    /// their bytes in the image are for there (code written in place of the old, which
    /// reaches the rest of the module from there). Their symbols resolve to those addresses.
    pub fn link_placed(
        &self,
        module: &[u8],
        base: u64,
        resolve: &dyn Resolve,
        placed: &BTreeMap<usize, u64>,
    ) -> Result<Image, Error> {
        let (file, machine) = parse(module)?;
        let mut linking = Linking {
            layout: self,
            file,
            machine,
            got: None,
            base,
            resolve,
            placed,
        };
        linking.got = linking.got_address()?;
        let mut bytes = vec![0u8; self.len() as usize];
        linking.copy_sections(&mut bytes)?;
        linking.fill_got_and_stubs(&mut bytes)?;
        linking.relocate(&mut bytes)?;
        Ok(Image {
            base,
            bytes,
            symbols: linking.global_symbols()?,
        })
    }

    /// `(offset, length, region)` of each non-empty region, in order.
    pub fn regions(&self) -> Vec<(u64, u64, Region)> {
        [Region::Text, Region::ReadOnly, Region::Data]
            .into_iter()
            .filter(|&r| self.sizes[r as usize] > 0)
            .map(|r| {
                (
                    self.region_start(r),
                    align_up(self.sizes[r as usize], PAGE),
                    r,
                )
            })
            .collect()
    }
}

/// One link of the module at `base`.
struct Linking<'l, 'm> {
    layout: &'l Layout,
    file: object::File<'m>,
    machine: Machine,
    /// The GOT's address, for GOT-relative relocations: where the module's GOT symbol
    /// resolves, when the machine has one and the module names it.
    got: Option<u64>,
    base: u64,
    resolve: &'l dyn Resolve,
    placed: &'l BTreeMap<usize, u64>,
}

impl Linking<'_, '_> {
    /// Where the machine's GOT symbol resolves, if the module names it.
    fn got_address(&self) -> Result<Option<u64>, Error> {
        let Some(name) = self.machine.got_symbol() else {
            return Ok(None);
        };
        match self.file.symbols().find(|s| s.name() == Ok(name)) {
            Some(symbol) => Ok(Some(self.symbol_address(symbol.index())?)),
            None => Ok(None),
        }
    }

    /// Where section `index` runs: placed elsewhere, or in the mapping.
    fn section_address(&self, index: usize) -> Option<u64> {
        self.placed
            .get(&index)
            .copied()
            .or_else(|| Some(self.base.wrapping_add(self.layout.section_offset(index)?)))
    }

    fn symbol_address(&self, index: SymbolIndex) -> Result<u64, Error> {
        let symbol = self
            .file
            .symbol_by_index(index)
            .map_err(|e| Error::BadModule(format!("relocation names a bad symbol: {e}")))?;
        match symbol.section() {
            SymbolSection::Section(section) => {
                let address = self.section_address(section.0).ok_or_else(|| {
                    Error::BadModule(format!(
                        "symbol {} lives in a section that is not loaded",
                        symbol.name().unwrap_or("?")
                    ))
                })?;
                Ok(address.wrapping_add(symbol.address()))
            }
            SymbolSection::Undefined => {
                let name = symbol.name().unwrap_or("");
                match self.layout.copies.get(name) {
                    Some((offset, _)) => Ok(self
                        .base
                        .wrapping_add(self.layout.region_start(Region::ReadOnly))
                        .wrapping_add(*offset)),
                    None => self.resolve.address(name),
                }
            }
            SymbolSection::Absolute => Ok(symbol.address()),
            other => Err(Error::BadModule(format!(
                "symbol {} has unsupported section {other:?}",
                symbol.name().unwrap_or("?")
            ))),
        }
    }

    fn symbol_name(&self, index: SymbolIndex) -> String {
        self.file
            .symbol_by_index(index)
            .ok()
            .and_then(|s| s.name().ok().map(str::to_owned))
            .unwrap_or_else(|| format!("#{}", index.0))
    }

    /// The bytes of every loaded section with contents, and of the data copies.
    fn copy_sections(&self, bytes: &mut [u8]) -> Result<(), Error> {
        for section in self.file.sections() {
            let Some(offset) = self.layout.section_offset(section.index().0) else {
                continue;
            };
            if section.kind() == SectionKind::UninitializedData
                || section.kind() == SectionKind::UninitializedTls
            {
                continue;
            }
            let data = section.data().map_err(|e| {
                Error::BadModule(format!("section {}: {e}", section.name().unwrap_or("?")))
            })?;
            bytes[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        }
        let read_only = self.layout.region_start(Region::ReadOnly);
        for (offset, copy) in self.layout.copies.values() {
            let at = (read_only + offset) as usize;
            bytes[at..at + copy.len()].copy_from_slice(copy);
        }
        Ok(())
    }

    /// Each GOT slot's address or thread-pointer offset, each call stub's target.
    fn fill_got_and_stubs(&self, bytes: &mut [u8]) -> Result<(), Error> {
        let ro = self.layout.region_start(Region::ReadOnly);
        for (&(symbol, tls), &offset) in &self.layout.got {
            let value = if tls {
                self.resolve
                    .tls_offset(&self.symbol_name(SymbolIndex(symbol)))? as u64
            } else {
                self.symbol_address(SymbolIndex(symbol))?
            };
            let at = (ro + offset) as usize;
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        let text = self.layout.region_start(Region::Text);
        for (&symbol, &offset) in &self.layout.stubs {
            let at = (text + offset) as usize;
            let target = self.symbol_address(SymbolIndex(symbol))?;
            bytes[at..at + 14].copy_from_slice(&reloc::indirect_jump_stub(target));
        }
        Ok(())
    }

    /// Applies every relocation of every loaded section.
    fn relocate(&self, bytes: &mut [u8]) -> Result<(), Error> {
        let (ro, text) = (
            self.layout.region_start(Region::ReadOnly),
            self.layout.region_start(Region::Text),
        );
        let base = self.base;
        for section in self.file.sections() {
            let Some(section_offset) = self.layout.section_offset(section.index().0) else {
                continue;
            };
            for (offset, relocation) in section.relocations() {
                let RelocationTarget::Symbol(symbol) = relocation.target() else {
                    return Err(Error::BadModule(format!(
                        "relocation at {}+{offset:#x} has no symbol",
                        section.name().unwrap_or("?")
                    )));
                };
                let r_type = r_type(relocation.flags())?;
                let kind = self.machine.reloc_kind(r_type)?;
                let place = self
                    .section_address(section.index().0)
                    .unwrap_or_default()
                    .wrapping_add(offset);
                let target = match kind {
                    RelocKind::Got => base + ro + self.layout.got[&(symbol.0, false)],
                    RelocKind::GotTpOff => base + ro + self.layout.got[&(symbol.0, true)],
                    RelocKind::TpOff => self.resolve.tls_offset(&self.symbol_name(symbol))? as u64,
                    RelocKind::Plt => match self.layout.stubs.get(&symbol.0) {
                        Some(stub) => base + text + stub,
                        None => self.symbol_address(symbol)?,
                    },
                    RelocKind::Absolute | RelocKind::PcRelative | RelocKind::GotOffset => {
                        self.symbol_address(symbol)?
                    }
                };
                let at = usize::try_from(section_offset.saturating_add(offset)).ok();
                let got = GotContext {
                    got: self.got,
                    // The byte before the field, when it is in the same section.
                    modrm: (offset > 0)
                        .then(|| at.and_then(|at| bytes.get(at.checked_sub(1)?)).copied())
                        .flatten(),
                };
                let field = at.and_then(|at| bytes.get_mut(at..)).unwrap_or_default();
                let error = |reason| Error::Relocation {
                    section: section.name().unwrap_or("?").to_owned(),
                    offset,
                    symbol: self.symbol_name(symbol),
                    reason,
                };
                // A REL relocation's addend is in the field, as the module holds it.
                let addend = match relocation.has_implicit_addend() {
                    true => self.machine.implicit_addend(r_type, field).map_err(error)?,
                    false => relocation.addend(),
                };
                self.machine
                    .apply(r_type, field, place, target, addend, got)
                    .map_err(error)?;
            }
        }
        Ok(())
    }

    /// The run-time address of every global symbol the module defines.
    fn global_symbols(&self) -> Result<BTreeMap<String, u64>, Error> {
        let mut symbols = BTreeMap::new();
        for symbol in self.file.symbols() {
            if !symbol.is_global() {
                continue;
            }
            if let SymbolSection::Section(_) = symbol.section() {
                if let Ok(name) = symbol.name() {
                    symbols.insert(name.to_owned(), self.symbol_address(symbol.index())?);
                }
            }
        }
        Ok(symbols)
    }
}
