//! Stopping the process at a moment when no thread is inside code about to change.

use std::ops::Range;
use std::time::{Duration, Instant};

use lpkg_kernel::Tracee;

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
    let started = Instant::now();
    let mut backoff = Duration::from_millis(1);
    loop {
        tracee.stop()?;
        let busy = busy_threads(tracee, guarded)?;
        if busy.is_empty() {
            return Ok(());
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

fn busy_threads(tracee: &Tracee, guarded: &[Guarded]) -> Result<Vec<String>, Error> {
    let mut busy = Vec::new();
    for tid in tracee.threads() {
        let pc = tracee.registers(tid)?.pc();
        if let Some(g) = guarded.iter().find(|g| g.range.contains(&pc)) {
            busy.push(format!(
                "thread {tid} ({}) is executing {} (pc {pc:#x})",
                tracee.thread_name(tid),
                g.function
            ));
        }
    }
    Ok(busy)
}
