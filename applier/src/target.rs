//! Finding the patched object in a process, and resolving the patch module's symbols there.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader, SectionHeader, Sym};
use object::{Endianness, SymbolIndex};

use lpkg_format::{SymbolBinding, SymbolMap};
use lpkg_kernel::objects::{self, MappedObject};
use lpkg_kernel::Pid;

use crate::link::Resolve;
use crate::record::hex;
use crate::reloc::Machine;
use crate::Error;

/// The object a package patches, as mapped in the process.
#[derive(Debug, Clone)]
pub struct TargetObject {
    /// Path of the object as the process mapped it.
    pub path: PathBuf,
    /// Run-time address minus link-time address (0 for a non-PIE executable).
    pub bias: u64,
    /// Lowest mapped address: the patch is placed within ±2 GiB of it.
    pub base: u64,
    /// Its executable mappings: where every function a package replaces must lie.
    pub code: Vec<std::ops::Range<u64>>,
    /// `(p_memsz, p_align)` of the object's PT_TLS segment, if any.
    tls: Option<(u64, u64)>,
    /// Whether the object is the main executable (its TLS offsets are fixed at link time).
    is_executable: bool,
}

struct ElfFacts {
    first_load: u64,
    tls: Option<(u64, u64)>,
    is_executable: bool,
}

/// The machine `pid` runs (the kernel's reading of its program's ELF header, or of its vDSO's
/// when the program cannot be read); `Ok(None)` for a machine lpkg does not know.
pub fn process_machine(pid: Pid) -> Result<Option<Machine>, Error> {
    use lpkg_kernel::arch::Arch;
    match Arch::of_process(pid) {
        Ok(Arch::X86_64) => Ok(Some(Machine::X86_64)),
        Ok(Arch::I386) => Ok(Some(Machine::I386)),
        Err(lpkg_kernel::Error::UnsupportedArch { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn elf_facts<'d>(data: impl object::ReadRef<'d>) -> Result<ElfFacts, String> {
    match object::FileKind::parse(data) {
        Ok(object::FileKind::Elf32) => elf_facts_of::<elf::FileHeader32<Endianness>>(data),
        Ok(object::FileKind::Elf64) => elf_facts_of::<elf::FileHeader64<Endianness>>(data),
        Ok(other) => Err(format!("not an ELF file ({other:?})")),
        Err(e) => Err(e.to_string()),
    }
}

fn elf_facts_of<'d, Elf: FileHeader<Endian = Endianness>>(
    data: impl object::ReadRef<'d>,
) -> Result<ElfFacts, String> {
    let header = Elf::parse(data).map_err(|e| e.to_string())?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    let mut first_load = None;
    let mut tls = None;
    let mut has_interp = false;
    let mut pie = false;
    for segment in header
        .program_headers(endian, data)
        .map_err(|e| e.to_string())?
    {
        match segment.p_type(endian) {
            elf::PT_LOAD if first_load.is_none() => {
                first_load = Some(segment.p_vaddr(endian).into() & !0xfff)
            }
            elf::PT_TLS => {
                tls = Some((
                    segment.p_memsz(endian).into(),
                    segment.p_align(endian).into(),
                ))
            }
            elf::PT_INTERP => has_interp = true,
            // `-static-pie`: an executable without PT_INTERP, flagged so.
            elf::PT_DYNAMIC => {
                let entries = segment.dynamic(endian, data).ok().flatten();
                pie = entries.unwrap_or_default().iter().any(|d| {
                    d.tag32(endian) == Some(elf::DT_FLAGS_1)
                        && d.d_val(endian).into() & u64::from(elf::DF_1_PIE) != 0
                });
            }
            _ => {}
        }
    }
    Ok(ElfFacts {
        first_load: first_load.ok_or("no PT_LOAD segment")?,
        tls,
        is_executable: header.e_type(endian) == elf::ET_EXEC || has_interp || pie,
    })
}

/// The ELF objects mapped in `pid` (see `objects::mapped_objects_in`, and its `known`), from
/// its `maps`. lpkg's own mappings (records, modules) are memfds, new in every process, and
/// never ELF objects: never read.
pub fn mapped_objects(
    pid: Pid,
    maps: &[lpkg_kernel::maps::MapEntry],
    known: &[MappedObject],
) -> Result<Vec<MappedObject>, Error> {
    let files: Vec<_> = (maps.iter())
        .filter(|e| !crate::records::is_ours(e))
        .cloned()
        .collect();
    Ok(objects::mapped_objects_in(pid, &files, known)?)
}

/// The target object, every mapped object, and the target object's file.
type Found = (TargetObject, Vec<MappedObject>, Arc<Vec<u8>>);

/// Finds the object with the manifest's build-id among those mapped in `pid` (`maps`); also returns
/// every mapped object and the object's file.
pub fn find(
    pid: Pid,
    maps: &[lpkg_kernel::maps::MapEntry],
    target: &lpkg_format::Target,
) -> Result<Found, Error> {
    let mapped = mapped_objects(pid, maps, &[])?;
    let found = mapped
        .iter()
        .find(|o| o.build_id.as_deref().map(hex).as_deref() == Some(target.build_id.as_str()))
        .ok_or_else(|| Error::WrongTarget {
            pid,
            build_id: target.build_id.clone(),
            file_name: target.file_name.clone(),
        })?;
    let data = objects::read_file(found)?;
    let facts = elf_facts(&data[..]).map_err(|reason| Error::BadObject {
        path: found.path.display().to_string(),
        reason,
    })?;
    let object = TargetObject {
        path: found.path.clone(),
        bias: found.base.wrapping_sub(facts.first_load),
        base: found.base,
        code: found
            .ranges
            .iter()
            .filter(|r| r.exec)
            .map(|r| r.start..r.end)
            .collect(),
        tls: facts.tls,
        is_executable: facts.is_executable,
    };
    Ok((object, mapped, data))
}

/// Resolves the module's undefined symbols: the target's own through the symbol map, the
/// rest by name through the dynamic symbol tables of every object loaded in the process.
pub struct Resolver<'a> {
    pid: Pid,
    target: &'a TargetObject,
    bindings: BTreeMap<&'a str, &'a SymbolBinding>,
    mapped: &'a [MappedObject],
    /// Indices of `mapped` in the order symbols are looked up: the dynamic loader's.
    order: Vec<usize>,
    /// Dynamic symbols of each mapped object (as linked) and its bias, read on first use.
    tables: RefCell<Vec<Option<BiasedSymbols>>>,
    /// What each IFUNC resolver returned when run in the target, by resolver address.
    ifuncs: RefCell<BTreeMap<u64, u64>>,
    /// Functions of the target whose calls an applied package leads to its new code (too
    /// short for a jump): their address there, to that new code's.
    redirected: BTreeMap<u64, u64>,
}

/// One definition of a dynamic symbol.
#[derive(Debug, Clone)]
struct Definition {
    version: Option<Vec<u8>>,
    hidden: bool,
    address: u64,
    /// An `STT_GNU_IFUNC`: `address` is a resolver to run in the target, which returns the
    /// implementation for this CPU (libc's `strlen`, `memcpy`...).
    ifunc: bool,
    /// An `STT_OBJECT` of `size` bytes (0 otherwise).
    object_size: u64,
}

type DynamicSymbols = BTreeMap<Vec<u8>, Vec<Definition>>;

/// An object's dynamic symbols as linked, and its bias in one process.
type BiasedSymbols = (Arc<DynamicSymbols>, u64);

/// The dynamic symbols of the file mapped as `object` (addresses as linked, not biased), read
/// once per file.
fn cached_dynamic_symbols(object: &MappedObject) -> Result<BiasedSymbols, Error> {
    static SYMBOLS: objects::FileCache<(Arc<DynamicSymbols>, u64)> =
        objects::FileCache::new(|_| 1, 256);
    let (table, first_load) = SYMBOLS.get(objects::file_key(object)?, || {
        // Only the headers and the dynamic symbol tables are read, at most
        // `Capped::BUDGET`: a mapped file claims what sizes it likes.
        let file =
            std::fs::File::open(&object.map_file).map_err(|source| lpkg_kernel::Error::Proc {
                path: object.map_file.clone(),
                source,
            })?;
        let cache = object::ReadCache::new(file);
        let left = std::cell::Cell::new(objects::Capped::BUDGET);
        let data = objects::Capped::new(&cache, &left);
        let facts = elf_facts(data).map_err(|reason| Error::BadObject {
            path: object.path.display().to_string(),
            reason,
        })?;
        Ok::<_, Error>((
            Arc::new(dynamic_symbols(data).unwrap_or_default()),
            facts.first_load,
        ))
    })?;
    Ok((table, object.base.wrapping_sub(first_load)))
}

/// The string table of symbol `table`, read in one piece: through the file's read cache each
/// name would be a read of its own (thousands for libc).
fn string_table<'d, Elf: FileHeader<Endian = Endianness>, R: object::ReadRef<'d>>(
    sections: &object::read::elf::SectionTable<'d, Elf, R>,
    table: &object::read::elf::SymbolTable<'d, Elf, R>,
    endian: Endianness,
    data: R,
) -> Result<&'d [u8], object::Error> {
    sections.section(table.string_section())?.data(endian, data)
}

/// The NUL-terminated name at `offset` of string table `strings`.
fn name_in(strings: &[u8], offset: u32) -> Option<&[u8]> {
    let tail = strings.get(offset as usize..)?;
    Some(&tail[..tail.iter().position(|&b| b == 0)?])
}

/// The addresses (as linked) of the defined functions named `names` in the `.symtab` of the
/// ELF file `data`, in the order of `names`.
fn symtab_functions<'d>(
    data: impl object::ReadRef<'d>,
    names: &[&str],
) -> Result<Vec<Option<u64>>, object::Error> {
    match object::FileKind::parse(data)? {
        object::FileKind::Elf32 => {
            symtab_functions_of::<elf::FileHeader32<Endianness>>(data, names)
        }
        _ => symtab_functions_of::<elf::FileHeader64<Endianness>>(data, names),
    }
}

fn symtab_functions_of<'d, Elf: FileHeader<Endian = Endianness>>(
    data: impl object::ReadRef<'d>,
    names: &[&str],
) -> Result<Vec<Option<u64>>, object::Error> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let table = sections.symbols(endian, data, elf::SHT_SYMTAB)?;
    let strings = string_table(&sections, &table, endian, data)?;
    let mut found = vec![None; names.len()];
    for symbol in table.symbols() {
        if symbol.is_undefined(endian) || symbol.st_type() != elf::STT_FUNC {
            continue;
        }
        let Some(name) = name_in(strings, symbol.st_name(endian)) else {
            continue;
        };
        if let Some(index) = names.iter().position(|n| n.as_bytes() == name) {
            found[index].get_or_insert(symbol.st_value(endian).into());
        }
    }
    Ok(found)
}

fn dynamic_symbols<'d>(data: impl object::ReadRef<'d>) -> Result<DynamicSymbols, object::Error> {
    match object::FileKind::parse(data)? {
        object::FileKind::Elf32 => dynamic_symbols_of::<elf::FileHeader32<Endianness>>(data),
        _ => dynamic_symbols_of::<elf::FileHeader64<Endianness>>(data),
    }
}

fn dynamic_symbols_of<'d, Elf: FileHeader<Endian = Endianness>>(
    data: impl object::ReadRef<'d>,
) -> Result<DynamicSymbols, object::Error> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let table = sections.symbols(endian, data, elf::SHT_DYNSYM)?;
    let versions = sections.versions(endian, data)?;
    let names = string_table(&sections, &table, endian, data)?;
    let mut out = DynamicSymbols::new();
    for (index, symbol) in table.symbols().iter().enumerate() {
        if symbol.is_undefined(endian) || symbol.st_name(endian) == 0 {
            continue;
        }
        let kind = symbol.st_type();
        if kind != elf::STT_FUNC
            && kind != elf::STT_OBJECT
            && kind != elf::STT_GNU_IFUNC
            && kind != elf::STT_NOTYPE
        {
            continue;
        }
        let Some(name) = name_in(names, symbol.st_name(endian)) else {
            continue;
        };
        let name = name.to_vec();
        let (version, hidden) = match &versions {
            Some(v) => {
                let vi = v.version_index(endian, SymbolIndex(index));
                (v.version(vi)?.map(|v| v.name().to_vec()), vi.is_hidden())
            }
            None => (None, false),
        };
        let address = symbol.st_value(endian).into();
        let ifunc = kind == elf::STT_GNU_IFUNC;
        let object_size = match kind {
            elf::STT_OBJECT => symbol.st_size(endian).into(),
            _ => 0,
        };
        out.entry(name).or_default().push(Definition {
            version,
            hidden,
            address,
            ifunc,
            object_size,
        });
    }
    Ok(out)
}

impl<'a> Resolver<'a> {
    /// A resolver for `pid`, where `target` is patched by a module with `map`.
    pub fn new(
        pid: Pid,
        target: &'a TargetObject,
        map: &'a SymbolMap,
        mapped: &'a [MappedObject],
    ) -> Resolver<'a> {
        Resolver {
            pid,
            target,
            bindings: map.symbols.iter().map(|b| (b.name(), b)).collect(),
            mapped,
            order: (0..mapped.len()).collect(),
            tables: RefCell::new(vec![None; mapped.len()]),
            ifuncs: RefCell::new(BTreeMap::new()),
            redirected: BTreeMap::new(),
        }
    }

    /// Looks symbols up in the objects whose dynamic sections are at `dynamic` first, in that
    /// order (the dynamic loader's list of loaded objects), then in the others, so that the
    /// module binds to what the process's own code binds to (a process may have two
    /// definitions, e.g. `_Unwind_Resume` in LLVM's libunwind and in libgcc_s).
    pub fn search_in_loader_order(&mut self, dynamic: &[u64]) {
        let mut listed = vec![false; self.mapped.len()];
        let mut order = Vec::with_capacity(self.mapped.len());
        for &address in dynamic {
            let found = (0..self.mapped.len()).find(|&i| self.mapped[i].contains(address));
            if let Some(index) = found.filter(|&i| !listed[i]) {
                listed[index] = true;
                order.push(index);
            }
        }
        order.extend((0..self.mapped.len()).filter(|&i| !listed[i]));
        self.order = order;
    }

    /// Makes `target` symbols at the address of a function whose calls an applied package
    /// redirected (`old address -> new code`) resolve to its new code: the old code is left as
    /// it was, so a call bound there would bypass that package's fix.
    pub fn follow_redirected_calls(&mut self, redirected: BTreeMap<u64, u64>) {
        self.redirected = redirected;
    }

    /// The IFUNC resolvers among the external symbols of `map`: each must be run in the target
    /// (see [`Resolver::set_ifunc`]) before the module is linked.
    pub fn ifunc_resolvers(&self, map: &SymbolMap) -> Result<Vec<u64>, Error> {
        let mut resolvers = Vec::new();
        for binding in &map.symbols {
            if let SymbolBinding::External {
                symbol, version, ..
            } = binding
            {
                let definition = self.definition(symbol, version.as_deref())?;
                if definition.ifunc && !resolvers.contains(&definition.address) {
                    resolvers.push(definition.address);
                }
            }
        }
        Ok(resolvers)
    }

    /// Records what the IFUNC resolver at `resolver` returned in the target.
    pub fn set_ifunc(&self, resolver: u64, implementation: u64) {
        self.ifuncs.borrow_mut().insert(resolver, implementation);
    }

    fn binding(&self, name: &str) -> Result<&'a SymbolBinding, Error> {
        self.bindings.get(name).copied().ok_or_else(|| {
            Error::BadModule(format!("undefined symbol {name} is not in the symbol map"))
        })
    }

    fn external(&self, symbol: &str, version: Option<&str>) -> Result<u64, Error> {
        let definition = self.definition(symbol, version)?;
        if !definition.ifunc {
            return Ok(definition.address);
        }
        self.ifuncs
            .borrow()
            .get(&definition.address)
            .copied()
            .ok_or_else(|| {
                Error::BadModule(format!(
                    "IFUNC {symbol} was not resolved in the target before linking"
                ))
            })
    }

    /// Copies of the read-only objects that `names` (undefined symbols of the module) are bound
    /// to in other objects, read from the target through `mem`: for [`Layout::with_copies`].
    /// A name bound to the target object itself, to a function, or to data in a writable
    /// mapping gets none.
    ///
    /// [`Layout::with_copies`]: crate::link::Layout::with_copies
    pub fn read_only_copies(
        &self,
        names: &std::collections::BTreeSet<String>,
        mem: &lpkg_kernel::memory::Mem,
    ) -> Result<BTreeMap<String, Vec<u8>>, Error> {
        /// Larger objects are no type information or constant: not copied.
        const MAX_COPY: u64 = 64 << 10;
        let mut copies = BTreeMap::new();
        for name in names {
            let Some(SymbolBinding::External {
                symbol, version, ..
            }) = self.bindings.get(name.as_str()).copied()
            else {
                continue;
            };
            let Ok(definition) = self.definition(symbol, version.as_deref()) else {
                continue;
            };
            let size = definition.object_size;
            let end = definition.address.checked_add(size);
            let read_only = end.is_some_and(|end| {
                self.mapped
                    .iter()
                    .flat_map(|o| &o.ranges)
                    .any(|r| r.start <= definition.address && end <= r.end && !r.write)
            });
            if size == 0 || size > MAX_COPY || !read_only {
                continue;
            }
            copies.insert(name.clone(), mem.read(definition.address, size as usize)?);
        }
        Ok(copies)
    }

    /// The first mapped object (by index) whose `.dynsym` defines `symbol` in its default
    /// version, and the symbol's address; `None` when no object does.
    pub fn defining_object(&self, symbol: &str) -> Option<(usize, u64)> {
        self.objects_defining(symbol).next()
    }

    /// Every ELF object mapped in the process, as listed for this resolver.
    pub fn objects(&self) -> &'a [MappedObject] {
        self.mapped
    }

    /// Every mapped object (by index) whose `.dynsym` defines `symbol` in its default
    /// version, with the symbol's address there.
    pub fn objects_defining<'s>(
        &'s self,
        symbol: &'s str,
    ) -> impl Iterator<Item = (usize, u64)> + 's {
        self.order
            .iter()
            .copied()
            .filter_map(|index| Some((index, self.definition_address(index, symbol)?)))
    }

    /// The address of `symbol` (default version) in mapped object `index`, if it defines it.
    pub fn definition_address(&self, index: usize, symbol: &str) -> Option<u64> {
        Some(self.definition_in(index, symbol, None).ok()??.address)
    }

    /// The path of mapped object `index`, as the process maps it.
    pub fn object_path(&self, index: usize) -> std::path::PathBuf {
        self.mapped[index].path.clone()
    }

    /// The target object (its path, bias...).
    pub fn target(&self) -> &'a TargetObject {
        self.target
    }

    /// The run-time addresses of the functions named `names` in the target object's own
    /// symbol table (`.symtab`: functions it does not export, such as an unwinder linked in
    /// statically), each `None` where it defines none; all `None` for a stripped object.
    /// `cache` keeps what a file gave, by its key: each file is read once.
    pub fn target_functions(
        &self,
        names: &[&str],
        cache: &objects::FileCache<Vec<Option<u64>>>,
    ) -> Vec<Option<u64>> {
        let none = vec![None; names.len()];
        let Some(object) = self.mapped.iter().find(|o| o.base == self.target.base) else {
            return none;
        };
        let Ok(key) = objects::file_key(object) else {
            return none;
        };
        let read = || -> Result<_, ()> {
            // Only the headers and the symbol table, at most `Capped::BUDGET`.
            let file = std::fs::File::open(&object.map_file).map_err(drop)?;
            let cache = object::ReadCache::new(file);
            let left = std::cell::Cell::new(objects::Capped::BUDGET);
            Ok(symtab_functions(objects::Capped::new(&cache, &left), names)
                .unwrap_or_else(|_| vec![None; names.len()]))
        };
        let linked = cache.get(key, read).unwrap_or(none);
        let bias = self.target.bias;
        linked
            .into_iter()
            .map(|a| a.map(|a| a.wrapping_add(bias)))
            .collect()
    }

    /// `symbol` with `version` (else the default one) in the `.dynsym` of mapped object
    /// `index`, read on first use.
    fn definition_in(
        &self,
        index: usize,
        symbol: &str,
        version: Option<&str>,
    ) -> Result<Option<Definition>, Error> {
        let mut tables = self.tables.borrow_mut();
        let object = &self.mapped[index];
        if tables[index].is_none() {
            tables[index] = Some(cached_dynamic_symbols(object)?);
        }
        let Some((table, bias)) = &tables[index] else {
            return Ok(None);
        };
        let Some(candidates) = table.get(symbol.as_bytes()) else {
            return Ok(None);
        };
        Ok(candidates
            .iter()
            .find(|d| match version {
                Some(wanted) => d.version.as_deref() == Some(wanted.as_bytes()),
                None => !d.hidden,
            })
            .map(|d| Definition {
                address: bias.wrapping_add(d.address),
                ..d.clone()
            }))
    }

    fn definition(&self, symbol: &str, version: Option<&str>) -> Result<Definition, Error> {
        for &index in &self.order {
            if let Some(definition) = self.definition_in(index, symbol, version)? {
                return Ok(definition);
            }
        }
        Err(Error::UnresolvedSymbol {
            pid: self.pid,
            symbol: symbol.to_owned(),
        })
    }
}

impl Resolve for Resolver<'_> {
    fn address(&self, name: &str) -> Result<u64, Error> {
        match self.binding(name)? {
            SymbolBinding::Target { offset, .. } => {
                let address = self.target.bias.wrapping_add(*offset);
                Ok(self.redirected.get(&address).copied().unwrap_or(address))
            }
            SymbolBinding::External {
                symbol, version, ..
            } => self.external(symbol, version.as_deref()),
        }
    }

    fn tls_offset(&self, name: &str) -> Result<i64, Error> {
        let tls = |reason: &str| Error::UnsupportedTls {
            symbol: name.to_owned(),
            reason: reason.to_owned(),
        };
        let SymbolBinding::Target { offset, .. } = self.binding(name)? else {
            return Err(tls("a variable of another library is not supported"));
        };
        match self.target.tls {
            // Variant II (x86_64 and i386): the executable's TLS block ends at the thread
            // pointer.
            Some((memsz, align)) if self.target.is_executable => {
                let block = memsz.div_ceil(align.max(1)) * align.max(1);
                Ok(*offset as i64 - block as i64)
            }
            Some(_) => Err(tls(
                "it lives in a shared library, whose TLS offset is only known to the dynamic linker",
            )),
            None => Err(tls("the target has no TLS segment")),
        }
    }
}
