//! `lpkg revert`, the rollback of a failed apply, and the recovery of interrupted operations.

use std::time::Duration;

use lpkg_kernel::memory::Mem;
use lpkg_kernel::{Pid, Tracee};

use crate::claim::Claim;
use crate::quiesce::stop_clear;
use crate::record::{Entry, RecordBody, State, STATE_OFFSET};
use crate::records::{self, LiveRecord, OrphanModule};
use crate::reloc::Machine;
use crate::unwind::CfiCache;
use crate::{checkpoint, spans, Error};

/// Undo log of an apply in progress: entries written, mappings made and the CFI registered,
/// undone in reverse.
#[derive(Default)]
pub struct Rollback {
    entries: Vec<(u64, Vec<u8>)>,
    mappings: Vec<(u64, u64)>,
    /// The record of the module whose CFI gets registered, and the timeout of the calls.
    registered: Option<(RecordBody, Duration)>,
}

impl Rollback {
    /// An empty log.
    pub fn new() -> Rollback {
        Rollback::default()
    }

    /// Remembers a mapping to remove.
    pub fn mapping(&mut self, address: u64, len: u64) {
        self.mappings.push((address, len));
    }

    /// Remembers that the module's CFI is about to be registered as `body` says.
    pub fn registrations(&mut self, body: &RecordBody, timeout: Duration) {
        self.registered = Some((body.clone(), timeout));
    }

    /// Remembers the original bytes of an entry about to be overwritten.
    pub fn entry(&mut self, address: u64, original: Vec<u8>) {
        self.entries.push((address, original));
    }

    /// Restores every entry, removes every mapping and detaches (from that stop: detaching
    /// resumes every thread). Best effort: a failure here leaves the record in the target, so
    /// `lpkg revert` can finish the job.
    pub fn run(self, mut tracee: Tracee, mem: &Mem, timeout: Duration) {
        // The command's own deadline may have passed (that may be why it rolls back): the
        // rollback gets a timeout of its own.
        tracee.set_deadline(std::time::Instant::now().checked_add(timeout));
        if tracee.stop().is_err() {
            return;
        }
        for (address, original) in self.entries.iter().rev() {
            let _ = mem.write(*address, original);
        }
        if let Some((body, timeout)) = &self.registered {
            // Nothing leads into the module any more: the others go on (a lock of the
            // unwinder one of them holds is released), the worker deregisters. Unmapped
            // while the unwinder still lists it, the module would crash the next exception:
            // when this fails, the mappings stay (and the record, for revert).
            let deregistered = tracee
                .detach_others_first(&[])
                .map_err(Error::from)
                .and_then(|_| body.registrations().deregister(&mut tracee, mem, *timeout));
            if deregistered.is_err() {
                let _ = tracee.detach();
                return;
            }
        }
        for (address, len) in self.mappings.iter().rev() {
            let _ = tracee.munmap(*address, *len);
        }
        let _ = tracee.detach();
    }
}

/// What revert did for one package.
#[derive(Debug, Clone)]
pub struct RevertReport {
    /// The package id.
    pub id: String,
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// The state the package was in (an interrupted operation is completed as a rollback).
    pub state: &'static str,
    /// How many entries got their original bytes back.
    pub restored: usize,
}

/// Which packages to revert.
#[derive(Debug, Clone)]
pub enum Selection {
    /// The most recently applied package.
    Latest,
    /// The package whose id starts with this prefix.
    Id(String),
    /// Every package, newest first.
    All,
}

/// Unmaps the patch modules that no record claims ([`records::orphaned_modules`]), with only
/// the worker thread of `tracee` stopped: no thread can be running them. Returns them.
pub fn remove_orphaned_modules(tracee: &mut Tracee) -> Result<Vec<OrphanModule>, Error> {
    let orphans = records::orphaned_modules_in(tracee.pid(), &tracee.maps()?)?;
    if !orphans.is_empty() {
        tracee.stop_one()?;
        for orphan in &orphans {
            tracee.munmap(orphan.address, orphan.len)?;
        }
    }
    Ok(orphans)
}

/// Reverts packages applied to `pid`. Patch modules left without a record by an apply that
/// was killed early go first, reported with the state `unrecorded module`.
pub fn revert(
    pid: Pid,
    selection: &Selection,
    timeout: Duration,
) -> Result<Vec<RevertReport>, Error> {
    revert_process(pid, None, selection, timeout)
}

/// [`revert`], in process `pid` only if it is the one that started at `start_time` (as a scan
/// of the host saw it): another process that got its pid since is left alone.
pub fn revert_process(
    pid: Pid,
    start_time: Option<u64>,
    selection: &Selection,
    timeout: Duration,
) -> Result<Vec<RevertReport>, Error> {
    let claim = Claim::take(pid, start_time, timeout)?;
    let mut reports = Vec::new();
    if !records::orphaned_modules(pid)?.is_empty() {
        let mut tracee = claim.seize()?;
        let removed = remove_orphaned_modules(&mut tracee);
        tracee.detach()?;
        reports.extend(removed?.into_iter().map(|orphan| RevertReport {
            id: orphan.id_prefix,
            name: "(module without record)".to_owned(),
            version: String::new(),
            state: "unrecorded module",
            restored: 0,
        }));
    }
    let records = records::read(pid)?;
    if records.is_empty() {
        if !reports.is_empty() {
            return Ok(reports);
        }
        return Err(Error::NothingToRevert(format!(
            "no lpkg package is applied to process {pid}"
        )));
    }
    // A record the code contradicts is reverted (restoring what still holds lpkg's bytes)
    // only when its module is one lpkg mapped for the package: the process may have written
    // it, naming any memory as the module.
    let contradicted = |r: &LiveRecord| {
        matches!(r.live, records::Live::Drifted(_))
            && !records::module_is_lpkgs(pid, &r.body).unwrap_or(false)
    };
    let chosen: Vec<&LiveRecord> = match selection {
        Selection::Latest => records.iter().rev().take(1).collect(),
        // Records the code contradicts are left (`list` shows them), the others reverted.
        Selection::All => {
            let chosen: Vec<&LiveRecord> =
                records.iter().rev().filter(|r| !contradicted(r)).collect();
            if chosen.is_empty() {
                return Err(Error::NothingToRevert(format!(
                    "the {} record(s) in process {pid} disagree with its code and name memory \
                     that is not lpkg's as their module: the process wrote them; `lpkg list \
                     --pid {pid}` shows them",
                    records.len()
                )));
            }
            chosen
        }
        Selection::Id(prefix) => {
            // An empty prefix names no package (every id starts with it).
            let matching: Vec<&LiveRecord> = records
                .iter()
                .filter(|r| !prefix.is_empty() && r.body.id.starts_with(prefix.as_str()))
                .collect();
            match matching.len() {
                0 => {
                    return Err(Error::NothingToRevert(format!(
                        "no package with id {prefix} is applied to process {pid}"
                    )))
                }
                1 => matching,
                _ if matching.iter().any(|r| r.body.id != matching[0].body.id) => {
                    return Err(Error::NothingToRevert(format!(
                        "id {prefix} is ambiguous: give more digits"
                    )))
                }
                // lpkg writes one record per package: the process wrote the others. The one
                // its code does not contradict is the package's.
                n => {
                    let live: Vec<&LiveRecord> = (matching.into_iter())
                        .filter(|r| !matches!(r.live, records::Live::Drifted(_)))
                        .collect();
                    if live.len() != 1 {
                        return Err(Error::NothingToRevert(format!(
                            "process {pid} has {n} records of package {prefix} and {} of them \
                             agree with its code: lpkg writes one, so the process wrote the \
                             others; `lpkg list --pid {pid}` shows them",
                            live.len()
                        )));
                    }
                    live
                }
            }
        }
    };
    if let [one] = chosen.as_slice() {
        if let (records::Live::Drifted(functions), true) = (&one.live, contradicted(one)) {
            return Err(Error::BadRecord {
                pid,
                address: one.address,
                reason: format!(
                    "package {} {} disagrees with the live code of {} and names as its module \
                     memory that is not lpkg's: the process wrote the record; nothing was \
                     reverted",
                    one.body.name,
                    one.body.version,
                    functions.join(", ")
                ),
            });
        }
        // A package that a newer one patched over must wait for the newer one.
        for newer in records
            .iter()
            .filter(|r| r.body.sequence > one.body.sequence)
        {
            if newer
                .body
                .entries
                .iter()
                .any(|n| one.body.entries.iter().any(|o| o.address == n.address))
            {
                return Err(Error::Stacking(format!(
                    "package {} {} replaces functions that package {} {} replaced again: revert {} first",
                    one.body.name, one.body.version, newer.body.name, newer.body.version, newer.body.name
                )));
            }
        }
        check_no_newer_calls(pid, one, &records)?;
        // A package built on this one (its `requires`) was made for this one's code, as
        // apply wants it there first: it goes first. A record the code contradicts (one the
        // process wrote) holds nothing back.
        let dependent = records.iter().find(|r| {
            r.state == State::Applied
                && !matches!(r.live, records::Live::Drifted(_))
                && r.body.requires.contains(&one.body.id)
        });
        if let Some(dependent) = dependent {
            return Err(Error::Stacking(format!(
                "package {} {} requires package {} {}: revert {} first",
                dependent.body.name,
                dependent.body.version,
                one.body.name,
                one.body.version,
                dependent.body.name
            )));
        }
    }
    checkpoint::reached(checkpoint::REVERT_READ);
    for record in chosen {
        reports.push(recover(&claim, record, timeout)?);
    }
    Ok(reports)
}

/// A newer package's module may call the new code of a function whose calls `one` leads there
/// (too short for a jump: the newer package's calls of it were bound to that code): `one`
/// must wait for it.
fn check_no_newer_calls(pid: Pid, one: &LiveRecord, records: &[LiveRecord]) -> Result<(), Error> {
    let redirecting: Vec<&Entry> = (one.body.entries.iter())
        .filter(|e| !e.call_sites.is_empty())
        .collect();
    if redirecting.is_empty() {
        return Ok(());
    }
    let mem = Mem::open(pid)?;
    // Modules hold addresses as the process's machine writes them; one that cannot be told
    // is searched both ways.
    let machines = match crate::target::process_machine(pid) {
        Ok(Some(machine)) => vec![machine],
        _ => vec![Machine::X86_64, Machine::I386],
    };
    for newer in records
        .iter()
        .filter(|r| r.body.sequence > one.body.sequence)
    {
        let len = newer.body.module_len.min(crate::reloc::MAX_MODULE_SCAN) as usize;
        let module = mem.read(newer.body.module_address, len)?;
        let called = (redirecting.iter()).find(|e| {
            machines
                .iter()
                .any(|m| m.may_lead_to(&module, newer.body.module_address, e.new_address))
        });
        if let Some(entry) = called {
            return Err(Error::Stacking(format!(
                "package {} {} may call the new code of {} in package {} {}: revert {} first",
                newer.body.name,
                newer.body.version,
                entry.function,
                one.body.name,
                one.body.version,
                newer.body.name
            )));
        }
    }
    Ok(())
}

/// Takes one package out of `pid`, whatever state it was left in: runs its exit routines if it
/// was applied, restores every entry that still holds its jump, removes its mappings.
pub(crate) fn recover(
    claim: &Claim,
    record: &LiveRecord,
    timeout: Duration,
) -> Result<RevertReport, Error> {
    let pid = claim.pid();
    let body = &record.body;
    let mem = Mem::open(pid)?;
    let mut tracee = claim.seize()?;
    let guarded = record.guarded_code(None);
    let exit_routines = record.state == State::Applied && !body.exit_routines.is_empty();
    let calls = exit_routines || body.registrations().any();
    let result = (|| -> Result<(usize, Vec<Pid>), Error> {
        if calls {
            // The page the exit routines return through is mapped with one thread stopped,
            // not in the pause of every thread.
            tracee.stop_one()?;
            tracee.map_call_trampoline()?;
            tracee.resume()?;
        }
        let mut cfi = CfiCache::load(&mem, tracee.arch(), &[])?;
        let attempts = stop_clear(&mut tracee, &mut cfi, &guarded, timeout)?;
        checkpoint::reached("revert:stopped");
        mem.write(
            record.address + STATE_OFFSET,
            &State::Reverting.word().to_le_bytes(),
        )?;
        checkpoint::reached("revert:reverting");
        if exit_routines {
            for &routine in &body.exit_routines {
                tracee.call(routine, &[], timeout)?;
            }
        }
        let restored = restore_entries(pid, record, &mem)?;
        Ok((restored, attempts.running))
    })();
    match result {
        Ok((restored, running)) => {
            // Straight from the stop: detaching resumes every thread, the running ones first.
            // The worker thread stays stopped alone to unmap what no thread can reach any
            // more (no jump leads there, no thread is in it or returns into it): those system
            // calls are not in the others' pause.
            tracee.detach_others_first(&running)?;
            let unmapped = (|| -> Result<(), Error> {
                // A revert killed once it unmapped the module had taken its CFI out of the
                // unwinders first; the state words that say so went with the module (and
                // what the process mapped there since is its own).
                let module_mapped =
                    (lpkg_kernel::maps::read(pid)?.iter()).any(|m| m.contains(body.module_address));
                if module_mapped && body.registrations().any() {
                    body.registrations()
                        .deregister(&mut tracee, &mem, timeout)?;
                    checkpoint::reached("revert:deregistered");
                }
                if module_mapped {
                    tracee.munmap(body.module_address, body.module_len)?;
                }
                checkpoint::reached("revert:module-unmapped");
                tracee.munmap(record.address, record.len)?;
                if body.shadows {
                    crate::shadows::release_if_unused(&mut tracee)?;
                }
                Ok(())
            })();
            tracee.detach()?;
            unmapped?;
            Ok(RevertReport {
                id: body.id.clone(),
                name: body.name.clone(),
                version: body.version.clone(),
                state: record.state.name(),
                restored,
            })
        }
        Err(error) => {
            // From the stop if the process is stopped: no second stop to detach.
            let _ = tracee.detach();
            Err(error)
        }
    }
}

/// Puts back what each entry of `record` wrote, where its bytes are still there: jumps and new
/// code first, newest entry first, then the call sites a page at a time (the reverse of the
/// apply's order: a call site may lie under another entry's jump, whose original bytes hold
/// it as it was). Returns how many entries it restored.
fn restore_entries(pid: Pid, record: &LiveRecord, mem: &Mem) -> Result<usize, Error> {
    let bad = |entry: &Entry| Error::BadRecord {
        pid,
        address: record.address,
        reason: format!("entry {} has bad new or original bytes", entry.function),
    };
    let (sites, entries): (Vec<&Entry>, Vec<&Entry>) =
        (record.body.entries.iter()).partition(|e| !e.call_sites.is_empty());
    let mut restored = 0;
    for entry in entries.into_iter().rev() {
        let mut wrote = false;
        for write in entry.writes().ok_or_else(|| bad(entry))?.iter().rev() {
            if mem.read(write.address, write.ours.len())? == write.ours {
                mem.write(write.address, &write.original)?;
                wrote = true;
            }
        }
        if wrote {
            restored += 1;
            if restored == 1 {
                checkpoint::reached("revert:restored-1");
            }
        }
    }
    let mut writes = Vec::new();
    for (n, entry) in sites.iter().enumerate() {
        writes.extend(
            entry
                .writes()
                .ok_or_else(|| bad(entry))?
                .into_iter()
                .map(|w| (n, w)),
        );
    }
    let changes: Vec<spans::Change> = (writes.iter())
        .map(|(_, w)| spans::Change {
            address: w.address,
            expected: Some(&w.ours),
            replacement: &w.original,
        })
        .collect();
    let made = spans::apply(mem, &changes, |_, _| {})?;
    let mut sites_restored = vec![false; sites.len()];
    for ((n, _), made) in writes.iter().zip(made) {
        sites_restored[*n] |= made;
    }
    Ok(restored + sites_restored.iter().filter(|&&r| r).count())
}
