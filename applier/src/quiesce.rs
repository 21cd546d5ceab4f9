//! Stopping the process at a moment when no thread is inside code about to change.

use std::ops::Range;
use std::time::{Duration, Instant};

use lpkg_kernel::Tracee;

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
pub fn stop_clear(
    tracee: &mut Tracee,
    guarded: &[Guarded],
    timeout: Duration,
) -> Result<(), Error> {
    // Parse the CFI while the process still runs: the stopped time is only stack copies.
    let mut cfi = CfiCache::load(tracee.pid())?;
    let started = Instant::now();
    let mut backoff = Duration::from_millis(1);
    loop {
        tracee.stop()?;
        let busy = busy_threads(tracee, &mut cfi, guarded)?;
        if busy.is_empty() {
            return Ok(());
        }
        if lpkg_kernel::interrupt::requested() {
            tracee.resume()?;
            return Err(Error::Interrupted {
                step: "waiting for busy threads",
            });
        }
        if started.elapsed() >= timeout {
            return Err(Error::Busy {
                waited: started.elapsed(),
                busy,
            });
        }
        tracee.resume()?;
        std::thread::sleep(backoff.min(timeout.saturating_sub(started.elapsed())));
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
}

/// Every thread that executes, or will return into, guarded code, with why, for the message.
fn busy_threads(
    tracee: &Tracee,
    cfi: &mut CfiCache,
    guarded: &[Guarded],
) -> Result<Vec<String>, Error> {
    let mut busy = Vec::new();
    for tid in tracee.threads() {
        let regs = tracee.registers(tid)?;
        let trace = cfi.backtrace(&regs);
        let name = tracee.thread_name(tid);
        let hit = trace.frames.iter().enumerate().find_map(|(depth, f)| {
            // A return address may be one past the function's end (a call as last insn).
            let probe = if f.executing { f.pc } else { f.pc - 1 };
            guarded
                .iter()
                .find(|g| g.range.contains(&probe))
                .map(|g| (depth, *f, g))
        });
        match hit {
            Some((0, f, g)) => busy.push(format!(
                "thread {tid} ({name}) is executing {} (pc {:#x})",
                g.function, f.pc
            )),
            Some((_, f, g)) if regs.syscall_nr().is_some() => busy.push(format!(
                "thread {tid} ({name}) is blocked in a system call inside {} (return address {:#x}): it will not leave until the call returns",
                g.function, f.pc
            )),
            Some((_, f, g)) => busy.push(format!(
                "thread {tid} ({name}) will return into {} (return address {:#x})",
                g.function, f.pc
            )),
            None if !trace.complete => busy.push(format!(
                "thread {tid} ({name}) cannot be unwound past {:#x} ({}): it may be inside a function being replaced",
                trace.frames.last().map_or(0, |f| f.pc),
                trace.stopped
            )),
            None => {}
        }
    }
    Ok(busy)
}
