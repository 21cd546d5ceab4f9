//! Stopping the process at a moment when no thread is inside code about to change.

use std::ops::Range;
use std::time::{Duration, Instant};

use lpkg_kernel::{Pid, Tracee};

use crate::unwind::CfiCache;
use crate::Error;

/// A range of code no thread may be executing at switch time, and what to call it.
#[derive(Debug, Clone)]
pub struct Guarded {
    /// Addresses of the code.
    pub range: Range<u64>,
    /// The function it belongs to, for messages.
    pub function: String,
}

/// Stops every thread of `tracee` with none of them inside `guarded`, retrying with backoff
/// (the process runs between attempts) until `timeout`. On success the process is stopped.
/// Returns what it took, for profiles.
///
/// A thread found busy is likely busy again at the next attempt (a hot function): it is then
/// stopped and checked alone first, and the others are stopped only once it is clear, so a
/// failed attempt costs one thread stop instead of a stop of the whole process. The main
/// thread, the one most often running the program's hot loop, is the first suspect.
pub fn stop_clear(
    tracee: &mut Tracee,
    guarded: &[Guarded],
    timeout: Duration,
) -> Result<Attempts, Error> {
    // Parse the CFI while the process still runs: the stopped time is only stack copies.
    let mut cfi = CfiCache::load(tracee.pid())?;
    let started = Instant::now();
    // Short at first: a retry on a hot function stops one thread for a few microseconds.
    let mut backoff = Duration::from_micros(100);
    let mut attempts = Attempts::default();
    let mut suspect: Option<Pid> = Some(tracee.pid());
    loop {
        attempts.running.clear();
        // Some(true): the suspect was stopped alone and is clear; Some(false): still busy.
        let suspect_clear = match suspect {
            Some(tid) if tracee.stop_thread(tid)? => {
                attempts.single_stops += 1;
                Some(
                    busy_threads(tracee, &[tid], &mut cfi, guarded, true, &mut attempts)?
                        .is_empty(),
                )
            }
            _ => None,
        };
        if suspect_clear != Some(false) {
            tracee.stop()?;
            attempts.stops += 1;
            // A suspect found clear stays stopped from its check on: no need to check it again.
            let others: Vec<Pid> = tracee
                .threads()
                .into_iter()
                .filter(|&tid| suspect_clear.is_none() || Some(tid) != suspect)
                .collect();
            // Resume at the first busy thread: the retry does not need the others' reasons.
            let busy = busy_threads(tracee, &others, &mut cfi, guarded, true, &mut attempts)?;
            match busy.first() {
                None => return Ok(attempts),
                Some(&(tid, _)) => suspect = Some(tid),
            }
        }
        if lpkg_kernel::interrupt::requested() {
            tracee.resume()?;
            return Err(Error::Interrupted {
                step: "waiting for busy threads",
            });
        }
        if started.elapsed() >= timeout {
            // Name every busy thread, all stopped.
            tracee.stop()?;
            let all = tracee.threads();
            attempts.running.clear();
            let busy = busy_threads(tracee, &all, &mut cfi, guarded, false, &mut attempts)?;
            if busy.is_empty() {
                return Ok(attempts);
            }
            return Err(Error::Busy {
                waited: started.elapsed(),
                busy: busy.into_iter().map(|(_, why)| why).collect(),
            });
        }
        tracee.resume()?;
        std::thread::sleep(backoff.min(timeout.saturating_sub(started.elapsed())));
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
}

/// What [`stop_clear`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Threads that were running (not blocked in a system call) when stopped clear, to be
    /// resumed first ([`Tracee::detach_first`]).
    pub running: Vec<Pid>,
    /// Stops of the whole process, the successful one included.
    pub stops: u64,
    /// Stops of a thread found busy before, alone.
    pub single_stops: u64,
    /// Thread stacks read and unwound (one `process_vm_readv` each).
    pub stacks: u64,
}

/// Every thread that executes, or will return into, guarded code, with why, for the message;
/// only the first one with `first_only`.
fn busy_threads(
    tracee: &Tracee,
    tids: &[Pid],
    cfi: &mut CfiCache,
    guarded: &[Guarded],
    first_only: bool,
    attempts: &mut Attempts,
) -> Result<Vec<(Pid, String)>, Error> {
    let mut busy = Vec::new();
    for &tid in tids {
        if first_only && !busy.is_empty() {
            break;
        }
        let regs = tracee.registers(tid)?;
        if regs.syscall_nr().is_none() {
            attempts.running.push(tid);
        }
        let trace = cfi.backtrace(&regs);
        attempts.stacks += 1;
        // Read only for a message: /proc costs three system calls per thread.
        let name = || tracee.thread_name(tid);
        let hit = trace.frames.iter().enumerate().find_map(|(depth, f)| {
            // A return address may be one past the function's end (a call as last insn).
            let probe = if f.executing { f.pc } else { f.pc - 1 };
            guarded
                .iter()
                .find(|g| g.range.contains(&probe))
                .map(|g| (depth, *f, g))
        });
        match hit {
            Some((0, f, g)) => busy.push((tid, format!(
                "thread {tid} ({}) is executing {} (pc {:#x})",
                name(),
                g.function,
                f.pc
            ))),
            Some((_, f, g)) if regs.syscall_nr().is_some() => busy.push((tid, format!(
                "thread {tid} ({}) is blocked in a system call inside {} (return address {:#x}): it will not leave until the call returns",
                name(), g.function, f.pc
            ))),
            Some((_, f, g)) => busy.push((tid, format!(
                "thread {tid} ({}) will return into {} (return address {:#x})",
                name(), g.function, f.pc
            ))),
            None if !trace.complete => busy.push((tid, format!(
                "thread {tid} ({}) cannot be unwound past {:#x} ({}): it may be inside a function being replaced",
                name(),
                trace.frames.last().map_or(0, |f| f.pc),
                trace.stopped
            ))),
            None => {}
        }
    }
    Ok(busy)
}
