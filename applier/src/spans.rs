//! Many small writes to a process's code in few system calls.
//!
//! A function shorter than a jump may have thousands of call sites, each a 4-byte write while
//! every thread is stopped: one system call each made the pause tens of milliseconds. Writes
//! within one page are made as one: the page's span of them is read once, patched, and
//! written back once.

use lpkg_kernel::memory::Mem;

use crate::Error;

/// One change: where the live bytes at `address` equal `expected` (always, when `None`), they
/// become `replacement`.
pub struct Change<'a> {
    /// Where.
    pub address: u64,
    /// What must be there for the change to be made; `None`: whatever is there.
    pub expected: Option<&'a [u8]>,
    /// What to write.
    pub replacement: &'a [u8],
}

const PAGE: u64 = 4096;

/// Makes `changes` (which must not overlap) with one read and one write per page they touch;
/// `before_write(address, bytes)` is told what each span held just before it is written (for
/// a rollback). Returns whether each change was made, in the order given.
pub fn apply(
    mem: &Mem,
    changes: &[Change],
    mut before_write: impl FnMut(u64, &[u8]),
) -> Result<Vec<bool>, Error> {
    let mut order: Vec<usize> = (0..changes.len()).collect();
    order.sort_by_key(|&i| changes[i].address);
    let mut made = vec![false; changes.len()];
    let mut rest = &order[..];
    while let Some(&first) = rest.first() {
        let page = changes[first].address / PAGE;
        let count = rest
            .iter()
            .take_while(|&&i| changes[i].address / PAGE == page)
            .count();
        let (span, later) = rest.split_at(count);
        rest = later;
        let start = changes[first].address;
        let end = span
            .iter()
            .map(|&i| {
                changes[i]
                    .address
                    .saturating_add(changes[i].replacement.len() as u64)
            })
            .max()
            .unwrap_or(start);
        let before = mem.read(start, (end - start) as usize)?;
        let mut after = before.clone();
        for &i in span {
            let change = &changes[i];
            let at = (change.address - start) as usize;
            let here = &mut after[at..at + change.replacement.len()];
            // (Overlapping changes would make `here` another change's bytes: callers give
            // call sites, 4 bytes each at distinct instructions.)
            if change.expected.is_none_or(|expected| expected == here) {
                here.copy_from_slice(change.replacement);
                made[i] = true;
            }
        }
        if after != before {
            before_write(start, &before);
            mem.write(start, &after)?;
        }
    }
    Ok(made)
}
