//! A core of its own for the probe thread.
//!
//! On a machine where the busy thread, the probe thread and the patcher are three runnable
//! tasks of equal weight on two cores, the probe loses its core to the patcher's own CPU work
//! (verify, read ELF files, load) for a scheduler slice: CPU sharing, not a pause the patcher
//! imposes, and it shows as a gap of a millisecond or more. So the harness keeps itself, and
//! through inheritance the target, lpkg and gdb, off the last core, and the probe thread pins
//! itself there. A stop of the whole process still stops the probe thread wherever it runs, so
//! no pause is hidden (the self-test in `target.rs` checks a SIGSTOP still shows).

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Keeps the calling thread (and what it starts from now on) off the last core it may use, and
/// returns that core for the probe; `None`, changing nothing, with fewer than two cores.
pub fn reserve_probe_core() -> anyhow::Result<Option<usize>> {
    let me = Pid::from_raw(0);
    let allowed = sched_getaffinity(me)?;
    let cores: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    let Some((&probe, rest)) = cores.split_last() else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(None);
    }
    let mut others = CpuSet::new();
    for &c in rest {
        others.set(c)?;
    }
    sched_setaffinity(me, &others)?;
    Ok(Some(probe))
}
