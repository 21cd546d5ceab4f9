//! Small readers of /proc files about a process (status, task list, comm).

use std::path::{Path, PathBuf};

use crate::{Error, Pid, Result};

/// Most of a /proc file lpkg reads: a process has at most `vm.max_map_count` (65 530 by
/// default) mappings, whose lines with paths of up to 4 KiB could make maps far larger; a
/// larger file is the target's doing and refused.
pub(crate) const PROC_FILE_MAX: usize = 64 << 20;

/// The whole of a /proc file, read with few system calls: /proc files report size 0, so
/// `std::fs::read` starts with a 32-byte read and doubles, and each read of a `seq_file`
/// (maps, stat, status) walks the process again. Starts with `hint` bytes; a file longer
/// than [`PROC_FILE_MAX`] is an error.
pub(crate) fn read(path: &Path, hint: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut bytes = vec![0u8; hint.max(512)];
    let mut len = 0;
    loop {
        if len == bytes.len() {
            if bytes.len() >= PROC_FILE_MAX {
                return Err(std::io::Error::other(format!(
                    "longer than {PROC_FILE_MAX} bytes"
                )));
            }
            bytes.resize((bytes.len() * 2).min(PROC_FILE_MAX), 0);
        }
        match file.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(len);
    Ok(bytes)
}

/// [`read`] of a small text file (stat, status, comm): invalid UTF-8 is replaced.
pub(crate) fn read_text(path: &Path) -> std::io::Result<String> {
    read(path, 4096).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

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
    let text = match read_text(&path) {
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
    read_text(Path::new(path))
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
    read_text(Path::new(&format!("/proc/{pid}/task/{tid}/status")))
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
    if leader_has_memory(pid) {
        return leader;
    }
    tasks(pid)
        .unwrap_or_default()
        .into_iter()
        .find(|tid| !is_zombie(&leader.join(format!("task/{tid}/stat"))))
        .map_or(leader, |tid| PathBuf::from(format!("/proc/{tid}")))
}

/// Whether the main thread of `pid` still has the process's memory: its `statm` (the
/// cheapest /proc file that shows it) reads all zeros once it exited. Asked before every
/// access to a process's maps, files and memory, so the file stays open for the next
/// question about the same process (one `pread`); a file of a process that is gone fails
/// and is opened again by path, which then names whatever process has the pid now.
fn leader_has_memory(pid: Pid) -> bool {
    use std::cell::RefCell;
    use std::os::unix::fs::FileExt;
    thread_local! {
        static STATM: RefCell<Option<(Pid, std::fs::File)>> = const { RefCell::new(None) };
    }
    let size = |file: &std::fs::File| {
        let mut buf = [0u8; 128];
        let len = file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..len]).ok()?;
        text.split_ascii_whitespace().next()?.parse::<u64>().ok()
    };
    STATM.with(|cell| {
        let mut open = cell.borrow_mut();
        if let Some((known, file)) = open.as_ref() {
            if *known == pid {
                if let Some(pages) = size(file) {
                    return pages > 0;
                }
            }
        }
        let Ok(file) = std::fs::File::open(format!("/proc/{pid}/statm")) else {
            *open = None;
            return false;
        };
        let pages = size(&file);
        *open = Some((pid, file));
        pages.is_some_and(|p| p > 0)
    })
}

fn is_zombie(stat: &Path) -> bool {
    read_text(stat).is_ok_and(|s| {
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
        &read_text(Path::new(&format!("/proc/{pid}/stat"))).ok()?,
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
    fn reads_a_file_longer_than_its_first_buffer_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path, 512).unwrap(), bytes);
        assert_eq!(read(&path, 1 << 20).unwrap(), bytes);
        assert!(read(&dir.path().join("missing"), 512).is_err());
    }

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
