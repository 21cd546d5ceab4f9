//! `lpkg apply`: verify, find the target, check pre-images, load, switch, record.

use std::time::{Duration, Instant, SystemTime};

use lpkg_format::{Action, LinkedUnwinder, Manifest, Package, RoutineKind, TrustStore};
use lpkg_kernel::memory::Mem;
use lpkg_kernel::{Pid, Prot, Tracee};
use sha2::{Digest, Sha256};

use crate::claim::Claim;
use crate::link::{Layout, Region};
use crate::quiesce::stop_clear;
use crate::record::{
    call_displacement, hex, unhex, Entry, Guarded, RecordBody, State, Write, MODULE_NAME_PREFIX,
    NAME_PREFIX, STATE_OFFSET,
};
use crate::records::{self, LiveRecord};
use crate::registration::Unwinders;
use crate::reloc::{Machine, JUMP_LEN};
use crate::revert::{recover, remove_orphaned_modules, Rollback};
use crate::target::TargetObject;
use crate::unwind::CfiCache;
use crate::{checkpoint, in_place, spans, target, Error};

/// How apply behaves.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How long to keep retrying while a thread is inside a function being replaced.
    pub timeout: Duration,
    /// Write a new function's code over the old where that is safe ([`crate::in_place`])
    /// instead of a jump to it; when false, every entry gets a jump.
    pub in_place: bool,
    /// Apply over a higher version of the same package name (refused otherwise).
    pub allow_downgrade: bool,
    /// Apply only to the process that started at this time (field 22 of /proc/PID/stat), as a
    /// scan of the host saw it: another process that got its pid since is left alone.
    pub start_time: Option<u64>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            timeout: Duration::from_secs(10),
            in_place: true,
            allow_downgrade: false,
            start_time: None,
        }
    }
}

/// What apply did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// The package id.
    pub id: String,
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Trusted signers.
    pub signers: Vec<String>,
    /// Every replaced entry.
    pub entries: Vec<Entry>,
    /// For each entry, why it got a jump rather than its new code in place (`None`: in place).
    pub jumps: Vec<Option<in_place::Jump>>,
    /// Where the patch module lives.
    pub module_address: u64,
    /// What became of the patch code's CFI in the target's own unwinder: `Ok(library)`
    /// registered there, `Err(why)` not (exceptions, cancellation and `backtrace()` then stop
    /// at new code); `None` when the module has no CFI.
    pub unwind: Option<Result<String, String>>,
    /// Interrupted operations found and rolled back first (package ids; the first 16 hex
    /// digits of the id for a module left without a record).
    pub recovered: Vec<String>,
    /// How long every thread was stopped for the switch (from all stopped and clear to
    /// detached).
    pub pause: Duration,
    /// System calls made for the switch, for profiles.
    pub switch: SwitchProfile,
}

/// What the switch cost, from the first stop of the process to the detach, failed attempts
/// included. Not counted: one read of /proc/PID/stat per stop (the thread count), and the
/// system calls of init routines run in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwitchProfile {
    /// Threads of the process at the switch.
    pub threads: usize,
    /// Times the whole process was stopped (one plus the attempts that found a busy thread).
    pub stops: u64,
    /// Times a thread found busy was stopped alone to see whether it still was.
    pub single_stops: u64,
    /// ptrace requests (interrupt, registers, detach...).
    pub ptrace: u64,
    /// waitpid calls.
    pub waits: u64,
    /// Stack copies (`process_vm_readv`), one per thread checked.
    pub stacks: u64,
    /// Reads and writes of /proc/PID/mem (record state and jumps).
    pub memory: u64,
    /// System calls injected into the target (for the init routines' calls: the worker
    /// thread's alternate stack read; the trampoline page is mapped before the switch and
    /// unmapped after the other threads are detached).
    pub injected: u64,
}

impl SwitchProfile {
    /// System calls per thread (ptrace, waitpid, stack copies; not the memory writes, which
    /// grow with the functions): the figure to drive down.
    pub fn per_thread(&self) -> f64 {
        (self.ptrace + self.waits + self.stacks) as f64 / self.threads.max(1) as f64
    }
}

fn page_align(len: u64) -> u64 {
    len.div_ceil(4096) * 4096
}

/// The live bytes of a function's old code (`old_size` bytes at `address`), checked against
/// the package, and whether they are the target file's own (false: stacking, an applied
/// package's jump or code is over them).
fn check_preimage(
    mem: &Mem,
    function: &lpkg_format::Function,
    address: u64,
    applied: &[LiveRecord],
) -> Result<(Vec<u8>, bool), Error> {
    let size = function.old_size.unwrap_or(0) as usize;
    let expected = function.old_sha256.as_deref().unwrap_or("");
    let mismatch = || Error::PreimageMismatch {
        function: function.name.clone(),
        address,
    };
    let room = function.old_room.unwrap_or(0) as usize;
    if size < JUMP_LEN && room < JUMP_LEN && function.call_sites.is_empty() {
        return Err(Error::FunctionTooShort {
            function: function.name.clone(),
            size: size as u64,
        });
    }
    // Calls an applied package leads to its own new code would bypass this one's.
    let redirected = applied
        .iter()
        .flat_map(|r| &r.body.entries)
        .any(|e| e.address == address && !e.call_sites.is_empty());
    if redirected {
        return Err(Error::CallSitesRedirected {
            function: function.name.clone(),
        });
    }
    let live = mem.read(address, size)?;
    if hex(&Sha256::digest(&live)) == expected {
        return Ok((live, true));
    }
    // Stacking: the function may hold calls an applied package redirected (to a function
    // too short for a jump), and its entry what a package lpkg applied wrote (a jump or new
    // code in place), over the expected bytes.
    let mut calls_as_they_were = live.clone();
    undo_redirected_calls(&mut calls_as_they_were, address, applied);
    if hex(&Sha256::digest(&calls_as_they_were)) == expected {
        return Ok((live, false));
    }
    for record in applied {
        for entry in record.body.entries.iter().filter(|e| e.address == address) {
            let (Some(written), Some(original)) = (entry.written(), unhex(&entry.original)) else {
                continue;
            };
            if written.len() != original.len() || mem.read(address, written.len())? != written {
                continue;
            }
            let mut old = calls_as_they_were.clone();
            let n = original.len().min(size);
            old[..n].copy_from_slice(&original[..n]);
            if hex(&Sha256::digest(&old)) == expected {
                return Ok((live, false));
            }
        }
    }
    Err(mismatch())
}

/// `code` (at `address`) with the displacement of every call site an applied package pointed
/// at its new code put back as it was, where it still leads there. Not in the first
/// `JUMP_LEN` bytes, which this package's jump would overwrite and its revert put back as it
/// found them: leading to a module that may be gone by then (the pre-image then differs).
fn undo_redirected_calls(code: &mut [u8], address: u64, applied: &[LiveRecord]) {
    let redirecting = applied.iter().flat_map(|r| &r.body.entries);
    for entry in redirecting.filter(|e| !e.call_sites.is_empty()) {
        for &field in &entry.call_sites {
            let Some(at) = field.checked_sub(address).map(|at| at as usize) else {
                continue;
            };
            if at < JUMP_LEN {
                continue;
            }
            let (Some(ours), Some(original)) = (
                call_displacement(field, entry.new_address),
                call_displacement(field, entry.address),
            ) else {
                continue;
            };
            if let Some(bytes) = code.get_mut(at..at.saturating_add(4)) {
                if *bytes == ours {
                    bytes.copy_from_slice(&original);
                }
            }
        }
    }
}

/// Verifies `package_bytes` against `trust` and applies the package to process `pid`.
pub fn apply(
    pid: Pid,
    package_bytes: &[u8],
    trust: &TrustStore,
    options: &ApplyOptions,
) -> Result<ApplyReport, Error> {
    apply_package(pid, &VerifiedPackage::open(package_bytes, trust)?, options)
}

/// A package whose signatures and digests were checked: verified once, applied to any number
/// of processes.
pub struct VerifiedPackage {
    package: Package,
    signers: Vec<String>,
}

impl VerifiedPackage {
    /// Verifies `package_bytes` against `trust`.
    pub fn open(package_bytes: &[u8], trust: &TrustStore) -> Result<VerifiedPackage, Error> {
        let (package, signers) = lpkg_format::open_verified(package_bytes, trust)?;
        let signers = signers.iter().map(|k| k.to_string()).collect();
        Ok(VerifiedPackage { package, signers })
    }

    /// The package id.
    pub fn id(&self) -> String {
        self.package.id()
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        self.package.manifest()
    }

    /// The trusted signers' key ids.
    pub fn signers(&self) -> &[String] {
        &self.signers
    }
}

/// Applies a verified package to process `pid`.
pub fn apply_package(
    pid: Pid,
    package: &VerifiedPackage,
    options: &ApplyOptions,
) -> Result<ApplyReport, Error> {
    apply_verified(pid, &package.package, package.signers.clone(), options)
}

/// The phases of an apply, as spec/apply-protocol.md names them: prepare (target, recovery,
/// requirements, pre-images, in-place candidates), load (map, resolve, link, write, record,
/// protect, register), switch (every thread stopped and clear), finish (detach or roll back).
fn apply_verified(
    pid: Pid,
    package: &Package,
    signers: Vec<String>,
    options: &ApplyOptions,
) -> Result<ApplyReport, Error> {
    let manifest = package.manifest();
    check_machine(pid, package)?;
    let symbols = package.symbol_map()?;
    let claim = Claim::take(pid, options.start_time, options.timeout)?;
    // Read once for the target, the mapped objects and the records.
    let maps = lpkg_kernel::maps::read(pid)?;
    let (target, mapped, target_file) = target::find(pid, &maps, &manifest.target)?;
    let resolver = target::Resolver::new(pid, &target, &symbols, &mapped);
    let mut plan = prepare(
        &claim,
        &maps,
        package,
        &symbols,
        signers,
        options,
        &target,
        &target_file,
        resolver,
    )?;
    drop(target_file);
    let mut tracee = claim.seize()?;
    let mut rollback = Rollback::new();
    let switched = load(&mut plan, &mut tracee, &mut rollback)
        .and_then(|loaded| switch(&mut plan, &loaded, &mut tracee, &mut rollback));
    finish(&plan, switched, tracee, rollback)
}

/// Refuses a package for another machine than the process runs (or than lpkg patches), before
/// anything in the process is touched; and a package whose module is for another machine
/// than its manifest says.
fn check_machine(pid: Pid, package: &Package) -> Result<(), Error> {
    let manifest = package.manifest();
    let named = manifest.target.machine.as_str();
    let wrong = |reason: String| Error::WrongMachine {
        machine: named.to_owned(),
        reason,
    };
    let Some(machine) = Machine::of_name(named) else {
        return Err(wrong(
            "not a machine lpkg patches (x86_64, i386): this package is for another machine".into(),
        ));
    };
    // A process that cannot be read is left to the claim, which says why.
    if let Ok(runs) = target::process_machine(pid) {
        if runs != Some(machine) {
            let runs = runs.map_or("another machine's", Machine::name);
            return Err(wrong(format!(
                "but process {pid} runs {runs} code: this package is for another machine"
            )));
        }
    }
    let module = crate::link::module_machine(package.module()?)?;
    if module != machine {
        return Err(Error::BadModule(format!(
            "the patch module is for {}, the manifest for {named}",
            module.name()
        )));
    }
    Ok(())
}

/// What the phases of one apply share: the verified package and what was found in the
/// process before anything in it changed.
struct Plan<'a> {
    id: String,
    manifest: &'a Manifest,
    /// The machine of the process, the package and its module (checked to be one).
    machine: Machine,
    module: &'a [u8],
    symbols: &'a lpkg_format::SymbolMap,
    signers: Vec<String>,
    options: &'a ApplyOptions,
    target: &'a TargetObject,
    resolver: target::Resolver<'a>,
    mem: Mem,
    layout: Layout,
    /// Records of the packages applied before this one.
    applied: Vec<LiveRecord>,
    /// Interrupted operations and orphaned modules cleaned up first.
    recovered: Vec<String>,
    /// One per replaced function, in manifest order; addresses in the module once linked.
    entries: Vec<Entry>,
    /// The entries that may get their new code in place.
    candidates: Vec<in_place::Candidate>,
    /// For each entry, why it gets a jump (`None`: a candidate, in place unless a check after
    /// the link fails).
    jumps: Vec<Option<in_place::Jump>>,
    /// The target's unwinders, when the module has CFI to register with them.
    unwinders: Option<Unwinders>,
}

/// Prepare: recover interrupted operations, check requirements and every pre-image, lay the
/// module out and pick the in-place candidates. Nothing of the target changes but recovery.
#[allow(clippy::too_many_arguments)] // the package, the process, and what was found in it
fn prepare<'a>(
    claim: &Claim,
    maps: &[lpkg_kernel::maps::MapEntry],
    package: &'a Package,
    symbols: &'a lpkg_format::SymbolMap,
    signers: Vec<String>,
    options: &'a ApplyOptions,
    target: &'a TargetObject,
    target_file: &[u8],
    mut resolver: target::Resolver<'a>,
) -> Result<Plan<'a>, Error> {
    let manifest = package.manifest();
    let module = package.module()?;
    let id = package.id();
    let pid = claim.pid();
    let (recovered, applied) = recover_interrupted(claim, maps, &id, options.timeout)?;
    check_requirements(pid, manifest, &applied)?;
    resolver.follow_redirected_calls(redirected_calls(&applied));
    if !options.allow_downgrade {
        check_no_downgrade(pid, manifest, &applied)?;
    }
    let mem = Mem::open(pid)?;
    let machine = crate::link::module_machine(module)?;
    if let Some(first) = wait_for_loader(pid, machine, &resolver, &mem, options.timeout)? {
        resolver.search_in_loader_order(&loaded_objects(&mem, machine, first));
    }
    let copies = resolver.read_only_copies(&crate::link::pc_relative_undefined(module)?, &mem)?;
    let layout = Layout::with_copies(module, copies)?;
    let has_cfi = crate::link::module_defines(module, lpkg_format::EH_OBJECT_SYMBOL);
    if let Some(linked) = &manifest.target.unwinder {
        check_linked_unwinder(resolver.target(), linked)?;
    }
    let unwinders = has_cfi.then(|| Unwinders::find(&resolver, manifest.target.unwinder.as_ref()));
    let mut plan = Plan {
        id,
        manifest,
        machine,
        module,
        symbols,
        signers,
        options,
        target,
        resolver,
        mem,
        layout,
        applied,
        recovered,
        entries: Vec::new(),
        candidates: Vec::new(),
        jumps: Vec::new(),
        unwinders,
    };
    (plan.entries, plan.candidates, plan.jumps) = plan_entries(&plan, target_file)?;
    Ok(plan)
}

/// Waits until the dynamic loader has loaded and relocated the process's libraries: a process
/// caught right after its exec (by `lpkg daemon`, or `--pid all`) may still be in ld.so, whose
/// libraries' IFUNC resolvers and code lpkg must not call before their relocation. glibc's
/// `_r_debug` (ld.so's debugger interface) says `RT_CONSISTENT` once they are; a process without
/// one (static) has nothing to wait for.
fn wait_for_loader(
    pid: Pid,
    machine: Machine,
    resolver: &target::Resolver,
    mem: &Mem,
    timeout: Duration,
) -> Result<Option<u64>, Error> {
    // `r_version` (int), `r_map` (pointer, after the int aligned to a pointer), `r_brk`
    // (address) and `r_state` (enum) of `struct r_debug`, with the process's pointer size.
    const VERSION: usize = 0;
    let pointer = machine.pointer_size();
    let map = pointer;
    let state = map + 2 * pointer;
    const RT_CONSISTENT: u32 = 0;
    let Some((_, r_debug)) = resolver.defining_object("_r_debug") else {
        return Ok(None);
    };
    let started = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        let bytes = mem.read(r_debug, state + 4)?;
        let word = |at: usize, len: usize| {
            bytes[at..at + len]
                .iter()
                .rev()
                .fold(0u64, |v, &b| v << 8 | u64::from(b))
        };
        if word(VERSION, 4) >= 1
            && word(map, pointer) != 0
            && word(state, 4) == u64::from(RT_CONSISTENT)
        {
            return Ok(Some(word(map, pointer)));
        }
        if started.elapsed() >= timeout {
            return Err(Error::StillLoading { pid });
        }
        std::thread::sleep(pause.min(timeout.saturating_sub(started.elapsed())));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// The addresses of the dynamic sections of the objects on the dynamic loader's list that
/// starts at `first` (`struct link_map`: `l_ld` and `l_next`, after `l_addr` and `l_name`,
/// each a pointer of the process's size), in its order: the order in which it looks symbols
/// up. The list is the target's: at most `LIMIT` entries are read, and a read that fails ends
/// it.
fn loaded_objects(mem: &Mem, machine: Machine, first: u64) -> Vec<u64> {
    const LIMIT: usize = 4096;
    let pointer = machine.pointer_size();
    let (l_ld, l_next) = (2 * pointer, 3 * pointer);
    let mut dynamic = Vec::new();
    let mut at = first;
    while at != 0 && dynamic.len() < LIMIT {
        let Ok(bytes) = mem.read(at, l_next + pointer) else {
            break;
        };
        let word = |offset: usize| {
            let mut le = [0u8; 8];
            le[..pointer].copy_from_slice(&bytes[offset..offset + pointer]);
            u64::from_le_bytes(le)
        };
        dynamic.push(word(l_ld));
        at = word(l_next);
    }
    dynamic
}

/// The functions of the target whose calls an applied package leads to its new code (too
/// short for a jump): their address, to the new code's. Calls of this package's module bind
/// there too; revert then keeps that package until this one is gone
/// ([`crate::revert::revert`]).
fn redirected_calls(applied: &[LiveRecord]) -> std::collections::BTreeMap<u64, u64> {
    (applied.iter().flat_map(|r| &r.body.entries))
        .filter(|e| !e.call_sites.is_empty())
        .map(|e| (e.address, e.new_address))
        .collect()
}

/// Rolls back what interrupted operations left (a record not `applied`); returns their ids
/// and the records of the packages applied now. The package itself applied already is an
/// error.
fn recover_interrupted(
    claim: &Claim,
    maps: &[lpkg_kernel::maps::MapEntry],
    id: &str,
    timeout: Duration,
) -> Result<(Vec<String>, Vec<LiveRecord>), Error> {
    let pid = claim.pid();
    let mut recovered = Vec::new();
    let records = records::read_in(pid, maps)?;
    for record in &records {
        if record.state.is_interrupted() {
            recover(claim, record, timeout)?;
            recovered.push(record.body.id.clone());
        } else if record.body.id == id && record.is_live() {
            // A record the live code does not bear out (forged, or drifted) blocks nothing.
            return Err(Error::AlreadyApplied {
                pid,
                id: id.to_owned(),
            });
        }
    }
    // A recovery takes records out and may change what the others' code shows: read again.
    match recovered.is_empty() {
        true => Ok((recovered, records)),
        false => Ok((recovered, records::read(pid)?)),
    }
}

fn check_requirements(pid: Pid, manifest: &Manifest, applied: &[LiveRecord]) -> Result<(), Error> {
    for required in &manifest.requires {
        if !applied
            .iter()
            .any(|r| r.body.id == required.id && r.is_live())
        {
            return Err(Error::MissingRequirement {
                pid,
                name: required.name.clone(),
                id: required.id.clone(),
            });
        }
    }
    Ok(())
}

/// A package never replaces a higher version of itself (same name) unless asked: an old fix
/// over a newer one would make the old code live again.
fn check_no_downgrade(pid: Pid, manifest: &Manifest, applied: &[LiveRecord]) -> Result<(), Error> {
    let package = &manifest.package;
    let higher = applied.iter().find(|r| {
        r.is_live()
            && r.body.name == package.name
            && compare_versions(&r.body.version, &package.version) == std::cmp::Ordering::Greater
    });
    match higher {
        Some(r) => Err(Error::Downgrade {
            pid,
            name: package.name.clone(),
            version: package.version.clone(),
            applied: r.body.version.clone(),
        }),
        None => Ok(()),
    }
}

/// Versions compared part by part (split at `.`, `-`, `+`, `~`): numbers as numbers, the rest
/// as text, a version with more parts after equal ones the higher (`1.2.1` > `1.2`).
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let parts =
        |v: &str| -> Vec<String> { v.split(['.', '-', '+', '~']).map(str::to_owned).collect() };
    let (a, b) = (parts(a), parts(b));
    for (x, y) in a.iter().zip(&b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order.is_ne() {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// One entry per replaced function, its live pre-image checked, and whether its new code may
/// go in place: the entries, the in-place candidates, and why each entry gets a jump.
#[allow(clippy::type_complexity)]
fn plan_entries(
    plan: &Plan,
    target_file: &[u8],
) -> Result<
    (
        Vec<Entry>,
        Vec<in_place::Candidate>,
        Vec<Option<in_place::Jump>>,
    ),
    Error,
> {
    let (mut entries, mut candidates, mut jumps) = (Vec::new(), Vec::new(), Vec::new());
    let finder = match plan.options.in_place {
        true => in_place::Finder::new(
            &plan.mem,
            plan.target,
            target_file,
            &plan.layout,
            plan.module,
        )?,
        false => None,
    };
    let replaced = plan
        .manifest
        .functions
        .iter()
        .filter(|f| f.action == Action::Replace);
    for (index, function) in replaced.enumerate() {
        let address = plan
            .target
            .bias
            .wrapping_add(function.old_offset.unwrap_or(0));
        check_in_target(plan.target, function, address)?;
        let (live, pristine) = check_preimage(&plan.mem, function, address, &plan.applied)?;
        let candidate = match (&finder, pristine) {
            _ if !plan.options.in_place => Err(in_place::Jump::Asked),
            (None, _) => Err(in_place::Jump::NoTargetCfi),
            (Some(_), false) => Err(in_place::Jump::Stacked),
            (Some(finder), true) => finder.candidate(index, function, address, &live),
        };
        match candidate {
            Ok(candidate) => {
                candidates.push(candidate);
                jumps.push(None);
            }
            Err(jump) => jumps.push(Some(jump)),
        }
        let (original, call_sites) =
            entry_bytes(plan, target_file, function, address, &live, pristine)?;
        entries.push(Entry {
            function: function.name.clone(),
            address,
            size: function.old_size.unwrap_or(0),
            original: hex(&original),
            new_address: 0,
            new_size: function.new_size,
            in_place: None,
            call_sites,
        });
    }
    Ok((entries, candidates, jumps))
}

/// What an entry that gets no new code in place overwrites: the `JUMP_LEN` bytes at its
/// start, running into the padding after a shorter function (which must be the target
/// file's, unless an applied package's jump is there); or, for a function too short for a
/// jump with no padding after it, nothing at its start and the displacement of each of its
/// call sites, each of which must lead to it now.
fn entry_bytes(
    plan: &Plan,
    target_file: &[u8],
    function: &lpkg_format::Function,
    address: u64,
    live: &[u8],
    pristine: bool,
) -> Result<(Vec<u8>, Vec<u64>), Error> {
    if live.len() >= JUMP_LEN {
        return Ok((live[..JUMP_LEN].to_vec(), Vec::new()));
    }
    if function.old_room.unwrap_or(0) >= JUMP_LEN as u64 {
        let bytes = plan.mem.read(address, JUMP_LEN)?;
        let from = address + live.len() as u64;
        let padding = &bytes[live.len()..];
        let in_file = in_place::file_bytes_at(
            target_file,
            from.wrapping_sub(plan.target.bias),
            padding.len(),
        );
        if pristine && in_file != Some(padding) {
            return Err(Error::PaddingChanged {
                function: function.name.clone(),
                address: from,
            });
        }
        return Ok((bytes, Vec::new()));
    }
    // Modules applied before reach the target through relocations the builder never saw.
    for record in &plan.applied {
        let len = record.body.module_len.min(crate::reloc::MAX_MODULE_SCAN) as usize;
        let code = plan.mem.read(record.body.module_address, len)?;
        if plan
            .machine
            .may_lead_to(&code, record.body.module_address, address)
        {
            return Err(Error::CalledFromModule {
                function: function.name.clone(),
                package: record.body.name.clone(),
            });
        }
    }
    let mut sites = Vec::new();
    for &offset in &function.call_sites {
        let field = plan.target.bias.wrapping_add(offset);
        let leads_here = call_displacement(field, address).map(|d| d.to_vec());
        let inside = field.checked_add(4).is_some_and(|end| {
            plan.target
                .code
                .iter()
                .any(|r| r.start <= field && end <= r.end)
        });
        if !inside || Some(plan.mem.read(field, 4)?) != leads_here {
            return Err(Error::CallSiteChanged {
                function: function.name.clone(),
                address: field,
            });
        }
        sites.push(field);
    }
    Ok((Vec::new(), sites))
}

/// Refuses a package whose linked-in unwinder (`target.unwinder`) is not in the target's code:
/// lpkg would call there.
fn check_linked_unwinder(target: &TargetObject, linked: &LinkedUnwinder) -> Result<(), Error> {
    for (function, offset) in [
        ("__register_frame_info", linked.register_frame_info),
        ("__deregister_frame_info", linked.deregister_frame_info),
    ] {
        if !in_code(target, target.bias.wrapping_add(offset), 1) {
            return Err(Error::BadManifest {
                function: function.to_owned(),
                reason: format!(
                    "the target's unwinder (target.unwinder, offset {offset:#x}) is not inside the target's code"
                ),
            });
        }
    }
    Ok(())
}

/// Whether `size` bytes at `address` lie in one executable mapping of the target.
fn in_code(target: &TargetObject, address: u64, size: u64) -> bool {
    address.checked_add(size).is_some_and(|end| {
        target
            .code
            .iter()
            .any(|r| r.start <= address && end <= r.end)
    })
}

/// A replaced function's old code (`old_size` bytes at `address`) and the padding after it
/// that new code or a jump may use (up to `old_room`) lie in the target's code: a signed
/// manifest is trusted for what to do, not for sizes lpkg reads, writes or guards.
fn check_in_target(
    target: &TargetObject,
    function: &lpkg_format::Function,
    address: u64,
) -> Result<(), Error> {
    let size = function
        .old_size
        .unwrap_or(0)
        .max(function.old_room.unwrap_or(0));
    if function.old_offset.is_some() && in_code(target, address, size) {
        return Ok(());
    }
    Err(Error::BadManifest {
        function: function.name.clone(),
        reason: format!(
            "its old code ({size} bytes at offset {:#x}) is not inside the target's code",
            function.old_offset.unwrap_or(0)
        ),
    })
}

/// What the load leaves for the switch.
struct Loaded {
    module_address: u64,
    record_address: u64,
    /// Check routines (module symbol, address), in manifest order.
    checks: Vec<(String, u64)>,
    /// Init routines (module symbol, address), in manifest order.
    init: Vec<(String, u64)>,
}

/// Load, with the worker thread stopped only while system calls or calls run in it (the
/// others keep running: nothing leads into the module yet): map the module, resolve and link
/// it, write it, record it (state `loading`), protect it, register its CFI.
fn load(plan: &mut Plan, tracee: &mut Tracee, rollback: &mut Rollback) -> Result<Loaded, Error> {
    tracee.stop_one()?;
    // Modules of applies killed before their record: removed like interrupted records.
    for orphan in remove_orphaned_modules(tracee)? {
        plan.recovered.push(orphan.id_prefix);
    }
    // Everything the load maps, in one borrow of the worker thread: the module (given its
    // protections now: its bytes are written through /proc/PID/mem, which writes read-only
    // pages as a debugger does) and the record, sized for the longest body the link can give.
    let record_room = record_room(plan);
    let (module_address, record_address) = tracee.batched(|t| {
        let (module_address, record_address) = map_module_and_record(plan, t, record_room)?;
        rollback.mapping(module_address, plan.layout.len());
        rollback.mapping(record_address, record_room);
        protect(t, module_address, &plan.layout)?;
        checkpoint::apply_step("apply:mapped")?;
        Ok::<_, Error>((module_address, record_address))
    })?;
    prepare_calls(plan, tracee)?;
    // The link runs with the thread running: nothing leads to the module yet.
    tracee.resume()?;
    let image = plan
        .layout
        .link(plan.module, module_address, &plan.resolver)?;
    let symbol = |name: &str| {
        image
            .symbols
            .get(name)
            .copied()
            .ok_or_else(|| Error::BadModule(format!("module does not define {name}")))
    };
    link_entries(plan, &image, &symbol)?;
    let routines = |kind| -> Result<Vec<(String, u64)>, Error> {
        plan.manifest
            .routines
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| Ok((r.module_symbol.clone(), symbol(&r.module_symbol)?)))
            .collect()
    };
    let checks = routines(RoutineKind::Check)?;
    let init = routines(RoutineKind::Init)?;
    let shadow_slot = image.symbols.get(lpkg_format::SHADOW_TABLE_SYMBOL).copied();
    let exits = routines(RoutineKind::Exit)?
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    let (eh_frame_address, eh_frame_len) = crate::record::eh_frame_of(&image.symbols);
    let (unwind_registration, llvm_registration) = match &plan.unwinders {
        Some(unwinders) if unwinders.any() => {
            unwinders.records(symbol(lpkg_format::EH_OBJECT_SYMBOL)?)
        }
        _ => (None, None),
    };
    let body = RecordBody {
        id: plan.id.clone(),
        name: plan.manifest.package.name.clone(),
        version: plan.manifest.package.version.clone(),
        signers: plan.signers.clone(),
        applied_at: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        sequence: plan
            .applied
            .iter()
            .map(|r| r.body.sequence)
            .max()
            .unwrap_or(0)
            + 1,
        target_path: plan.target.path.display().to_string(),
        module_address,
        module_len: plan.layout.len(),
        eh_frame_address,
        eh_frame_len,
        unwind_registration,
        llvm_registration,
        exit_routines: exits,
        shadows: shadow_slot.is_some(),
        requires: required_ids(plan.manifest),
        entries: plan.entries.clone(),
    };
    plan.mem.write(module_address, &image.bytes)?;
    let record = body.encode(State::Loading);
    if record.len() as u64 > record_room {
        return Err(Error::BadModule(format!(
            "its record ({} bytes) is longer than the {record_room} bytes reserved for it",
            record.len()
        )));
    }
    plan.mem.write(record_address, &record)?;
    checkpoint::apply_step("apply:recorded")?;
    let unwinders = (plan.unwinders.as_ref()).filter(|_| body.registrations().any());
    if shadow_slot.is_some() || unwinders.is_some() {
        tracee.stop_one()?;
        if let Some(slot) = shadow_slot {
            let (area, len, mapped) = crate::shadows::find_or_map(tracee, &plan.mem, plan.machine)?;
            if mapped {
                rollback.mapping(area, len);
            }
            plan.mem
                .write(slot, &crate::shadows::pointer(plan.machine, area))?;
        }
        if let Some(unwinders) = unwinders {
            rollback.registrations(&body, plan.options.timeout);
            body.registrations()
                .register(tracee, &plan.mem, unwinders, plan.options.timeout)?;
            checkpoint::apply_step("apply:registered")?;
        }
        tracee.resume()?;
    }
    Ok(Loaded {
        module_address,
        record_address,
        checks,
        init,
    })
}

/// The record's room: the length of the longest body the link can give, page-aligned. What
/// the link decides (addresses, which functions get their new code in place) is taken at its
/// longest: every address as wide as a TOML integer gets, every candidate in place.
fn record_room(plan: &Plan) -> u64 {
    const WIDEST: u64 = i64::MAX as u64;
    let mut entries = plan.entries.clone();
    for candidate in &plan.candidates {
        if let Some(entry) = entries.get_mut(candidate.index) {
            let len = candidate.original_len().max(entry.original.len() / 2);
            entry.original = "00".repeat(len);
            entry.in_place = Some(vec![0; len]);
        }
    }
    for entry in &mut entries {
        entry.new_address = WIDEST;
        entry.new_size = WIDEST;
    }
    let (unwind_registration, llvm_registration) = match &plan.unwinders {
        Some(unwinders) if unwinders.any() => unwinders.records(WIDEST),
        _ => (None, None),
    };
    let widest = RecordBody {
        id: plan.id.clone(),
        name: plan.manifest.package.name.clone(),
        version: plan.manifest.package.version.clone(),
        signers: plan.signers.clone(),
        applied_at: WIDEST,
        sequence: WIDEST,
        target_path: plan.target.path.display().to_string(),
        module_address: WIDEST,
        module_len: WIDEST,
        eh_frame_address: WIDEST,
        eh_frame_len: WIDEST,
        unwind_registration,
        llvm_registration,
        exit_routines: (plan.manifest.routines.iter())
            .filter(|r| r.kind == RoutineKind::Exit)
            .map(|_| WIDEST)
            .collect(),
        shadows: true,
        requires: required_ids(plan.manifest),
        entries,
    };
    page_align(widest.encode(State::Loading).len() as u64)
}

/// The ids of the packages `manifest` requires, as its record keeps them.
fn required_ids(manifest: &Manifest) -> Vec<String> {
    manifest.requires.iter().map(|r| r.id.clone()).collect()
}

/// Maps the record's `room` and the module near the target (the worker thread stopped, in a
/// batch of system calls): one mapping of one memfd named as the record, the record at file
/// offset 0, where lpkg finds records, and the module right after it, where it finds modules
/// (spec/apply-protocol.md, "The record"); the module's protections then split the mapping.
/// Returns the module's address, then the record's.
fn map_module_and_record(plan: &Plan, tracee: &mut Tracee, room: u64) -> Result<(u64, u64), Error> {
    let id = &plan.id[..16];
    let (near, len, rw) = (plan.target.base, plan.layout.len(), Prot::RW);
    // A module that starts with data would share the record's protection and merge with it:
    // it gets a memfd of its own, as modules had before they shared the record's.
    let code_first = plan.layout.regions().first().map(|r| r.2) == Some(Region::Text);
    if code_first {
        match tracee.memfd_map_near(&format!("{NAME_PREFIX}{id}"), near, room + len, rw) {
            Ok(record_address) => return Ok((record_address + room, record_address)),
            Err(lpkg_kernel::Error::SyscallFailed { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    // Named when the kernel lets a memfd be mapped, so that it is found if we die before the
    // record exists; anonymous where it does not.
    let module_address =
        match tracee.memfd_map_near(&format!("{MODULE_NAME_PREFIX}{id}"), near, len, rw) {
            Err(lpkg_kernel::Error::SyscallFailed { .. }) => tracee.map_near(near, len, rw)?,
            mapped => mapped?,
        };
    match tracee.memfd_map_private(&format!("{NAME_PREFIX}{id}"), room) {
        Ok(record_address) => Ok((module_address, record_address)),
        Err(error) => {
            let _ = tracee.munmap(module_address, len);
            Err(error.into())
        }
    }
}

/// Resolves the IFUNCs the module uses, and maps (or releases) the page calls return through
/// for the switch (the worker thread stopped).
fn prepare_calls(plan: &mut Plan, tracee: &mut Tracee) -> Result<(), Error> {
    let timeout = plan.options.timeout;
    for resolver_address in plan.resolver.ifunc_resolvers(plan.symbols)? {
        let implementation = tracee.call(resolver_address, &[], timeout)?;
        plan.resolver.set_ifunc(resolver_address, implementation);
    }
    // The calls' trampoline page is mapped or unmapped now, while only this thread is
    // stopped, not in the switch's pause: mapped for the init routines and the CFI
    // registration, unmapped (if the IFUNC resolvers mapped it) when there are none.
    let registers = plan.unwinders.as_ref().is_some_and(Unwinders::any);
    let inits = plan
        .manifest
        .routines
        .iter()
        .any(|r| matches!(r.kind, RoutineKind::Check | RoutineKind::Init));
    if registers || inits {
        tracee.map_call_trampoline()?;
    } else {
        tracee.release_call_trampoline()?;
    }
    Ok(())
}

/// Gives each entry its new function's address (within jump reach) and, where a candidate's
/// relinked body passed its checks, its new code in place.
fn link_entries(
    plan: &mut Plan,
    image: &crate::link::Image,
    symbol: &dyn Fn(&str) -> Result<u64, Error>,
) -> Result<(), Error> {
    let replaced = plan
        .manifest
        .functions
        .iter()
        .filter(|f| f.action == Action::Replace);
    let module = image.base..image.base + image.bytes.len() as u64;
    for (entry, function) in plan.entries.iter_mut().zip(replaced) {
        entry.new_address = symbol(&function.module_symbol)?;
        let new_end = entry.new_address.checked_add(function.new_size);
        if !new_end.is_some_and(|end| module.start <= entry.new_address && end <= module.end) {
            return Err(Error::BadManifest {
                function: function.name.clone(),
                reason: format!(
                    "its new code ({} bytes) is not inside the patch module",
                    function.new_size
                ),
            });
        }
        let reached = match entry.call_sites.is_empty() {
            true => plan
                .machine
                .jump(entry.address, entry.new_address)
                .is_some(),
            false => (entry.call_sites.iter()).all(|&field| {
                plan.machine
                    .reaches(field.wrapping_add(4), entry.new_address)
            }),
        };
        if !reached {
            return Err(Error::OutOfJumpReach {
                function: entry.function.clone(),
            });
        }
    }
    let new_addresses: Vec<u64> = plan.entries.iter().map(|e| e.new_address).collect();
    let candidates = std::mem::take(&mut plan.candidates);
    let (bodies, failed) = in_place::bodies(
        candidates,
        &new_addresses,
        image,
        &plan.layout,
        plan.module,
        &plan.resolver,
    );
    for body in bodies {
        let entry = &mut plan.entries[body.index];
        entry.in_place = Some(body.code.clone());
        entry.original = hex(&body.original);
        entry.call_sites.clear();
    }
    for (index, jump) in failed {
        plan.jumps[index] = Some(jump);
    }
    Ok(())
}

/// Gives each region of the linked module its protection: code r-x, read-only r--, data
/// rw-; never rwx.
fn protect(tracee: &mut Tracee, base: u64, layout: &Layout) -> Result<(), Error> {
    for (offset, len, region) in layout.regions() {
        let prot = match region {
            Region::Text => Prot::RX,
            Region::ReadOnly => Prot::READ,
            // Mapped read-write (`map_module_and_record`): nothing to change, no system call.
            Region::Data => continue,
        };
        tracee.mprotect(base + offset, len, prot)?;
    }
    Ok(())
}

/// What the switch leaves for the finish.
struct Switched {
    report: ApplyReport,
    /// When every thread was stopped and clear.
    paused: Instant,
    /// Threads that were running (not blocked in a system call): detached first.
    running: Vec<Pid>,
    /// The counters when the switch began.
    counters: Counters,
}

/// Switch, with every thread stopped and none inside a function being replaced: state
/// `switching`, each entry's jump or new code, the init routines, state `applied`.
fn switch(
    plan: &mut Plan,
    loaded: &Loaded,
    tracee: &mut Tracee,
    rollback: &mut Rollback,
) -> Result<Switched, Error> {
    let mut guarded: Vec<Guarded> = plan
        .entries
        .iter()
        .map(|e| Guarded {
            range: e.guarded_range(),
            function: e.function.clone(),
        })
        .collect();
    // Stacking: the code now running for a function is an earlier package's new code.
    let addresses: Vec<u64> = plan.entries.iter().map(|e| e.address).collect();
    guarded.extend(
        plan.applied
            .iter()
            .flat_map(|r| r.guarded_code(Some(&addresses))),
    );
    // Call sites first, a page at a time (a function may have thousands): one may lie in a
    // function this package also replaces, whose jump or new code in place then covers it
    // (its `original` holds the call as it was). Worked out before the world stops.
    let (sites, entries): (Vec<&Entry>, Vec<&Entry>) =
        (plan.entries.iter()).partition(|e| !e.call_sites.is_empty());
    let site_writes: Vec<Write> = (sites.iter())
        .flat_map(|e| e.writes().expect("reach checked above"))
        .collect();
    let changes: Vec<spans::Change> = (site_writes.iter())
        .map(|w| spans::Change {
            address: w.address,
            expected: None,
            replacement: &w.ours,
        })
        .collect();
    let counters = Counters::snapshot(tracee, &plan.mem);
    let mut cfi = CfiCache::load(&plan.mem, tracee.arch(), plan.resolver.objects())?;
    let attempts = stop_clear(tracee, &mut cfi, &guarded, plan.options.timeout)?;
    checkpoint::apply_step("apply:stopped")?;
    let paused = Instant::now();
    // Before anything leads into the module: a veto leaves the target as it was.
    for (name, address) in &loaded.checks {
        let value = tracee.call(*address, &[], plan.options.timeout)? as i32 as i64;
        if value != 0 {
            return Err(Error::CheckRefused {
                routine: name.clone(),
                value,
            });
        }
    }
    let state = loaded.record_address + STATE_OFFSET;
    plan.mem
        .write(state, &State::Switching.word().to_le_bytes())?;
    checkpoint::apply_step("apply:switching")?;
    spans::apply(&plan.mem, &changes, |address, before| {
        rollback.entry(address, before.to_vec())
    })?;
    if !changes.is_empty() {
        checkpoint::apply_step("apply:jump-1")?;
    }
    for (n, entry) in entries.into_iter().enumerate() {
        for write in entry.writes().expect("reach checked above, hex ours") {
            rollback.entry(write.address, write.original);
            plan.mem.write(write.address, &write.ours)?;
        }
        if n == 0 && changes.is_empty() {
            checkpoint::apply_step("apply:jump-1")?;
        }
    }
    checkpoint::apply_step("apply:jumps-written")?;
    for (name, address) in &loaded.init {
        let value = tracee.call(*address, &[], plan.options.timeout)? as i32 as i64;
        if value != 0 {
            return Err(Error::InitFailed {
                routine: name.clone(),
                value,
            });
        }
    }
    plan.mem
        .write(state, &State::Applied.word().to_le_bytes())?;
    checkpoint::apply_step("apply:applied")?;
    let since = counters.since(&Counters::snapshot(tracee, &plan.mem));
    let report = ApplyReport {
        id: plan.id.clone(),
        name: plan.manifest.package.name.clone(),
        version: plan.manifest.package.version.clone(),
        signers: plan.signers.clone(),
        entries: plan.entries.clone(),
        jumps: plan.jumps.clone(),
        module_address: loaded.module_address,
        unwind: plan.unwinders.as_ref().map(Unwinders::describe),
        recovered: plan.recovered.clone(),
        pause: Duration::ZERO,
        switch: SwitchProfile {
            threads: tracee.threads().len(),
            stops: attempts.stops,
            single_stops: attempts.single_stops,
            stacks: attempts.stacks,
            ptrace: 0,
            waits: 0,
            memory: since.memory,
            injected: since.injected,
        },
    };
    Ok(Switched {
        report,
        paused,
        running: attempts.running,
        counters,
    })
}

/// Finish: detach straight from the switch's stop (which resumes every thread, the running
/// ones first), or roll everything back.
fn finish(
    plan: &Plan,
    switched: Result<Switched, Error>,
    tracee: Tracee,
    rollback: Rollback,
) -> Result<ApplyReport, Error> {
    match switched {
        Ok(Switched {
            mut report,
            paused,
            running,
            counters,
        }) => {
            let before_detach = counters.since(&Counters::snapshot(&tracee, &plan.mem));
            let detached = tracee.detach_first(&running)?;
            // The detach consumes the tracee: add its one PTRACE_DETACH per thread here.
            report.switch.ptrace = before_detach.ptrace + report.switch.threads as u64;
            report.switch.waits = before_detach.waits;
            report.pause = detached.duration_since(paused);
            Ok(report)
        }
        Err(error) => {
            rollback.run(tracee, &plan.mem, plan.options.timeout);
            Err(error)
        }
    }
}

/// The tracer's and the memory handle's counters, for the switch's profile.
#[derive(Debug, Clone, Copy)]
struct Counters {
    ptrace: u64,
    waits: u64,
    memory: u64,
    injected: u64,
}

impl Counters {
    fn snapshot(tracee: &Tracee, mem: &Mem) -> Counters {
        Counters {
            ptrace: tracee.ptrace_requests(),
            waits: tracee.waits(),
            memory: mem.accesses(),
            injected: tracee.injected_syscalls(),
        }
    }

    /// What was counted from this snapshot to `now`.
    fn since(&self, now: &Counters) -> Counters {
        Counters {
            ptrace: now.ptrace - self.ptrace,
            waits: now.waits - self.waits,
            memory: now.memory - self.memory,
            injected: now.injected - self.injected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::compare_versions;
    use std::cmp::Ordering::*;

    #[test]
    fn versions_compare_part_by_part() {
        assert_eq!(compare_versions("2.0", "1.0"), Greater);
        assert_eq!(compare_versions("1.10", "1.9"), Greater);
        assert_eq!(compare_versions("1.2.1", "1.2"), Greater);
        assert_eq!(compare_versions("1.0", "1.0"), Equal);
        assert_eq!(compare_versions("1.0-2", "1.0-10"), Less);
        assert_eq!(compare_versions("1.0b", "1.0a"), Greater);
    }
}
