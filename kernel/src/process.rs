//! One process, pinned: a pid names it only as long as it lives, and any later look at the pid
//! (its /proc files, a seize) could meet another process that got the same number. A pidfd
//! tells whether the pinned process still lives; while it does, its pid names nothing else.

use std::os::fd::{FromRawFd, OwnedFd};

use crate::{procfs, Error, Pid, Result};

/// A process held by a pidfd since [`Pinned::new`]. Everything read through its pid between
/// `new` and a successful [`Pinned::check`] was read from this process.
#[derive(Debug)]
pub struct Pinned {
    pid: Pid,
    pidfd: OwnedFd,
    start_time: u64,
}

impl Pinned {
    /// Pins process `pid` as it is now.
    pub fn new(pid: Pid) -> Result<Pinned> {
        if pid <= 0 {
            return Err(Error::NoSuchProcess { pid });
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; no
        // memory of ours is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::ESRCH) => Error::NoSuchProcess { pid },
                // A thread id that is not a process (no PIDFD_THREAD asked), and the like.
                _ => Error::Proc {
                    path: format!("pidfd_open({pid})").into(),
                    source: std::io::Error::last_os_error(),
                },
            });
        }
        // SAFETY: `fd` is a descriptor just returned to us and owned by nothing else.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let start_time = procfs::start_time(pid).ok_or(Error::NoSuchProcess { pid })?;
        let pinned = Pinned {
            pid,
            pidfd,
            start_time,
        };
        // The start time was read through the pid: it is this process's if it still lives.
        pinned.check()?;
        Ok(pinned)
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// When the process started (clock ticks after boot): with the pid, an identity that
    /// outlives the process, for reports and locks.
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// Fails with [`Error::ProcessExited`] if the pinned process has exited: its pid may name
    /// another process by now. While it lives its pid names only it, and [`Pinned::new`]
    /// made sure the start time is its own, so one `poll` of the pidfd is the whole check.
    pub fn check(&self) -> Result<()> {
        use std::os::fd::AsRawFd;
        let mut poll = libc::pollfd {
            fd: self.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, and a zero timeout: poll only reads and writes `poll`.
        let ready = unsafe { libc::poll(&mut poll, 1, 0) };
        match ready {
            0 => Ok(()),
            // Readable: the process has exited (a failed poll is taken the same, safe way).
            _ => Err(Error::ProcessExited { pid: self.pid }),
        }
    }
}

/// When process `pid` started (clock ticks after boot), `None` if it is gone: with the pid, it
/// tells this process from a later one given the same pid.
pub fn start_time(pid: Pid) -> Option<u64> {
    procfs::start_time(pid)
}
