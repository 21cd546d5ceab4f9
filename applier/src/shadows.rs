//! The shadow area: one mapping per process that holds the shadow variables of every applied
//! package whose module carries lpkg's runtime (spec/shadow-variables.md). The applier maps it
//! (or finds it) when it loads such a module and writes its address into the module's
//! [`lpkg_format::SHADOW_TABLE_SYMBOL`]; the runtime in the module does the rest. Revert
//! unmaps it when the last package using it is gone.

use lpkg_kernel::memory::Mem;
use lpkg_kernel::{maps, Pid, Tracee};

use crate::records;
use crate::reloc::Machine;
use crate::Error;

/// Name of the area's memfd: `/memfd:lpkg-shadows (deleted)` in /proc/PID/maps.
pub const AREA_NAME: &str = "lpkg-shadows";
/// First 8 bytes of the area.
pub const AREA_MAGIC: &[u8; 8] = b"LPKGSHD1";
/// Bytes of the area of a process of `machine`: a private mapping of a sparse memfd, so only
/// what the shadows use is ever memory (the runtime's table of 65536 buckets is 1 MiB of it);
/// less of an i386 process's address space.
pub fn area_size(machine: Machine) -> u64 {
    match machine {
        Machine::X86_64 => 256 << 20,
        Machine::I386 => 64 << 20,
    }
}

/// The area's address as the module's `__lpkg_shadow_table` holds it: a pointer of
/// `machine`, little-endian.
pub fn pointer(machine: Machine, area: u64) -> Vec<u8> {
    match machine {
        Machine::X86_64 => area.to_le_bytes().to_vec(),
        Machine::I386 => (area as u32).to_le_bytes().to_vec(),
    }
}

/// The area's mappings in `pid` (start, length), found by name.
fn mappings(pid: Pid) -> Result<Vec<(u64, u64)>, Error> {
    let wanted = format!("/memfd:{AREA_NAME}");
    Ok(maps::read(pid)?
        .into_iter()
        .filter(|e| {
            e.path
                .as_ref()
                .and_then(|p| p.to_str())
                .is_some_and(|p| p == wanted)
        })
        .map(|e| (e.start, e.len()))
        .collect())
}

/// The area of the process of `tracee` (of `machine`), mapped now (with only its worker thread
/// stopped) when there is none: its address and length, and whether it was mapped now.
pub fn find_or_map(
    tracee: &mut Tracee,
    mem: &Mem,
    machine: Machine,
) -> Result<(u64, u64, bool), Error> {
    for (start, len) in mappings(tracee.pid())? {
        if mem.read(start, AREA_MAGIC.len())? == AREA_MAGIC {
            return Ok((start, len, false));
        }
    }
    let size = area_size(machine);
    let start = tracee.memfd_map_private(AREA_NAME, size)?;
    let mut header = AREA_MAGIC.to_vec();
    header.extend_from_slice(&size.to_le_bytes());
    if let Err(e) = mem.write(start, &header) {
        let _ = tracee.munmap(start, size);
        return Err(e.into());
    }
    Ok((start, size, true))
}

/// Unmaps the area of `pid`'s process (with only the worker thread of `tracee` stopped) when
/// no record left in it is of a package that uses shadows: no code that knows the area is
/// left. Returns whether it did.
pub fn release_if_unused(tracee: &mut Tracee) -> Result<bool, Error> {
    let pid = tracee.pid();
    if records::read(pid)?.iter().any(|r| r.body.shadows) {
        return Ok(false);
    }
    let areas = mappings(pid)?;
    for &(start, len) in &areas {
        tracee.munmap(start, len)?;
    }
    Ok(!areas.is_empty())
}
