//! accesspvm: read and write target memory through /proc/PID/mem.
//!
//! /proc/PID/mem writes go through the kernel's FOLL_FORCE path, so they work on read-only
//! code pages (the copy-on-write page becomes private to the target) as a debugger's do. The
//! caller needs ptrace access to the target (it need not be stopped, but writing code that a
//! thread may be executing is only safe when the process is stopped).

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

use crate::{Error, Pid, Result};

fn open(pid: Pid, write: bool) -> Result<File> {
    let path = crate::procfs::mm_dir(pid).join("mem");
    OpenOptions::new()
        .read(true)
        .write(write)
        .open(&path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ESRCH) => Error::NoSuchProcess { pid },
            Some(libc::EACCES) | Some(libc::EPERM) => Error::PermissionDenied { pid },
            _ => Error::Proc {
                path: path.clone(),
                source,
            },
        })
}

/// Read exactly `len` bytes at `addr` of process `pid`.
pub fn read(pid: Pid, addr: u64, len: usize) -> Result<Vec<u8>> {
    read_from(&open(pid, false)?, pid, addr, len)
}

/// Write all of `data` at `addr` of process `pid` (works on read-only and executable pages).
pub fn write(pid: Pid, addr: u64, data: &[u8]) -> Result<()> {
    write_to(&open(pid, true)?, pid, addr, data)
}

/// /proc/PID/mem opened once for many reads and writes: one system call per access instead
/// of three (open, access, close), which matters while the process is stopped.
pub struct Mem {
    pid: Pid,
    file: File,
    accesses: Cell<u64>,
}

impl Mem {
    /// Opens process `pid`'s memory for reading and writing.
    pub fn open(pid: Pid) -> Result<Mem> {
        Mem::with(pid, true)
    }

    /// Opens process `pid`'s memory for reading only (what lists and checks need).
    pub fn reader(pid: Pid) -> Result<Mem> {
        Mem::with(pid, false)
    }

    fn with(pid: Pid, write: bool) -> Result<Mem> {
        Ok(Mem {
            pid,
            file: open(pid, write)?,
            accesses: Cell::new(0),
        })
    }

    /// The process whose memory this is.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Read exactly `len` bytes at `addr`.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>> {
        self.accesses.set(self.accesses.get() + 1);
        read_from(&self.file, self.pid, addr, len)
    }

    /// Write all of `data` at `addr` (works on read-only and executable pages).
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<()> {
        self.accesses.set(self.accesses.get() + 1);
        write_to(&self.file, self.pid, addr, data)
    }

    /// Reads and writes made so far (each one system call unless it was split). For profiles.
    pub fn accesses(&self) -> u64 {
        self.accesses.get()
    }
}

fn read_from(file: &File, pid: Pid, addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], addr + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // A read that stops at an unmapped page reports what it got before failing.
            Err(_) if got > 0 => break,
            Err(source) => {
                return Err(Error::Memory {
                    pid,
                    addr,
                    len,
                    source,
                })
            }
        }
    }
    if got < len {
        return Err(Error::ShortRead {
            pid,
            addr,
            len,
            got,
        });
    }
    Ok(buf)
}

fn write_to(file: &File, pid: Pid, addr: u64, data: &[u8]) -> Result<()> {
    let len = data.len();
    let mut written = 0;
    while written < len {
        match file.write_at(&data[written..], addr + written as u64) {
            Ok(0) => break,
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) if written > 0 => break,
            Err(source) => {
                return Err(Error::Memory {
                    pid,
                    addr,
                    len,
                    source,
                })
            }
        }
    }
    if written < len {
        return Err(Error::ShortWrite {
            pid,
            addr,
            len,
            written,
        });
    }
    Ok(())
}

/// Read a little-endian u64 at `addr`.
pub fn read_u64(pid: Pid, addr: u64) -> Result<u64> {
    let bytes = read(pid, addr, 8)?;
    Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
}

/// Write a little-endian u64 at `addr`.
pub fn write_u64(pid: Pid, addr: u64, value: u64) -> Result<()> {
    write(pid, addr, &value.to_le_bytes())
}
