//! Stopping the process at a moment when no thread is inside code about to change.

use std::time::{Duration, Instant};

use lpkg_kernel::{Pid, Tracee};

use crate::record::Guarded;
use crate::unwind::CfiCache;
use crate::Error;

/// Longest run of back-to-back checks of a suspect found executing guarded code, before the
/// usual backoff: a hot function is left for a moment many times a second, so enough quick
/// looks find the thread outside.
const QUICK_CHECKS: u32 = 1000;
/// The pause between two quick checks (timer slack adds about as much): the suspect runs at
/// least about three quarters of the time while it is being checked.
const QUICK_INTERVAL: Duration = Duration::from_micros(50);

/// Stops every thread of `tracee` with none of them inside `guarded`, retrying with backoff
/// (the process runs between attempts) until `timeout`. On success the process is stopped.
/// Returns what it took, for profiles.
///
/// A thread found busy is likely busy again at the next attempt (a hot function): it is then
/// stopped and checked alone first, and the others are stopped only once it is clear, so a
/// failed attempt costs one thread stop instead of a stop of the whole process. The main
/// thread, the one most often running the program's hot loop, is the first suspect. A
/// suspect found executing (not blocked in a system call) is checked again and again at a
/// short interval ([`QUICK_CHECKS`]) before the backoff: a function that keeps its thread
/// 99 % of the time is only left for moments, which rare attempts would almost never see.
///
/// `cfi` is the process's, parsed while it still runs (`CfiCache::load`): the stopped time is
/// only stack copies.
pub fn stop_clear(
    tracee: &mut Tracee,
    cfi: &mut CfiCache<'_>,
    guarded: &[Guarded],
    timeout: Duration,
) -> Result<Attempts, Error> {
    let started = Instant::now();
    let deadline = started + timeout.min(lpkg_kernel::MAX_TIMEOUT);
    // Short at first: a retry on a hot function stops one thread for a few microseconds.
    let mut backoff = Duration::from_micros(100);
    let mut attempts = Attempts::default();
    let mut suspect: Option<Pid> = Some(tracee.pid());
    loop {
        attempts.running.clear();
        let suspect_clear = match suspect {
            Some(tid) => check_alone(tracee, tid, cfi, guarded, deadline, &mut attempts)?,
            None => None,
        };
        if suspect_clear != Some(false) {
            tracee.stop()?;
            attempts.stops += 1;
            // A suspect found clear stayed stopped from its check on (`stop` leaves a stopped
            // thread as it is), so its check still holds: no need to check it again.
            let others: Vec<Pid> = tracee
                .threads()
                .into_iter()
                .filter(|&tid| suspect_clear.is_none() || Some(tid) != suspect)
                .collect();
            // Resume at the first busy thread: the retry does not need the others' reasons.
            let busy = busy_threads(tracee, &others, cfi, guarded, true, &mut attempts)?;
            match busy.first() {
                None => return Ok(attempts),
                Some(b) => suspect = Some(b.tid),
            }
        }
        if lpkg_kernel::interrupt::requested() {
            tracee.resume()?;
            return Err(Error::Interrupted {
                step: "waiting for busy threads",
            });
        }
        if Instant::now() >= deadline {
            // Name every busy thread, all stopped.
            tracee.stop()?;
            let all = tracee.threads();
            attempts.running.clear();
            let busy = busy_threads(tracee, &all, cfi, guarded, false, &mut attempts)?;
            if busy.is_empty() {
                return Ok(attempts);
            }
            return Err(Error::Busy {
                waited: started.elapsed(),
                busy: busy.into_iter().map(|b| b.why).collect(),
            });
        }
        tracee.resume()?;
        std::thread::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())));
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
}

/// Stops thread `tid` alone and checks it: `Some(true)` when it is clear (it stays stopped),
/// `Some(false)` when it is still busy (stopped too), `None` when it is gone. A thread busy
/// executing is resumed and checked again up to [`QUICK_CHECKS`] times first; one blocked in
/// a system call is not: it leaves only when the call returns, which quick looks cannot hurry.
fn check_alone(
    tracee: &mut Tracee,
    tid: Pid,
    cfi: &mut CfiCache<'_>,
    guarded: &[Guarded],
    deadline: Instant,
    attempts: &mut Attempts,
) -> Result<Option<bool>, Error> {
    let mut led_out = false;
    for check in 1..=QUICK_CHECKS {
        if !tracee.stop_thread(tid)? {
            return Ok(None);
        }
        attempts.single_stops += 1;
        let Some(busy) = busy_threads(tracee, &[tid], cfi, guarded, true, attempts)?
            .into_iter()
            .next()
        else {
            return Ok(Some(true));
        };
        // Executing guarded code: led out of the function it is in, once per retry, it stops
        // right past the return, which stops at random rarely find (`Tracee::lead_out`).
        if busy.inside && busy.executing && !led_out {
            led_out = true;
            if lead_out(tracee, tid, cfi, deadline)? {
                attempts.single_stops += 1;
                let still = busy_threads(tracee, &[tid], cfi, guarded, true, attempts)?;
                if still.is_empty() {
                    return Ok(Some(true));
                }
            }
        }
        let again = busy.executing
            && check < QUICK_CHECKS
            && Instant::now() < deadline
            && !lpkg_kernel::interrupt::requested();
        if !again {
            return Ok(Some(false));
        }
        // Only this thread is stopped: resuming the process resumes it alone.
        attempts.running.clear();
        tracee.resume()?;
        std::thread::sleep(QUICK_INTERVAL);
    }
    Ok(Some(false))
}

/// Longest wait for a thread led out of a function to return from it, per retry.
const LEAD_OUT_WAIT: Duration = Duration::from_millis(100);

/// Leads stopped thread `tid` out of the function it executes (see `Tracee::lead_out`), when
/// its CFI says where the return address is; true when it returned, and is stopped there.
fn lead_out(
    tracee: &mut Tracee,
    tid: Pid,
    cfi: &mut CfiCache<'_>,
    deadline: Instant,
) -> Result<bool, Error> {
    let regs = tracee.registers(tid)?;
    let Some(slot) = cfi.return_slot(&regs) else {
        return Ok(false);
    };
    let wait = LEAD_OUT_WAIT.min(deadline.saturating_duration_since(Instant::now()));
    Ok(tracee.lead_out(tid, slot, wait)?)
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

/// A thread found inside guarded code.
struct Busy {
    tid: Pid,
    /// Running code rather than blocked in a system call.
    executing: bool,
    /// Its program counter itself is in guarded code (frame 0).
    inside: bool,
    /// The line of the message.
    why: String,
}

/// Every thread that executes, or will return into, guarded code, with why, for the message;
/// with `first_only`, only the first one, and no why (a retry needs neither).
fn busy_threads(
    tracee: &Tracee,
    tids: &[Pid],
    cfi: &mut CfiCache<'_>,
    guarded: &[Guarded],
    first_only: bool,
    attempts: &mut Attempts,
) -> Result<Vec<Busy>, Error> {
    let mut busy = Vec::new();
    for &tid in tids {
        if first_only && !busy.is_empty() {
            break;
        }
        let regs = tracee.registers(tid)?;
        let executing = regs.syscall_nr().is_none();
        if executing {
            attempts.running.push(tid);
        }
        let trace = cfi.backtrace(&regs);
        attempts.stacks += 1;
        let hit = trace.frames.iter().enumerate().find_map(|(depth, f)| {
            // A return address may be one past the function's end (a call as last insn).
            let probe = if f.executing { f.pc } else { f.pc - 1 };
            guarded
                .iter()
                .find(|g| g.range.contains(&probe))
                .map(|g| (depth, *f, g))
        });
        if hit.is_none() && trace.complete() {
            continue;
        }
        let inside = matches!(hit, Some((0, _, _)));
        if first_only {
            busy.push(Busy {
                tid,
                executing,
                inside,
                why: String::new(),
            });
            continue;
        }
        // Read only for the message: /proc costs three system calls per thread.
        let name = tracee.thread_name(tid);
        let why = match hit {
            Some((0, f, g)) => format!(
                "thread {tid} ({name}) is executing {} (pc {:#x})",
                g.function, f.pc
            ),
            Some((_, f, g)) if !executing => format!(
                "thread {tid} ({name}) is blocked in a system call inside {} (return address {:#x}): it will not leave until the call returns",
                g.function, f.pc
            ),
            Some((_, f, g)) => format!(
                "thread {tid} ({name}) will return into {} (return address {:#x})",
                g.function, f.pc
            ),
            None => format!(
                "thread {tid} ({name}) cannot be unwound past {:#x} ({}): it may be inside a function being replaced",
                trace.frames.last().map_or(0, |f| f.pc),
                trace.stopped.map_or(String::new(), |s| s.to_string())
            ),
        };
        busy.push(Busy {
            tid,
            executing,
            inside,
            why,
        });
    }
    Ok(busy)
}
