//! The production executable or shared library: identity, symbol table (with STT_FILE blocks
//! to tell same-named local symbols apart) and the bytes of its functions.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use lpkg_format::LinkedUnwinder;
use object::read::elf::{Dyn as _, ElfFile, FileHeader, ProgramHeader as _, Sym as _};
use object::{elf, Endianness, Object, ObjectSection, ObjectSymbol};
use sha2::{Digest, Sha256};

use crate::arch::{Arch, Reference};
use crate::debug_file::{self, DebugOptions};
use crate::dwarf::Layout;
use crate::error::Error;

/// One defined symbol of the target.
#[derive(Debug, Clone)]
pub struct TargetSym {
    pub value: u64,
    pub size: u64,
}

/// Which object of the target a local symbol belongs to.
#[derive(Debug, Clone)]
pub struct FileId {
    /// STT_FILE name (the source base name).
    pub name: String,
    /// DWARF compile unit path of the old object, when it has DWARF.
    pub unit_path: Option<String>,
}

/// The parsed target.
#[derive(Debug)]
pub struct TargetFile {
    pub path: PathBuf,
    /// The architecture the target is for.
    pub arch: Arch,
    pub file_name: String,
    pub build_id: String,
    pub sha256: String,
    /// Where the symbols and DWARF came from when not from the target itself.
    pub debug_file: Option<debug_file::Found>,
    /// Global (and weak) defined symbols by name.
    globals: HashMap<String, TargetSym>,
    /// Local defined symbols: (STT_FILE name, symbol name) -> every match, with the ordinal of
    /// its STT_FILE block among the blocks of that file name.
    locals: HashMap<(String, String), Vec<(usize, TargetSym)>>,
    /// Number of STT_FILE blocks per file name.
    file_blocks: HashMap<String, usize>,
    /// DWARF compile unit paths, in link order.
    unit_paths: Vec<String>,
    /// Struct and union layouts of the target's DWARF by name (every distinct one).
    pub layouts: BTreeMap<String, Vec<Layout>>,
    /// Version of undefined symbols the target imports (`printf` -> `GLIBC_2.2.5`).
    versions: HashMap<String, String>,
    /// Loaded sections with file contents: only these are kept, not the whole file (mostly
    /// DWARF and symbols, parsed above).
    sections: Vec<Loaded>,
    /// Start address of every defined symbol, sorted: where code may be entered.
    starts: Vec<u64>,
    /// `(start, size)` of every function symbol, sorted: the code whose instructions are known.
    functions: Vec<(u64, u64)>,
    /// Addresses of the symbols the target exports (`.dynsym`): other objects and `dlsym`
    /// reach them.
    exported: Vec<u64>,
    /// The ELF entry point.
    entry: u64,
    /// `ET_EXEC`: absolute addresses may be written anywhere without a dynamic relocation.
    fixed: bool,
    /// An executable without a dynamic loader (`-static`, `-static-pie`): its process maps no
    /// other object that new code could call into.
    pub statically_linked: bool,
}

/// A loaded section of the target with file contents.
#[derive(Debug)]
struct Loaded {
    address: u64,
    bytes: Vec<u8>,
    exec: bool,
}

/// Whether `file` is an executable without a dynamic loader: no `PT_INTERP`, and `ET_EXEC` or
/// marked `DF_1_PIE` (`-static-pie`; a shared library has neither).
fn statically_linked<Elf: FileHeader<Endian = Endianness>>(file: &ElfFile<Elf>) -> bool {
    let endian = file.endian();
    if (file.elf_program_headers().iter()).any(|p| p.p_type(endian) == elf::PT_INTERP) {
        return false;
    }
    if file.elf_header().e_type(endian) == elf::ET_EXEC {
        return true;
    }
    let Ok(Some((dynamic, _))) = file.elf_section_table().dynamic(endian, file.data()) else {
        return false;
    };
    dynamic.iter().any(|d| {
        d.tag32(endian) == Some(elf::DT_FLAGS_1)
            && d.d_val(endian).into() & u64::from(elf::DF_1_PIE) != 0
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl TargetFile {
    /// Reads and checks the target. With `debug`, its symbols are needed: from the debug file
    /// when one is given or the target is stripped (refused when none is found). Without, a
    /// stripped target is read for its code only (`lpkg inspect --disasm`).
    pub fn read(path: &Path, debug: Option<&DebugOptions>) -> Result<TargetFile, Error> {
        let bytes = crate::input::read(path)?;
        match object::FileKind::parse(&bytes[..]) {
            Ok(object::FileKind::Elf32) => {
                TargetFile::read_elf::<elf::FileHeader32<Endianness>>(path, &bytes, debug)
            }
            Ok(object::FileKind::Elf64) => {
                TargetFile::read_elf::<elf::FileHeader64<Endianness>>(path, &bytes, debug)
            }
            _ => Err(Error::BadInput {
                path: path.to_path_buf(),
                reason: "target: not an ELF file (the x86_64 or i386 executable or shared library to patch)".into(),
            }),
        }
    }

    fn read_elf<Elf: FileHeader<Endian = Endianness>>(
        path: &Path,
        bytes: &[u8],
        debug: Option<&DebugOptions>,
    ) -> Result<TargetFile, Error> {
        let (file, arch) = parse::<Elf>(path, bytes, "target")?;
        let build_id = match file.build_id() {
            Ok(Some(id)) => hex(id),
            _ => {
                return Err(Error::NoBuildId {
                    path: path.to_path_buf(),
                })
            }
        };
        let sections = file
            .sections()
            .filter_map(|s| {
                let (offset, size) = s.file_range()?;
                let data = bytes.get(offset as usize..offset.checked_add(size)? as usize)?;
                (s.address() != 0).then(|| Loaded {
                    address: s.address(),
                    bytes: data.to_vec(),
                    exec: s.kind() == object::SectionKind::Text,
                })
            })
            .collect();
        let mut exported: Vec<u64> = file
            .dynamic_symbols()
            .filter(|s| s.is_definition())
            .map(|s| s.address())
            .collect();
        exported.sort_unstable();
        let stripped = file.elf_symbol_table().is_empty();
        let (symbols, dwarf, debug_file) = match debug {
            Some(opts) if stripped || opts.file.is_some() => {
                let found = debug_file::find(path, &file, &build_id, opts)?;
                let debug_bytes = crate::input::read(&found.path)?;
                let (debug, _) = parse::<Elf>(&found.path, &debug_bytes, "debug file")?;
                if debug.elf_symbol_table().is_empty() {
                    return Err(Error::BadInput {
                        path: found.path.clone(),
                        reason: "debug file has no .symtab".into(),
                    });
                }
                (read_symbols(&debug), read_dwarf(&debug), Some(found))
            }
            _ => (read_symbols(&file), read_dwarf(&file), None),
        };
        let (unit_paths, layouts) = dwarf;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sha256 = hex(&Sha256::digest(bytes));
        let header = file.elf_header();
        Ok(TargetFile {
            path: path.to_path_buf(),
            arch,
            file_name,
            build_id,
            sha256,
            debug_file,
            globals: symbols.globals,
            locals: symbols.locals,
            file_blocks: symbols.file_blocks,
            unit_paths,
            layouts,
            versions: symbols.versions,
            sections,
            starts: symbols.starts,
            functions: symbols.functions,
            exported,
            entry: header.e_entry(file.endian()).into(),
            fixed: header.e_type(file.endian()) == elf::ET_EXEC,
            statically_linked: statically_linked(&file),
        })
    }

    /// A global symbol defined in the target. The linker turns hidden globals into locals, so
    /// a name found exactly once among the locals of all files counts too.
    pub fn global(&self, name: &str) -> Option<&TargetSym> {
        if let Some(s) = self.globals.get(name) {
            return Some(s);
        }
        let mut found = self
            .locals
            .iter()
            .filter(|((_, n), _)| n == name)
            .flat_map(|(_, v)| v.iter());
        match (found.next(), found.next()) {
            (Some((_, s)), None) => Some(s),
            _ => None,
        }
    }

    /// A local symbol of the object whose STT_FILE name is `file.name`. When several
    /// same-named files define it, the object's DWARF compile unit path picks the block: the
    /// k-th block of that name belongs to the k-th compile unit with that base name.
    pub fn local(&self, file: &FileId, name: &str) -> Result<Option<&TargetSym>, Error> {
        let Some(found) = self.locals.get(&(file.name.clone(), name.to_string())) else {
            return Ok(None);
        };
        if found.len() == 1 {
            return Ok(Some(&found[0].1));
        }
        let ambiguous = || Error::NotInTarget {
            symbol: name.to_string(),
            path: self.path.clone(),
            reason: format!(
                "several source files named {} define a local {name}",
                file.name
            ),
        };
        let same_base: Vec<&String> = self
            .unit_paths
            .iter()
            .filter(|p| p.rsplit('/').next() == Some(file.name.as_str()))
            .collect();
        if Some(&same_base.len()) != self.file_blocks.get(&file.name) {
            return Err(ambiguous());
        }
        let Some(k) = file
            .unit_path
            .as_ref()
            .and_then(|u| same_base.iter().position(|p| *p == u))
        else {
            return Err(ambiguous());
        };
        Ok(found.iter().find(|(b, _)| *b == k).map(|(_, s)| s))
    }

    /// A symbol defined by the object compiled from `file`: local or global.
    pub fn lookup(
        &self,
        file: &FileId,
        name: &str,
        local: bool,
    ) -> Result<Option<&TargetSym>, Error> {
        if local {
            self.local(file, name)
        } else {
            Ok(self.global(name))
        }
    }

    /// libgcc's unwinder linked into the target (`-static-libgcc`, a static executable): its
    /// frame registration functions, when the symbols define both. The applier registers the
    /// new code's CFI there; in a stripped target it could not find them.
    pub fn linked_unwinder(&self) -> Option<LinkedUnwinder> {
        let function = |name| self.global(name).filter(|s| s.size > 0).map(|s| s.value);
        Some(LinkedUnwinder {
            register_frame_info: function("__register_frame_info")?,
            deregister_frame_info: function("__deregister_frame_info")?,
        })
    }

    /// Version the target imports `name` with, if it imports it.
    pub fn import_version(&self, name: &str) -> Option<String> {
        self.versions.get(name).cloned()
    }

    /// How many bytes from `value` the new code of the function at `value` (`size` bytes) may
    /// occupy if written in place (the manifest's `old_room`): the function and the filler
    /// after it up to the next symbol or the end of its section. `None` when another symbol
    /// starts inside the function: something may enter it other than at its start.
    pub fn room(&self, value: u64, size: u64) -> Option<u64> {
        let end = value.checked_add(size)?;
        let after = self.starts.partition_point(|&s| s <= value);
        let next = self.starts.get(after).copied();
        if next.is_some_and(|next| next < end) {
            return None;
        }
        let section_end = self.sections.iter().find_map(|s| {
            let section_end = s.address.checked_add(s.bytes.len() as u64)?;
            (s.address <= value && end <= section_end).then_some(section_end)
        })?;
        let limit = next.map_or(section_end, |next| next.min(section_end));
        let padding = self.bytes_at(end, limit - end)?;
        Some(if self.arch.is_filler(padding) {
            limit - value
        } else {
            size
        })
    }

    /// The file bytes at virtual address `addr`.
    pub fn bytes_at(&self, addr: u64, size: u64) -> Option<&[u8]> {
        self.sections.iter().find_map(|s| {
            let from = addr.checked_sub(s.address)? as usize;
            s.bytes.get(from..from.checked_add(size as usize)?)
        })
    }

    /// The direct calls and jumps that reach the function at `value` (`size` bytes): the
    /// address of each one's 4-byte displacement, which the applier may point at a new
    /// function instead. `Err` names something else that may lead to it, whose target the
    /// applier could not change: a reference that is not a direct call or jump (its address
    /// taken), an absolute address in data (a function pointer, a dynamic relocation), an
    /// export, bytes of code that would reach it if executed but are not a decoded call.
    pub fn call_sites(&self, value: u64, size: u64) -> Result<Vec<u64>, String> {
        if self.exported.binary_search(&value).is_ok() {
            return Err("it is exported (.dynsym): other objects and dlsym may reach it".into());
        }
        if self.entry == value {
            return Err("it is the entry point".into());
        }
        let own = value..value.saturating_add(size);
        let got = self.got_base();
        let references = |code, start| self.arch.references(code, start, value, self.fixed, got);
        let mut sites = Vec::new();
        for &(start, len) in &self.functions {
            let Some(code) = self.bytes_at(start, len) else {
                continue;
            };
            if own.contains(&start) || len == 0 {
                continue;
            }
            for reference in references(code, start) {
                match reference {
                    Reference::Branch { field } => sites.push(field),
                    Reference::Other { at } => {
                        return Err(format!(
                            "its address is taken by the instruction at {at:#x} (not a direct call or jump)"
                        ))
                    }
                }
            }
        }
        sites.sort_unstable();
        for s in &self.sections {
            if s.exec {
                // Code outside function symbols (PLT stubs, padding) is decoded from the start
                // of each gap between them: none of it may lead to the function.
                let end = s.address.saturating_add(s.bytes.len() as u64);
                for (start, end) in self.gaps(s.address, end) {
                    let range = (start - s.address) as usize..(end - s.address) as usize;
                    let Some(code) = s.bytes.get(range) else {
                        continue;
                    };
                    if let Some(reference) = references(code, start).first() {
                        let at = match *reference {
                            Reference::Branch { field } => field,
                            Reference::Other { at } => at,
                        };
                        return Err(format!(
                            "the code at {at:#x}, outside any function symbol, leads to it"
                        ));
                    }
                }
            } else if let Some(at) = absolute_values(
                &s.bytes,
                s.address,
                value,
                self.fixed,
                self.arch.pointer_size(),
            ) {
                return Err(format!(
                    "its address is stored in data at {at:#x} (a function pointer or a dynamic relocation)"
                ));
            }
        }
        Ok(sites)
    }

    /// The GOT's address when the target's position-independent code reaches data relative
    /// to it (`sym - GOT` displacements), for [`TargetFile::call_sites`].
    fn got_base(&self) -> Option<u64> {
        if !self.arch.data_through_got() {
            return None;
        }
        self.global("_GLOBAL_OFFSET_TABLE_").map(|s| s.value)
    }

    /// The ranges of `[start, end)` that no function symbol covers.
    fn gaps(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut cursor = start;
        for &(f, size) in &self.functions {
            let f_end = f.saturating_add(size);
            if f >= end || f_end <= start {
                continue;
            }
            if f > cursor {
                gaps.push((cursor, f));
            }
            cursor = cursor.max(f_end);
        }
        if cursor < end {
            gaps.push((cursor, end));
        }
        gaps
    }
}

/// The first address in `bytes` (loaded at `address`) holding `value`: as an aligned
/// `pointer`-byte word (a pointer, a dynamic relocation's addend, a `.dynamic` entry: in
/// position-independent files an address in data always has a dynamic relocation or, packed
/// in `.relr.dyn`, sits aligned in place), or, in an `ET_EXEC` file (`fixed`), at any offset
/// (a pointer in a packed structure, an absolute 32-bit address).
fn absolute_values(
    bytes: &[u8],
    address: u64,
    value: u64,
    fixed: bool,
    pointer: usize,
) -> Option<u64> {
    let width = if fixed && value <= u64::from(u32::MAX) {
        4
    } else {
        pointer
    };
    let align = pointer as u64;
    let (skip, step) = match fixed {
        true => (0, 1),
        false => (((align - address % align) % align) as usize, pointer),
    };
    let words = bytes.get(skip..)?.windows(width).step_by(step);
    words.enumerate().find_map(|(i, word)| {
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(word);
        (u64::from_le_bytes(le) == value).then_some(address + (skip + i * step) as u64)
    })
}

/// An x86_64 (ELF64) or i386 (ELF32) file: the target or its debug file (`what`).
fn parse<'d, Elf: FileHeader<Endian = Endianness>>(
    path: &Path,
    bytes: &'d [u8],
    what: &str,
) -> Result<(ElfFile<'d, Elf>, Arch), Error> {
    let bad = |reason: String| Error::BadInput {
        path: path.to_path_buf(),
        reason,
    };
    let class = if Elf::is_type_64_sized() {
        "ELF64"
    } else {
        "ELF32"
    };
    let file = ElfFile::<Elf>::parse(bytes)
        .map_err(|e| bad(format!("{what}: not an {class} file: {e}")))?;
    let machine = file.elf_header().e_machine(file.endian());
    let arch = Arch::of_elf(Elf::is_type_64_sized(), machine).ok_or_else(|| {
        bad(format!(
            "{what} is neither x86_64 (ELF64) nor i386 (ELF32): e_machine {machine}"
        ))
    })?;
    Ok((file, arch))
}

/// The target's symbol table, indexed as [`TargetFile`] keeps it.
struct SymbolTables {
    globals: HashMap<String, TargetSym>,
    locals: HashMap<(String, String), Vec<(usize, TargetSym)>>,
    file_blocks: HashMap<String, usize>,
    versions: HashMap<String, String>,
    starts: Vec<u64>,
    functions: Vec<(u64, u64)>,
}

fn read_symbols<Elf: FileHeader<Endian = Endianness>>(file: &ElfFile<'_, Elf>) -> SymbolTables {
    let endian = file.endian();
    let table = file.elf_symbol_table();
    // Hashed: only ever looked up, never walked in order.
    let mut globals = HashMap::with_capacity(table.len());
    let mut locals: HashMap<(String, String), Vec<(usize, TargetSym)>> = HashMap::new();
    let mut file_blocks: HashMap<String, usize> = HashMap::new();
    let mut block = 0;
    let mut versions = HashMap::new();
    let mut current_file = String::new();
    let mut starts = Vec::new();
    let mut functions = Vec::new();
    for sym in table.iter() {
        let name = table
            .symbol_name(endian, sym)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let kind = sym.st_type();
        if kind == elf::STT_FILE {
            let n = file_blocks.entry(name.clone()).or_default();
            block = *n;
            *n += 1;
            current_file = name;
            continue;
        }
        let shndx = sym.st_shndx(endian);
        if shndx == elf::SHN_UNDEF {
            if let Some((base, version)) = name.split_once('@') {
                versions.insert(
                    base.to_string(),
                    version.trim_start_matches('@').to_string(),
                );
            }
            continue;
        }
        if name.is_empty() || kind == elf::STT_SECTION {
            continue;
        }
        let entry = TargetSym {
            value: sym.st_value(endian).into(),
            size: sym.st_size(endian).into(),
        };
        starts.push(entry.value);
        if kind == elf::STT_FUNC {
            functions.push((entry.value, entry.size));
        }
        if sym.st_bind() == elf::STB_LOCAL {
            locals
                .entry((current_file.clone(), name))
                .or_default()
                .push((block, entry));
        } else {
            // Copy-relocated library data (`stdout@GLIBC_2.2.5` in a PIE) is defined in the
            // target under its versioned name; the objects refer to it by the plain name.
            if let Some((base, _)) = name.split_once('@') {
                globals.entry(base.to_string()).or_insert(entry.clone());
            }
            globals.entry(name).or_insert(entry);
        }
    }
    starts.sort_unstable();
    starts.dedup();
    functions.sort_unstable();
    functions.dedup();
    SymbolTables {
        globals,
        locals,
        file_blocks,
        versions,
        starts,
        functions,
    }
}

/// The unit paths and struct layouts of the target's DWARF: its sections borrowed from the
/// file's bytes unless compressed.
fn read_dwarf<Elf: FileHeader<Endian = Endianness>>(
    file: &ElfFile<'_, Elf>,
) -> (Vec<String>, BTreeMap<String, Vec<Layout>>) {
    let mut debug = BTreeMap::new();
    for s in file.sections() {
        if let Ok(name) = s.name() {
            if crate::objfile::reads_dwarf_section(name) {
                if let Ok(data) = s.uncompressed_data() {
                    debug.insert(name.to_string(), data);
                }
            }
        }
    }
    (
        crate::dwarf::unit_paths(&debug),
        crate::dwarf::linked_layouts(&debug),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_data_are_found_aligned_or_anywhere_in_fixed_files() {
        let mut data = vec![0u8; 32];
        data[8..16].copy_from_slice(&0x128au64.to_le_bytes());
        assert_eq!(
            absolute_values(&data, 0x4000, 0x128a, false, 8),
            Some(0x4008)
        );
        assert_eq!(absolute_values(&data, 0x4000, 0x128b, false, 8), None);
        // Unaligned (a packed structure): only looked for in an ET_EXEC file.
        let mut packed = vec![0u8; 32];
        packed[5..9].copy_from_slice(&0x40_1136u32.to_le_bytes());
        assert_eq!(absolute_values(&packed, 0x4000, 0x40_1136, false, 8), None);
        assert_eq!(
            absolute_values(&packed, 0x4000, 0x40_1136, true, 8),
            Some(0x4005)
        );
        // A section that does not start aligned: words are aligned by address.
        assert_eq!(
            absolute_values(&data[4..], 0x4004, 0x128a, false, 8),
            Some(0x4008)
        );
        assert_eq!(absolute_values(&[], 0x4000, 0x128a, true, 8), None);
        // 32-bit pointers: 4-byte words, 4-byte aligned.
        let mut words = vec![0u8; 16];
        words[4..8].copy_from_slice(&0x128au32.to_le_bytes());
        assert_eq!(
            absolute_values(&words, 0x4000, 0x128a, false, 4),
            Some(0x4004)
        );
        assert_eq!(absolute_values(&words, 0x4002, 0x128a, false, 4), None);
    }
}
