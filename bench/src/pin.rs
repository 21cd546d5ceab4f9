//! A core of its own for the probe thread.
//!
//! On a machine where the busy thread, the probe thread and the patcher are three runnable
//! tasks of equal weight on two cores, the probe loses its core to the patcher's own CPU work
//! (verify, read ELF files, load) for a scheduler slice: CPU sharing, not a pause the patcher
//! imposes, and it shows as a gap of a millisecond or more. So the harness keeps itself, and
//! through inheritance the target, lpkg and gdb, off one core (the one with the fewest device
//! interrupts), and the probe thread pins itself there. A stop of the whole process still stops the probe thread wherever it runs, so
//! no pause is hidden (the self-test in `target.rs` checks a SIGSTOP still shows).

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Keeps the calling thread (and what it starts from now on) off one of the cores it may use,
/// and returns that core for the probe with the cores allowed before (for [`release`]);
/// `None`, changing nothing, with fewer than two cores.
/// The probe's core is the one that has handled the fewest device interrupts (the last one on a
/// tie): interrupt handling on a core stops the thread running there, and the kernel counts
/// that time as running, so the probe would report it as a stop (on the 2-core VM of
/// BENCHMARKS.md the disk's interrupts all go to core 1).
pub fn reserve_probe_core() -> anyhow::Result<Option<(usize, CpuSet)>> {
    let me = Pid::from_raw(0);
    let allowed = sched_getaffinity(me)?;
    let cores: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    if cores.len() < 2 {
        return Ok(None);
    }
    let interrupts = device_interrupts();
    let count = |c: &usize| interrupts.get(*c).copied().unwrap_or(0);
    let probe = *cores
        .iter()
        .rev()
        .min_by_key(|c| count(c))
        .expect("two cores or more");
    let mut others = CpuSet::new();
    for &c in cores.iter().filter(|&&c| c != probe) {
        others.set(c)?;
    }
    sched_setaffinity(me, &others)?;
    Ok(Some((probe, allowed)))
}

/// Gives the calling thread (and what it starts from now on) back the cores of `allowed`: for
/// measurements without a probe thread, e.g. the builder, which would otherwise run on one
/// core fewer than it has.
pub fn release(allowed: &CpuSet) -> anyhow::Result<()> {
    sched_setaffinity(Pid::from_raw(0), allowed)?;
    Ok(())
}

/// Device interrupts handled so far, by core number (/proc/interrupts lines with an IRQ number;
/// empty if unreadable).
fn device_interrupts() -> Vec<u64> {
    let Ok(text) = std::fs::read_to_string("/proc/interrupts") else {
        return Vec::new();
    };
    let mut lines = text.lines();
    let columns: Vec<usize> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.strip_prefix("CPU")?.parse().ok())
        .collect();
    let mut counts = vec![0u64; columns.iter().max().map_or(0, |&m| m + 1)];
    for line in lines {
        let mut fields = line.split_whitespace();
        let irq = fields.next().unwrap_or_default().trim_end_matches(':');
        if irq.parse::<u32>().is_err() {
            continue; // per-core kinds (timer, IPIs) hit every core alike
        }
        for (&cpu, field) in columns.iter().zip(fields) {
            counts[cpu] += field.parse::<u64>().unwrap_or(0);
        }
    }
    counts
}
