//! lpkg-builder: compare old and new ELF objects (compiled with `-ffunction-sections
//! -fdata-sections`) and produce a live-patch module, its symbol map and a manifest.
//!
//! The output contract is described in `spec/builder.md`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod arch;
mod debug_file;
mod diff;
pub mod disasm;
mod dwarf;
mod error;
mod identity;
mod input;
mod line_rows;
mod module;
mod objfile;
mod runtime;
pub mod source;
mod target;

use std::path::{Path, PathBuf};

use lpkg_format::{
    Action, Data, Function, Manifest, PackageInfo, Routine, RoutineKind, SymbolMap, Target,
    FORMAT_VERSION, MODULE_PAYLOAD, SYMBOLS_PAYLOAD,
};
use sha2::{Digest, Sha256};

pub use debug_file::{DebugOptions, DEFAULT_DEBUG_DIR};
pub use error::Error;

use diff::{Side, Verdict};
use dwarf::Wanted;
use module::{ModuleWriter, Unit};
use objfile::Obj;
use target::{hex, TargetFile};

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The exact executable or shared library that runs in production (build-id source).
    pub target: PathBuf,
    /// A `.o` file, or a folder of `.o` files paired with `new` by relative path.
    pub old: PathBuf,
    /// The new `.o` file or folder.
    pub new: PathBuf,
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Free text for auditors.
    pub description: String,
    /// Include functions whose only change is shifted `__LINE__` immediates.
    pub allow_line_changes: bool,
    /// Packages this one stacks on. Their `old` objects already carry their fixes, so a
    /// function they replaced may differ between `old` and the target: the target keeps the
    /// original code, which the applier finds behind the earlier package's jump.
    pub requires: Vec<Required>,
    /// Where a stripped target's symbols and DWARF come from (its debug file).
    pub debug: DebugOptions,
}

/// A package that must be applied before the one being built.
#[derive(Debug, Clone, Default)]
pub struct Required {
    /// Its name.
    pub name: String,
    /// Its package id.
    pub id: String,
    /// The functions it replaces.
    pub replaced: Vec<String>,
}

/// The result of a build.
#[derive(Debug, Clone)]
pub struct Built {
    /// The manifest; `payloads` is left empty (the package writer fills it).
    pub manifest: Manifest,
    /// `("module.o", ELF bytes)` and `("symbols.toml", SymbolMap TOML)`.
    pub payloads: Vec<(String, Vec<u8>)>,
    /// Things the engineer should read (e.g. line-only changes not patched).
    pub notes: Vec<String>,
}

fn read_bytes(path: &Path) -> Result<input::Bytes, Error> {
    input::read(path)
}

fn collect_objects(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        // The directory entry tells the type without a stat, except behind a symbolic link.
        let dir = match entry.file_type() {
            Ok(t) if !t.is_symlink() => t.is_dir(),
            _ => path.is_dir(),
        };
        if dir {
            collect_objects(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "o") {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

/// Old/new object paths (old `None` when the file is new).
fn pairs(
    opts: &BuildOptions,
    notes: &mut Vec<String>,
) -> Result<Vec<(Option<PathBuf>, PathBuf)>, Error> {
    if !opts.old.is_dir() && !opts.new.is_dir() {
        return Ok(vec![(Some(opts.old.clone()), opts.new.clone())]);
    }
    if !(opts.old.is_dir() && opts.new.is_dir()) {
        return Err(Error::BadInput {
            path: opts.new.clone(),
            reason: "old and new must both be .o files or both be folders".into(),
        });
    }
    let (mut olds, mut news) = (Vec::new(), Vec::new());
    collect_objects(&opts.old, &opts.old, &mut olds)?;
    collect_objects(&opts.new, &opts.new, &mut news)?;
    olds.sort();
    news.sort();
    for gone in olds.iter().filter(|o| news.binary_search(o).is_err()) {
        notes.push(format!(
            "{gone}: only in the old build; its code stays as it is"
        ));
    }
    Ok(news
        .into_iter()
        .map(|rel| {
            let old = olds
                .binary_search(&rel)
                .is_ok()
                .then(|| opts.old.join(&rel));
            (old, opts.new.join(rel))
        })
        .collect())
}

/// Reads and analyses one pair, each file read once; `None` when both files are identical
/// (in a folder build; a single pair given by the user is always compared). Each file's bytes
/// go as soon as its object is parsed (the object copies what it keeps), and an object is built
/// only once the other file's bytes are gone: for one large pair, holding both files and both
/// objects at once took 2.6 × the input.
///
/// With `pipelined` (a core would be idle otherwise), the new side is parsed and analysed on
/// another thread while this one reads the old file, then (once the new file's bytes are gone)
/// parses and analyses the old side. In a folder build the new side is parsed before the files
/// are known to differ; identical files throw that work away. The line programs, which the
/// comparison reads whole as soon as one function may differ by line numbers only, are read
/// then too: the old side's while its DIEs are read, the new side's once that side is done
/// (the old side, started later, still keeps the other core busy).
fn read_pair(
    old: Option<PathBuf>,
    new: PathBuf,
    skip_identical: bool,
    pipelined: bool,
) -> Result<Option<(Side, Side)>, Error> {
    let new_bytes = read_bytes(&new)?;
    let side = |path: &Path, bytes: input::Bytes, wanted, lines_now| -> Result<Side, Error> {
        let obj = Obj::parse(path, &bytes)?;
        drop(bytes);
        Ok(Side::new(obj, wanted, lines_now))
    };
    if let (true, Some(old_path)) = (pipelined, &old) {
        return std::thread::scope(|scope| {
            let new_bytes = std::sync::Arc::new(new_bytes);
            let bytes = std::sync::Arc::clone(&new_bytes);
            let (parsed, is_parsed) = std::sync::mpsc::channel::<()>();
            let new_side = scope.spawn(move || -> Result<Side, Error> {
                let obj = Obj::parse(&new, &bytes);
                drop(bytes);
                // The old object may be built now (a send fails only when nobody waits).
                let _ = parsed.send(());
                let side = Side::new(obj?, Wanted::All, false);
                side.facts.lines.all(&side.obj);
                // The decoder's tables take ≈ 0.5 ms to build, on first use.
                arch::prepare_decoder();
                Ok(side)
            });
            let old_bytes = read_bytes(old_path);
            let identical = skip_identical && matches!(&old_bytes, Ok(b) if b[..] == new_bytes[..]);
            drop(new_bytes);
            let old_side = match old_bytes {
                // As below: in a folder build, a failed read of the old file comes first.
                Err(e) if skip_identical => Err(e),
                _ if identical => Ok(None),
                old_bytes => {
                    // Err when the thread ended without sending (it panicked): join says why.
                    let _ = is_parsed.recv();
                    Ok(Some(old_bytes.and_then(|bytes| {
                        side(old_path, bytes, Wanted::OldSide, true)
                    })))
                }
            };
            let new_side = new_side
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e));
            let Some(old_side) = old_side? else {
                return Ok(None);
            };
            let new_side = new_side?;
            Ok(Some((old_side?, new_side)))
        });
    }
    let mut old_bytes = None;
    if let (true, Some(path)) = (skip_identical, &old) {
        let bytes = read_bytes(path)?;
        if bytes[..] == new_bytes[..] {
            return Ok(None);
        }
        old_bytes = Some(bytes);
    }
    let new = side(&new, new_bytes, Wanted::All, false)?;
    let old = match old {
        None => Side::new(Obj::empty(&new.obj), Wanted::OldSide, false),
        Some(path) => {
            let bytes = match old_bytes {
                Some(bytes) => bytes,
                None => read_bytes(&path)?,
            };
            side(&path, bytes, Wanted::OldSide, false)?
        }
    };
    Ok(Some((old, new)))
}

/// The cores the build runs on.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `f` over `items` on every core (the pairs of a build are independent), results in order.
/// The calling thread is one of the workers: its allocations come from the main heap, which
/// grows in large steps, where each new thread's heap grows a page at a time (one `mprotect`
/// each).
fn parallel_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let workers = workers().min(items.len());
    if workers <= 1 {
        return items.into_iter().map(f).collect();
    }
    let queue = std::sync::Mutex::new(items.into_iter().enumerate());
    let work = || {
        let mut out = Vec::new();
        loop {
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some((i, item)) = next else {
                return out;
            };
            out.push((i, f(item)));
        }
    };
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..workers).map(|_| scope.spawn(work)).collect();
        let mut results = work();
        for h in handles {
            results.extend(h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        results
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Builds a patch from old and new objects for `opts.target`: read the inputs, compare each
/// pair, resolve what replaces what in the target, write the module with what it carries, and
/// describe it all in the manifest.
pub fn build(opts: &BuildOptions) -> Result<Built, Error> {
    let mut notes = Vec::new();
    let (target, sides) = read_inputs(opts, &mut notes)?;
    if let Some(found) = &target.debug_file {
        notes.push(format!(
            "symbols and DWARF of {} from its debug file {} ({})",
            target.file_name,
            found.path.display(),
            found.how
        ));
    }
    let mut diffs = compare_pairs(opts, &sides, &mut notes)?;
    check_deployed_layouts(&target, &sides, &diffs)?;
    let runtime = runtime::sides(target.arch)?;
    let mut units = units(&sides);
    let moved_from = find_moves(&units, &mut diffs);
    let mut writer = ModuleWriter::new(&target);
    if let Some((old, new)) = &runtime {
        writer.runtime = Some(units.len());
        units.push(Unit {
            old,
            new,
            file: new.obj.file_name.clone(),
            unit_path: None,
        });
    }
    writer.stacked = opts
        .requires
        .iter()
        .flat_map(|r| r.replaced.iter().cloned())
        .collect();
    let (mut functions, routines) =
        collect_functions(opts, &target, &units, &diffs, &moved_from, &mut writer)?;
    let mut data = collect_data(&units, &diffs, &mut writer);
    writer.relocate(&units)?;
    writer.eh_frame(&units)?;
    writer.relocate(&units)?;
    carried_symbols(&units, &mut writer, &mut functions, &mut data, &mut notes);
    let mut bindings = std::mem::take(&mut writer.bindings);
    bindings.sort_by(|a, b| a.name().cmp(b.name()));
    let module = writer.finish()?;
    let symbols = toml::to_string(&SymbolMap { symbols: bindings })
        .map_err(|e| Error::Write(e.to_string()))?;
    if functions.is_empty() {
        notes.push("no function changed: the package would change nothing".into());
    }
    let manifest = manifest(opts, &target, functions, data, routines);
    drop(units);
    drop_later((sides, diffs, target, runtime));
    Ok(Built {
        manifest,
        payloads: vec![
            (MODULE_PAYLOAD.to_string(), module),
            (SYMBOLS_PAYLOAD.to_string(), symbols.into_bytes()),
        ],
        notes,
    })
}

/// The target file and every pair of old and new objects, read side by side.
fn read_inputs(
    opts: &BuildOptions,
    notes: &mut Vec<String>,
) -> Result<(TargetFile, Vec<(Side, Side)>), Error> {
    let pairs = pairs(opts, notes)?;
    let folders = opts.new.is_dir();
    // The target is read while the pairs are: it is independent of them.
    let (target, read) = std::thread::scope(|scope| {
        let target = scope.spawn(|| TargetFile::read(&opts.target, Some(&opts.debug)));
        // Fewer pairs than cores: each pair overlaps its own two sides.
        let pipelined = pairs.len() < workers();
        let read = parallel_map(pairs, |(old, new)| read_pair(old, new, folders, pipelined));
        let target = target
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e));
        (target, read)
    });
    let target = target?;
    let mut sides = Vec::new();
    for pair in read {
        sides.extend(pair?);
    }
    for side in sides.iter().flat_map(|(old, new)| [old, new]) {
        if side.obj.arch != target.arch {
            return Err(Error::BadInput {
                path: side.obj.path.clone(),
                reason: format!(
                    "object is for {}, the target for {}",
                    side.obj.arch.name(),
                    target.arch.name()
                ),
            });
        }
    }
    Ok((target, sides))
}

/// The verdict on every function and data object of each pair, in parallel.
fn compare_pairs(
    opts: &BuildOptions,
    sides: &[(Side, Side)],
    notes: &mut Vec<String>,
) -> Result<Vec<diff::PairDiff>, Error> {
    let old_globals: std::collections::BTreeSet<String> = sides
        .iter()
        .flat_map(|(old, _)| old.analysis.data_keys.values())
        .filter_map(|k| k.strip_prefix("g:").map(str::to_string))
        .collect();
    let compared = parallel_map(sides.iter().collect(), |(old, new)| {
        diff::compare(old, new, opts.allow_line_changes, &old_globals)
    });
    let mut diffs = Vec::new();
    for d in compared {
        let d = d?;
        notes.extend(d.notes.iter().cloned());
        diffs.push(d);
    }
    Ok(diffs)
}

/// Refuses when a struct or union that a function of the package uses has another layout in
/// the target's DWARF than in the objects: a target not built from these objects (another
/// configuration, another compiler: a distribution's build) would have its memory read with
/// the wrong offsets. A name with several layouts in the target (different types in different
/// files) passes when one of them is the objects'.
fn check_deployed_layouts(
    target: &TargetFile,
    sides: &[(Side, Side)],
    diffs: &[diff::PairDiff],
) -> Result<(), Error> {
    for ((_, new), d) in sides.iter().zip(diffs) {
        for name in d.functions.keys() {
            for ty in diff::types_used(new, name) {
                let (Some(ours), Some(deployed)) =
                    (new.facts.layouts.get(&ty), target.layouts.get(&ty))
                else {
                    continue;
                };
                if deployed.contains(ours) {
                    continue;
                }
                let sizes: Vec<String> = deployed.iter().map(|l| l.0.to_string()).collect();
                return Err(error::refuse(
                    format!("struct {ty}"),
                    format!(
                        "layout differs between the deployed target's DWARF ({} bytes) and the build the package is made from ({} bytes, or member offsets or sizes), and it is used by changed function {name}; the target was not built from these sources and configuration (another configure option or compiler): build the package as the target was built",
                        sizes.join(" or "),
                        ours.0
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Each pair as the module writer sees it.
fn units(sides: &[(Side, Side)]) -> Vec<Unit<'_>> {
    sides
        .iter()
        .map(|(old, new)| Unit {
            old,
            new,
            file: if old.obj.file_name.is_empty() {
                new.obj.file_name.clone()
            } else {
                old.obj.file_name.clone()
            },
            unit_path: old.facts.cu_path.clone(),
        })
        .collect()
}

/// Adds every changed or new function to the module (functions first, so that their names win
/// over undefined references); returns their manifest entries and the init and exit routines.
fn collect_functions(
    opts: &BuildOptions,
    target: &TargetFile,
    units: &[Unit],
    diffs: &[diff::PairDiff],
    moved_from: &std::collections::BTreeMap<(usize, String), usize>,
    writer: &mut ModuleWriter,
) -> Result<(Vec<Function>, Vec<Routine>), Error> {
    let mut functions = Vec::new();
    let mut routines = Vec::new();
    for (u, d) in diffs.iter().enumerate() {
        for (name, verdict) in &d.functions {
            let module_symbol = writer.add_function(units, u, name);
            let side = units[u].new;
            let sym = &side.obj.symbols[side.analysis.functions[name]];
            let mut f = Function {
                name: name.clone(),
                action: Action::New,
                source: side.source(name),
                reason: verdict.reason().to_string(),
                module_symbol: module_symbol.clone(),
                old_offset: None,
                old_size: None,
                old_sha256: None,
                old_room: None,
                call_sites: Vec::new(),
                new_size: sym.size,
            };
            if let Verdict::Replace(_) = verdict {
                let from = moved_from.get(&(u, name.clone())).copied().unwrap_or(u);
                resolve_replacement(opts, target, &units[from], name, &mut f)?;
            }
            for (list, kind) in [
                (&d.checks, RoutineKind::Check),
                (&d.inits, RoutineKind::Init),
                (&d.exits, RoutineKind::Exit),
            ] {
                if list.contains(name) {
                    routines.push(Routine {
                        kind,
                        module_symbol: module_symbol.clone(),
                    });
                }
            }
            functions.push(f);
        }
    }
    Ok((functions, routines))
}

/// Makes `f` the replacement of function `name` of `unit`'s old object: finds it in the
/// target, checks that the target's bytes are the old object's (unless an earlier package
/// replaced it) and that its entry can take a jump, and records where it is, its hash and the
/// room after it.
fn resolve_replacement(
    opts: &BuildOptions,
    target: &TargetFile,
    unit: &Unit,
    name: &str,
    f: &mut Function,
) -> Result<(), Error> {
    let old = unit.old;
    let old_sym = &old.obj.symbols[old.analysis.functions[name]];
    let id = target::FileId {
        name: unit.file.clone(),
        unit_path: unit.unit_path.clone(),
    };
    let t = target
        .lookup(&id, name, old_sym.local)?
        .ok_or_else(|| Error::NotInTarget {
            symbol: name.to_owned(),
            path: target.path.clone(),
            reason: "the function to replace is not in the target's .symtab (was the target built from the old objects?)".into(),
        })?;
    let bytes = target
        .bytes_at(t.value, t.size)
        .ok_or_else(|| Error::NotInTarget {
            symbol: name.to_owned(),
            path: target.path.clone(),
            reason: format!("no file bytes at {:#x}+{}", t.value, t.size),
        })?;
    let stacked = opts
        .requires
        .iter()
        .any(|r| r.replaced.iter().any(|n| n == name));
    if !stacked && !same_code(old, old_sym, bytes) {
        return Err(error::refuse(
            name.to_owned(),
            format!(
                "the target's copy ({} bytes at {:#x}) differs from the old object's ({} bytes): was the target built from these old objects?",
                t.size, t.value, old_sym.size
            ),
        ));
    }
    let room = target.room(t.value, t.size);
    // A symbol inside the function: only the function's own bytes may be overwritten.
    let entry_room = room.unwrap_or(t.size);
    if t.size < arch::JUMP_SIZE && entry_room < arch::JUMP_SIZE {
        f.call_sites = short_function_call_sites(target, name, t.value, t.size, entry_room)?;
    } else if let Some(problem) = target.arch.entry_problem(bytes, t.value, entry_room) {
        return Err(error::refuse(
            name.to_owned(),
            format!("cannot patch entry: {problem}"),
        ));
    }
    f.action = Action::Replace;
    f.old_offset = Some(t.value);
    f.old_size = Some(t.size);
    f.old_sha256 = Some(hex(&Sha256::digest(bytes)));
    f.old_room = room;
    Ok(())
}

/// The call sites the applier points at the new code of `name` (`size` bytes at `value`,
/// `room` bytes up to the next symbol): a function too short for a jump at its entry, with no
/// padding after it to take the rest. Refused when something else may lead to it, or nothing
/// calls it.
fn short_function_call_sites(
    target: &TargetFile,
    name: &str,
    value: u64,
    size: u64,
    room: u64,
) -> Result<Vec<u64>, Error> {
    let refuse = |why: String| {
        error::refuse(
            name.to_owned(),
            format!(
                "cannot patch entry: function is {size} bytes long, shorter than the {}-byte jump, with {room} bytes of room up to the next symbol, and its call sites cannot be rewritten instead: {why}",
                arch::JUMP_SIZE
            ),
        )
    };
    let sites = target.call_sites(value, size).map_err(refuse)?;
    if sites.is_empty() {
        return Err(refuse(
            "no direct call or jump in the target reaches it".into(),
        ));
    }
    Ok(sites)
}

/// Whether `bytes` (a function's in the target) are the code of `old_sym` in the object of
/// `old`: the same bytes, relocated fields and linker-relaxed GOT/TLS opcodes aside, or the
/// same instructions with branches encoded otherwise (a target built without
/// `-ffunction-sections`).
pub(crate) fn same_code(old: &Side, old_sym: &objfile::Sym, bytes: &[u8]) -> bool {
    let section = &old.obj.sections[old_sym.section.unwrap_or(0)];
    let relocations = section.relocs.iter().map(|r| (r.offset, r.r_type));
    let arch = old.obj.arch;
    let expected = arch.masked_code(&section.data, relocations, old_sym.value, old_sym.size);
    if expected.len() == bytes.len() && arch::mask_like(bytes, &expected) == expected {
        return true;
    }
    let start = (old_sym.value as usize).min(section.data.len());
    let end = start.saturating_add(expected.len()).min(section.data.len());
    arch.same_instructions(&section.data[start..end], &expected, bytes)
}

/// Adds every new data object to the module; returns their manifest entries.
fn collect_data(units: &[Unit], diffs: &[diff::PairDiff], writer: &mut ModuleWriter) -> Vec<Data> {
    let mut data = Vec::new();
    for (u, d) in diffs.iter().enumerate() {
        for &sym in &d.new_data {
            let (name, section, size) = writer.add_data(units, u, sym);
            data.push(Data {
                name,
                section,
                size,
            });
        }
    }
    data
}

/// Why a function of the shadow-variable runtime is in the manifest.
const RUNTIME_REASON: &str = "lpkg runtime: shadow variables";

/// Manifest entries (and a note each) for what the module carries unchanged because the
/// patch refers to it and the target lacks it (dropped by the linker).
fn carried_symbols(
    units: &[Unit],
    writer: &mut ModuleWriter,
    functions: &mut Vec<Function>,
    data: &mut Vec<Data>,
    notes: &mut Vec<String>,
) {
    for (u, name, module_symbol) in std::mem::take(&mut writer.carried_functions) {
        let side = units[u].new;
        let sym = &side.obj.symbols[side.analysis.functions[&name]];
        let runtime = writer.runtime == Some(u);
        notes.push(match runtime {
            true => format!("{name}: lpkg's shadow-variable runtime, linked in because the patch calls it"),
            false => format!("{name}: not in the target (removed by the linker?); carried unchanged because the patch calls it"),
        });
        functions.push(Function {
            name: name.clone(),
            action: Action::New,
            source: side.source(&name),
            reason: match runtime {
                true => RUNTIME_REASON.into(),
                false => "unchanged, not in target: carried".into(),
            },
            module_symbol,
            old_offset: None,
            old_size: None,
            old_sha256: None,
            old_room: None,
            call_sites: Vec::new(),
            new_size: sym.size,
        });
    }
    for (name, section, size) in std::mem::take(&mut writer.carried_data) {
        notes.push(match name == lpkg_format::SHADOW_TABLE_SYMBOL {
            true => format!("{name}: the shadow area's address, which the applier writes"),
            false => format!("{name}: not in the target (removed by the linker?); carried with its initial value"),
        });
        data.push(Data {
            name,
            section,
            size,
        });
    }
}

fn manifest(
    opts: &BuildOptions,
    target: &TargetFile,
    functions: Vec<Function>,
    data: Vec<Data>,
    routines: Vec<Routine>,
) -> Manifest {
    let mut manifest = Manifest {
        format_version: FORMAT_VERSION,
        package: PackageInfo {
            name: opts.name.clone(),
            version: opts.version.clone(),
            description: opts.description.clone(),
            builder_version: format!("lpkg-builder {}", env!("CARGO_PKG_VERSION")),
        },
        target: Target {
            file_name: target.file_name.clone(),
            build_id: target.build_id.clone(),
            sha256: target.sha256.clone(),
            machine: target.arch.name().into(),
            unwinder: target.linked_unwinder(),
        },
        requires: opts
            .requires
            .iter()
            .map(|r| lpkg_format::Requirement {
                name: r.name.clone(),
                id: r.id.clone(),
            })
            .collect(),
        functions,
        data,
        routines,
        payloads: Vec::new(),
    };
    manifest.format_version = manifest.needed_version();
    manifest
}

/// Frees `value` on a helper thread: the objects and facts of a build are some 100 000 small
/// allocations (≈ 5 ms to free for one 10 000-function pair) that the caller need not wait for.
/// Freed in place when no thread can be started.
fn drop_later<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("lpkg-free".into())
        .spawn(move || drop(value));
}

/// A global function that is new in its object but defined by another old object moved between
/// files: it replaces the target's copy (so old callers reach the new code). Returns, for each
/// such `(unit, function)`, the unit whose old object had it.
fn find_moves(
    units: &[Unit],
    diffs: &mut [diff::PairDiff],
) -> std::collections::BTreeMap<(usize, String), usize> {
    let mut moved = std::collections::BTreeMap::new();
    for (u, d) in diffs.iter_mut().enumerate() {
        for (name, verdict) in d.functions.iter_mut() {
            if *verdict != Verdict::New(diff::Reason::NewFunction) {
                continue;
            }
            let side = units[u].new;
            if side.obj.symbols[side.analysis.functions[name]].local {
                continue;
            }
            let from = units.iter().position(|other| {
                other
                    .old
                    .analysis
                    .functions
                    .get(name)
                    .is_some_and(|&i| !other.old.obj.symbols[i].local)
            });
            if let Some(from) = from {
                *verdict = Verdict::Replace(diff::Reason::MovedFrom(units[from].file.clone()));
                moved.insert((u, name.clone()), from);
            }
        }
    }
    moved
}
