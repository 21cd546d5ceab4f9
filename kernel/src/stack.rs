//! Bulk reads of thread stacks with `process_vm_readv`: one system call per thread while the
//! world is stopped, so the unwinder can work on a local copy.

use std::io::IoSliceMut;

use nix::sys::uio::{process_vm_readv, RemoteIoVec};

use crate::{Error, Pid, Result};

/// Reads up to `len` bytes at `addr` of process `pid` in one `process_vm_readv`.
///
/// Returns what the kernel copied, which is shorter than `len` when the range runs into an
/// unmapped page (the copy stops there). Fails only when not even the first byte is readable.
pub fn read_upto(pid: Pid, addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let remote = [RemoteIoVec {
        base: addr as usize,
        len,
    }];
    let got = process_vm_readv(
        nix::unistd::Pid::from_raw(pid),
        &mut [IoSliceMut::new(&mut buf)],
        &remote,
    )
    .map_err(|errno| Error::Memory {
        pid,
        addr,
        len,
        source: std::io::Error::from_raw_os_error(errno as i32),
    })?;
    buf.truncate(got);
    Ok(buf)
}
