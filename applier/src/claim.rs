//! A claim on one process for the length of one lpkg command that changes it: the process is
//! pinned (its pid cannot silently name another process, see [`Pinned`]) and locked against
//! every other lpkg command, so that no two of them interleave their steps in it.
//!
//! The lock is an advisory `flock` on `$LPKG_RUN_DIR/<pid>-<start time>.lock` (default
//! `/run/lpkg`). The kernel drops it when its holder dies, however it dies: a lock of a dead
//! lpkg is never seen, and a record in an interrupted state found under the lock really was
//! interrupted. The file holds the holder's pid and command line, for the message of a command
//! that waited in vain.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lpkg_kernel::{Pid, Pinned, Tracee};

use crate::Error;

/// The folder of the lock files when `$LPKG_RUN_DIR` is not set.
const RUN_DIR: &str = "/run/lpkg";

/// What a command may wait for the process to stop beyond its timeout: after retrying busy
/// threads for the whole timeout, it stops them all once more to name them.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The holder text read from a lock file is cut to this (someone else's file, maybe).
const HOLDER_MAX: u64 = 512;

/// One process, pinned and locked until dropped.
pub(crate) struct Claim {
    pinned: Pinned,
    lock: File,
    path: PathBuf,
    /// When the command must be done waiting for the process (its `--timeout` from the
    /// claim, and [`STOP_GRACE`]): every stop of a seized process ends by then.
    deadline: Instant,
}

impl Claim {
    /// Pins process `pid` (the one that started at `start_time`, if given) and takes its
    /// lock, waiting up to `timeout` for another lpkg command to finish with it.
    pub fn take(pid: Pid, start_time: Option<u64>, timeout: Duration) -> Result<Claim, Error> {
        let pinned = Pinned::new(pid)?;
        if start_time.is_some_and(|t| t != pinned.start_time()) {
            return Err(lpkg_kernel::Error::ProcessReplaced { pid }.into());
        }
        let dir = run_dir()?;
        let path = dir.join(format!("{pid}-{}.lock", pinned.start_time()));
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let lock = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            match lock.try_lock() {
                // A holder that finished unlinked the file before unlocking it: a lock on an
                // unlinked file locks nothing any other command sees, so open it again.
                Ok(()) if still_at(&lock, &path) => {
                    let deadline = Instant::now()
                        .checked_add(timeout.saturating_add(STOP_GRACE))
                        .unwrap_or_else(|| Instant::now() + lpkg_kernel::MAX_TIMEOUT);
                    let claim = Claim {
                        pinned,
                        lock,
                        path,
                        deadline,
                    };
                    claim.write_holder()?;
                    return Ok(claim);
                }
                Ok(()) => continue,
                Err(std::fs::TryLockError::WouldBlock) => {
                    let waited = started.elapsed();
                    if waited >= timeout {
                        return Err(Error::Locked {
                            pid,
                            holder: holder(lock),
                            waited,
                        });
                    }
                    std::thread::sleep(pause.min(timeout - waited));
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&path, e)),
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        self.pinned.pid()
    }

    /// Seizes the process, and checks it is still the one pinned: then everything read
    /// through its pid since [`Claim::take`] was read from it.
    pub fn seize(&self) -> Result<Tracee, Error> {
        let mut tracee = Tracee::seize(self.pid())?;
        self.pinned.check()?;
        tracee.set_deadline(Some(self.deadline));
        Ok(tracee)
    }

    fn write_holder(&self) -> Result<(), Error> {
        let command: Vec<String> = std::env::args().collect();
        let text = format!(
            "lpkg pid {}: {}",
            std::process::id(),
            command.join(" ").escape_debug()
        );
        // Written over what a dead holder left, cut only when that was longer: a file cut to
        // length 0 is flushed to disk when closed (ext4's `auto_da_alloc`), a write per
        // process on a disk-backed /run.
        use std::os::unix::fs::FileExt;
        let file = &self.lock;
        let left = file.metadata().map_or(0, |m| m.len());
        file.write_all_at(text.as_bytes(), 0)
            .and_then(|()| match left > text.len() as u64 {
                true => file.set_len(text.len() as u64),
                false => Ok(()),
            })
            .map_err(|e| io_error(&self.path, e))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Unlinked while still locked, so no command ever locks a file that is about to go.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether `file` is still the file at `path`.
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// Who holds a lock, as its holder wrote it.
fn holder(mut lock: File) -> String {
    let mut text = String::new();
    let _ = (&mut lock).take(HOLDER_MAX).read_to_string(&mut text);
    match text.trim() {
        "" => "another lpkg command".to_owned(),
        text => text.escape_debug().to_string(),
    }
}

/// The lock folder, created (mode 0700) if missing; refused if others may write in it, since
/// whoever can replace a lock file can make two commands interleave.
pub(crate) fn run_dir() -> Result<PathBuf, Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = PathBuf::from(std::env::var_os("LPKG_RUN_DIR").unwrap_or_else(|| RUN_DIR.into()));
    // Looked at first: it is there at every command but the first (one system call, where
    // creating it first takes three).
    let meta = match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io_error(&dir, e))?;
            std::fs::symlink_metadata(&dir)
        }
        other => other,
    }
    .map_err(|e| io_error(&dir, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_dir() || mode & 0o022 != 0 {
        return Err(Error::InsecureRunDir {
            path: dir,
            reason: if meta.is_dir() {
                format!("writable by others (mode {mode:04o}): chmod go-w it")
            } else {
                "not a folder".to_owned()
            },
        });
    }
    Ok(dir)
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::LockFile {
        path: path.to_path_buf(),
        source,
    }
}
