//! `lpkg apply`: verify, find the target, check pre-images, load, switch, record.

use std::time::{Duration, Instant, SystemTime};

use lpkg_format::{Action, Package, RoutineKind, TrustStore};
use lpkg_kernel::memory::Mem;
use lpkg_kernel::{Pid, Tracee};
use sha2::{Digest, Sha256};

use crate::link::{Layout, Region};
use crate::quiesce::{stop_clear, Guarded};
use crate::record::{
    hex, unhex, Entry, RecordBody, Registration, State, MODULE_NAME_PREFIX, NAME_PREFIX,
    STATE_OFFSET,
};
use crate::records::{self, LiveRecord};
use crate::registration::{self, Unwinder};
use crate::reloc::{jump, JUMP_LEN};
use crate::revert::{recover, remove_orphaned_modules, Rollback};
use crate::{checkpoint, in_place, target, Error};

/// How apply behaves.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// How long to keep retrying while a thread is inside a function being replaced.
    pub timeout: Duration,
    /// Write a new function's code over the old where that is safe ([`crate::in_place`])
    /// instead of a jump to it; when false, every entry gets a jump.
    pub in_place: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            timeout: Duration::from_secs(10),
            in_place: true,
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

const PROT_READ: i32 = 1;
const PROT_WRITE: i32 = 2;
const PROT_EXEC: i32 = 4;

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
    if size < JUMP_LEN {
        return Err(Error::Module(format!(
            "function {} is shorter than a jump",
            function.name
        )));
    }
    let live = mem.read(address, size)?;
    if hex(&Sha256::digest(&live)) == expected {
        return Ok((live, true));
    }
    // Stacking: the entry may hold what a package lpkg applied wrote (a jump or new code in
    // place) over the expected bytes.
    for record in applied {
        for entry in record.body.entries.iter().filter(|e| e.address == address) {
            let (Some(written), Some(original)) = (entry.written(), unhex(&entry.original)) else {
                continue;
            };
            if written.len() != original.len() || mem.read(address, written.len())? != written {
                continue;
            }
            let mut old = live.clone();
            let n = original.len().min(size);
            old[..n].copy_from_slice(&original[..n]);
            if hex(&Sha256::digest(&old)) == expected {
                return Ok((live, false));
            }
        }
    }
    Err(mismatch())
}

/// Verifies `package_bytes` against `trust` and applies the package to process `pid`.
pub fn apply(
    pid: Pid,
    package_bytes: &[u8],
    trust: &TrustStore,
    options: &ApplyOptions,
) -> Result<ApplyReport, Error> {
    let (package, signers) = lpkg_format::open_verified(package_bytes, trust)?;
    let signers: Vec<String> = signers.iter().map(|k| k.to_string()).collect();
    apply_verified(pid, &package, signers, options)
}

fn apply_verified(
    pid: Pid,
    package: &Package,
    signers: Vec<String>,
    options: &ApplyOptions,
) -> Result<ApplyReport, Error> {
    let manifest = package.manifest();
    let id = package.id();
    if manifest.target.machine != "x86_64" {
        return Err(Error::Module(format!(
            "package is for {}, not x86_64",
            manifest.target.machine
        )));
    }
    let module = package.module()?;
    let symbols = package.symbol_map()?;
    let (target, mapped, target_file) = target::find(pid, &manifest.target)?;

    let mut recovered = Vec::new();
    for record in records::read(pid)? {
        if record.state.is_interrupted() {
            recover(pid, &record, options.timeout)?;
            recovered.push(record.body.id.clone());
        } else if record.body.id == id {
            return Err(Error::AlreadyApplied { pid, id });
        }
    }
    let applied = records::read(pid)?;
    for required in &manifest.requires {
        if !applied
            .iter()
            .any(|r| r.body.id == required.id && r.state == State::Applied)
        {
            return Err(Error::MissingRequirement {
                pid,
                name: required.name.clone(),
                id: required.id.clone(),
            });
        }
    }

    let mem = Mem::open(pid)?;
    let resolver = target::Resolver::new(pid, &target, &symbols, &mapped);
    let copies = resolver.read_only_copies(&crate::link::pc_relative_undefined(module)?, &mem)?;
    let layout = Layout::with_copies(module, copies)?;
    let mut entries = Vec::new();
    let mut candidates = Vec::new();
    // Why each entry gets a jump, if it does (`None`: a candidate, in place unless a check
    // after the link fails).
    let mut jumps = Vec::new();
    let finder = match options.in_place {
        true => in_place::Finder::new(&mem, &target, &target_file, &layout, module)?,
        false => None,
    };
    for (index, function) in manifest
        .functions
        .iter()
        .filter(|f| f.action == Action::Replace)
        .enumerate()
    {
        let address = target.bias.wrapping_add(function.old_offset.unwrap_or(0));
        let (live, pristine) = check_preimage(&mem, function, address, &applied)?;
        let candidate = match (&finder, pristine) {
            _ if !options.in_place => Err(in_place::Jump::Asked),
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
        entries.push(Entry {
            function: function.name.clone(),
            address,
            size: function.old_size.unwrap_or(0),
            original: hex(&live[..JUMP_LEN]),
            new_address: 0,
            new_size: function.new_size,
            in_place: String::new(),
        });
    }
    drop(finder);
    drop(target_file);
    let has_cfi = crate::link::module_defines(module, lpkg_format::EH_OBJECT_SYMBOL);
    let unwinder = has_cfi.then(|| Unwinder::find(&resolver));
    let register = match &unwinder {
        Some(Unwinder::Libgcc { register, .. }) => Some(*register),
        _ => None,
    };

    let mut tracee = Tracee::seize(pid)?;
    let mut rollback = Rollback::new();
    let result = (|| -> Result<(ApplyReport, Instant, Vec<Pid>), Error> {
        // Load: only the thread that runs the injected syscalls is stopped, the others run.
        tracee.stop_one()?;
        // Modules of applies killed before their record: removed like interrupted records.
        for orphan in remove_orphaned_modules(&mut tracee)? {
            recovered.push(orphan.id_prefix);
        }
        // Named, so that it is found if we die before the record exists (an anonymous mapping
        // where the kernel refuses executable memfds).
        let name = format!("{MODULE_NAME_PREFIX}{}", &id[..16]);
        let rw = PROT_READ | PROT_WRITE;
        let module_address = match tracee.memfd_map_near(&name, target.base, layout.len(), rw) {
            Err(lpkg_kernel::Error::SyscallFailed { .. }) => {
                tracee.map_near(target.base, layout.len(), rw)?
            }
            mapped => mapped?,
        };
        for resolver_address in resolver.ifunc_resolvers(&symbols)? {
            resolver.set_ifunc(
                resolver_address,
                tracee.call(resolver_address, &[], options.timeout)?,
            );
        }
        // The calls' trampoline page is mapped or unmapped now, while only this thread is
        // stopped, not in the switch's pause: mapped for the init routines, unmapped (if the
        // IFUNC resolvers mapped it) when there are none.
        if register.is_some()
            || manifest
                .routines
                .iter()
                .any(|r| r.kind == RoutineKind::Init)
        {
            tracee.map_call_trampoline()?;
        } else {
            tracee.release_call_trampoline()?;
        }
        rollback.mapping(module_address, layout.len());
        checkpoint::apply_step("apply:mapped")?;
        tracee.resume()?;
        let image = layout.link(module, module_address, &resolver)?;
        let symbol = |name: &str| {
            image
                .symbols
                .get(name)
                .copied()
                .ok_or_else(|| Error::Module(format!("module does not define {name}")))
        };
        let replaced = manifest
            .functions
            .iter()
            .filter(|f| f.action == Action::Replace);
        for (entry, function) in entries.iter_mut().zip(replaced) {
            entry.new_address = symbol(&function.module_symbol)?;
            if jump(entry.address, entry.new_address).is_none() {
                return Err(Error::Module(format!(
                    "{} is out of jump reach of its patch",
                    entry.function
                )));
            }
        }
        let new_addresses: Vec<u64> = entries.iter().map(|e| e.new_address).collect();
        let candidates = std::mem::take(&mut candidates);
        let (bodies, failed) = in_place::bodies(
            candidates,
            &new_addresses,
            &image,
            &layout,
            module,
            &resolver,
        );
        for body in bodies {
            let entry = &mut entries[body.index];
            entry.in_place = hex(&body.code);
            entry.original = hex(&body.original);
        }
        for (index, jump) in failed {
            jumps[index] = Some(jump);
        }
        let routines = |kind| -> Result<Vec<(String, u64)>, Error> {
            manifest
                .routines
                .iter()
                .filter(|r| r.kind == kind)
                .map(|r| Ok((r.module_symbol.clone(), symbol(&r.module_symbol)?)))
                .collect()
        };
        let init = routines(RoutineKind::Init)?;
        let (eh_frame_address, eh_frame_len) = crate::record::eh_frame_of(&image.symbols);
        let unwind_registration = match &unwinder {
            Some(Unwinder::Libgcc {
                deregister,
                library,
                ..
            }) => Some(Registration {
                library: library.display().to_string(),
                deregister: *deregister,
                object: symbol(lpkg_format::EH_OBJECT_SYMBOL)?,
            }),
            _ => None,
        };
        let body = RecordBody {
            id: id.clone(),
            name: manifest.package.name.clone(),
            version: manifest.package.version.clone(),
            signers: signers.clone(),
            applied_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            sequence: applied.iter().map(|r| r.body.sequence).max().unwrap_or(0) + 1,
            target_path: target.path.display().to_string(),
            module_address,
            module_len: layout.len(),
            eh_frame_address,
            eh_frame_len,
            unwind_registration: unwind_registration.clone(),
            exit_routines: routines(RoutineKind::Exit)?
                .into_iter()
                .map(|(_, a)| a)
                .collect(),
            entries: entries.clone(),
        };
        let record = body.encode(State::Loading);
        mem.write(module_address, &image.bytes)?;

        tracee.stop_one()?;
        let record_len = page_align(record.len() as u64);
        let record_address =
            tracee.memfd_map_private(&format!("{NAME_PREFIX}{}", &id[..16]), record_len)?;
        rollback.mapping(record_address, record_len);
        mem.write(record_address, &record)?;
        checkpoint::apply_step("apply:recorded")?;
        for &(offset, len, region) in &image.regions {
            let prot = match region {
                Region::Text => PROT_READ | PROT_EXEC,
                Region::ReadOnly => PROT_READ,
                Region::Data => PROT_READ | PROT_WRITE,
            };
            tracee.mprotect(module_address + offset, len, prot)?;
        }
        if let (Some(registration), Some(register)) = (&unwind_registration, register) {
            rollback.registration(registration.clone(), eh_frame_address, options.timeout);
            registration::register(
                &mut tracee,
                register,
                registration,
                eh_frame_address,
                options.timeout,
            )?;
            checkpoint::apply_step("apply:registered")?;
        }
        tracee.resume()?;

        // Switch: every thread stopped, none inside a function being replaced.
        let mut guarded: Vec<Guarded> = entries
            .iter()
            .map(|e| Guarded {
                range: e.guarded_range(),
                function: e.function.clone(),
            })
            .collect();
        // Stacking: the code now running for a function is an earlier package's new code.
        let addresses: Vec<u64> = entries.iter().map(|e| e.address).collect();
        guarded.extend(
            applied
                .iter()
                .flat_map(|r| r.guarded_code(Some(&addresses))),
        );
        let (ptrace, waits, memory) = (tracee.ptrace_requests(), tracee.waits(), mem.accesses());
        let injected = tracee.injected_syscalls();
        let attempts = stop_clear(&mut tracee, &guarded, options.timeout)?;
        checkpoint::apply_step("apply:stopped")?;
        let paused = Instant::now();
        let mut switch = SwitchProfile {
            threads: tracee.threads().len(),
            stops: attempts.stops,
            single_stops: attempts.single_stops,
            stacks: attempts.stacks,
            ptrace,
            waits,
            memory,
            injected,
        };
        mem.write(
            record_address + STATE_OFFSET,
            &State::Switching.word().to_le_bytes(),
        )?;
        checkpoint::apply_step("apply:switching")?;
        for (n, entry) in entries.iter().enumerate() {
            let bytes = entry.written().expect("reach checked above, hex ours");
            rollback.entry(
                entry.address,
                unhex(&entry.original).expect("we wrote this hex"),
            );
            mem.write(entry.address, &bytes)?;
            if n == 0 {
                checkpoint::apply_step("apply:jump-1")?;
            }
        }
        checkpoint::apply_step("apply:jumps-written")?;
        for (name, address) in init {
            let value = tracee.call(address, &[], options.timeout)? as i32 as i64;
            if value != 0 {
                return Err(Error::InitFailed {
                    routine: name,
                    value,
                });
            }
        }
        mem.write(
            record_address + STATE_OFFSET,
            &State::Applied.word().to_le_bytes(),
        )?;
        checkpoint::apply_step("apply:applied")?;
        // Detached below, straight from this stop: detaching resumes every thread.
        switch.memory = mem.accesses() - switch.memory;
        switch.injected = tracee.injected_syscalls() - switch.injected;
        let report = ApplyReport {
            id: id.clone(),
            name: manifest.package.name.clone(),
            version: manifest.package.version.clone(),
            signers: signers.clone(),
            entries: entries.clone(),
            jumps: jumps.clone(),
            module_address,
            unwind: unwinder.as_ref().map(|u| match u {
                Unwinder::Libgcc { library, .. } => Ok(library.display().to_string()),
                Unwinder::Missing(why) => Err(why.clone()),
            }),
            recovered: recovered.clone(),
            pause: Duration::ZERO,
            switch,
        };
        Ok((report, paused, attempts.running))
    })();
    match result {
        Ok((mut report, paused, running)) => {
            let (ptrace, waits) = (tracee.ptrace_requests(), tracee.waits());
            let detached = tracee.detach_first(&running)?;
            // The detach consumes the tracee: add its one PTRACE_DETACH per thread here.
            report.switch.ptrace = ptrace - report.switch.ptrace + report.switch.threads as u64;
            report.switch.waits = waits - report.switch.waits;
            report.pause = detached.duration_since(paused);
            Ok(report)
        }
        Err(error) => {
            rollback.run(tracee, &mem);
            Err(error)
        }
    }
}
