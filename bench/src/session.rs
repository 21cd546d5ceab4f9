//! The harness's scheduling group.
//!
//! With autogroup scheduling (`kernel.sched_autogroup_enabled`, the default on most
//! distributions) the scheduler shares a core between sessions first and ranks threads by nice
//! only within one: the probe at nice -20 still shared its core half and half with any busy task
//! of another session (a build, another benchmark): gaps of 4-40 ms in quiet windows. So the
//! harness runs in a session of its own whose group gets nice -20, and everything it starts (the
//! targets, lpkg, gdb) stays in it. One group for all, not one per target: threads of one group
//! share a core by their nice as before, while a target in a group of its own at the same nice
//! took its group's whole slices from the applier (the core they share), and stops with 100
//! sleeping threads grew from ≈ 1 to ≈ 15 ms.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

/// setsid(1): a child of ours is no process group leader, so it calls setsid() and execs in
/// place, and the child's pid is the program's.
pub const SETSID: &str = "/usr/bin/setsid";

/// Set in the re-executed harness.
const MARK: &str = "LPKG_BENCH_OWN_SESSION";

/// Whether the scheduler groups tasks by session (autogroup).
pub fn autogroups() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled")
        .is_ok_and(|s| s.trim() == "1")
}

/// Runs this harness again in a session of its own and returns its exit code, or `None` when
/// this process is to go on: it is that run, or autogroups or setsid(1) are missing.
pub fn rerun_in_own_session() -> anyhow::Result<Option<i32>> {
    if std::env::var_os(MARK).is_some() {
        // Our own session (setsid succeeded, or we would not run): raising it raises only us.
        if leads_own_session()? {
            let _ = std::fs::write("/proc/self/autogroup", "-20");
        }
        return Ok(None);
    }
    if !autogroups() || !Path::new(SETSID).exists() {
        return Ok(None);
    }
    let status = Command::new(SETSID)
        .arg(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(MARK, "1")
        .status()
        .context("running the harness under setsid")?;
    Ok(Some(status.code().unwrap_or(1)))
}

/// Whether this process is the leader of its session.
fn leads_own_session() -> anyhow::Result<bool> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // After the command name: state, ppid, pgrp, session.
    let session = stat
        .rsplit(") ")
        .next()
        .and_then(|rest| rest.split_whitespace().nth(3))
        .and_then(|s| s.parse::<u32>().ok())
        .context("unexpected /proc/self/stat")?;
    Ok(session == std::process::id())
}
