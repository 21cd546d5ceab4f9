//! Small readers of /proc files about a process (status, task list, comm).

use std::path::PathBuf;

use crate::{Error, Pid, Result};

/// The facts of /proc/PID/status that decide whether we may seize a process.
pub(crate) struct Status {
    /// First letter of `State:` (R, S, D, Z, T, t, X...).
    pub state: char,
    /// `TracerPid:` (0 when not traced).
    pub tracer_pid: Pid,
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
