//! Small readers of /proc files about a process (status, task list, comm).

use std::path::PathBuf;

use crate::{Error, Pid, Result};

/// The facts of /proc/PID/status that decide whether we may seize a process.
pub(crate) struct Status {
    /// First letter of `State:` (R, S, D, Z, T, t, X...).
    pub state: char,
    /// `TracerPid:` (0 when not traced).
    pub tracer_pid: Pid,
    /// `Tgid:` the process this id belongs to (differs from the id for a non-main thread).
    pub tgid: Pid,
}

/// Read /proc/PID/status; a missing file means there is no such process.
pub(crate) fn status(pid: Pid) -> Result<Status> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ESRCH) =>
        {
            return Err(Error::NoSuchProcess { pid })
        }
        Err(source) => return Err(Error::Proc { path, source }),
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    };
    Ok(Status {
        state: field("State:").chars().next().unwrap_or('?'),
        tracer_pid: field("TracerPid:").parse().unwrap_or(0),
        tgid: field("Tgid:").parse().unwrap_or(pid),
    })
}

/// The `comm` of a process or thread, `?` when it cannot be read.
pub(crate) fn comm(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches('\n').to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

/// Thread ids listed in /proc/PID/task.
pub(crate) fn tasks(pid: Pid) -> Result<Vec<Pid>> {
    let path = PathBuf::from(format!("/proc/{pid}/task"));
    let dir = match std::fs::read_dir(&path) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::ProcessExited { pid })
        }
        Err(source) => return Err(Error::Proc { path, source }),
    };
    let mut tids = Vec::new();
    for entry in dir {
        // An entry vanishing during the listing is a thread that exited: skip it.
        let Ok(entry) = entry else { continue };
        if let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            tids.push(tid);
        }
    }
    tids.sort_unstable();
    Ok(tids)
}

/// `TracerPid` of one thread (0 when untraced or unreadable).
pub(crate) fn tracer_of(pid: Pid, tid: Pid) -> Pid {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("TracerPid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The /proc directory that shows the process's memory: /proc/PID, or, when the main thread
/// has exited (a zombie leader has no memory map any more), /proc/TID of a live thread, which
/// has everything /proc/PID has (`/proc/PID/task/TID` has no `map_files`).
pub(crate) fn mm_dir(pid: Pid) -> PathBuf {
    let leader = PathBuf::from(format!("/proc/{pid}"));
    if !is_zombie(&leader.join("stat")) {
        return leader;
    }
    tasks(pid)
        .unwrap_or_default()
        .into_iter()
        .find(|tid| !is_zombie(&leader.join(format!("task/{tid}/stat"))))
        .map_or(leader, |tid| PathBuf::from(format!("/proc/{tid}")))
}

fn is_zombie(stat: &std::path::Path) -> bool {
    std::fs::read_to_string(stat).is_ok_and(|s| {
        // The state follows the parenthesised command name, which may itself hold ')'.
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with(['Z', 'X']))
    })
}

/// /proc/PID/stat of process `pid`, opened once to be read again and again ([`thread_count`]).
pub(crate) fn open_stat(pid: Pid) -> Option<std::fs::File> {
    std::fs::File::open(format!("/proc/{pid}/stat")).ok()
}

/// The number of threads (field 20, `num_threads`) in an open /proc/PID/stat: one `pread`.
/// Threads that exited count until reaped; a zombie leader counts. `None` when unreadable.
pub(crate) fn thread_count(stat: &std::fs::File) -> Option<usize> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 1024];
    let len = stat.read_at(&mut buf, 0).ok()?;
    stat_field(std::str::from_utf8(&buf[..len]).ok()?, 20)
}

/// The start time of process `pid` (field 22 of /proc/PID/stat, clock ticks after boot): with
/// the pid, it names one process for the life of the machine.
pub(crate) fn start_time(pid: Pid) -> Option<u64> {
    stat_field(
        &std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?,
        22,
    )
}

/// Field `n` (numbered from 1, as proc(5) numbers them) of a /proc/PID/stat text.
fn stat_field<T: std::str::FromStr>(text: &str, n: usize) -> Option<T> {
    // The fields after the parenthesised command name (which may hold ')') start at field 3.
    let (_, rest) = text.rsplit_once(") ")?;
    rest.split_ascii_whitespace().nth(n - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_threads_of_a_process_again_and_again() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let stat = open_stat(child.id() as Pid).unwrap();
        assert_eq!(thread_count(&stat), Some(1));
        assert_eq!(thread_count(&stat), Some(1));
        let _ = child.kill();
        let _ = child.wait();
        // Reaped: the file stays open but the process is gone.
        assert_eq!(thread_count(&stat), None);
    }
}
