//! Input files read whole into memory.
//!
//! A large file goes into an anonymous mapping of its size with transparent huge pages
//! requested: the kernel then faults the buffer in 2 MiB at a time (except at its unaligned
//! ends), where a fresh heap buffer takes one page fault per 4 KiB (a third of the build's CPU
//! time on a 10 000-function object went to page faults). Not rounded up to whole huge pages:
//! that cost up to 2 MiB of memory per file. Small files use the heap, whose freed memory the
//! next file reuses.

use std::io::Read;
use std::ops::Deref;
use std::path::Path;

use crate::error::Error;

/// Files from this size on are read into a huge-page mapping.
const MAPPED_FROM: u64 = 2 << 20;
const HUGE_PAGE: usize = 2 << 20;

/// The bytes of a file.
pub enum Bytes {
    Heap(Vec<u8>),
    /// The mapping and where the bytes are in it.
    Mapped(memmap2::MmapMut, std::ops::Range<usize>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Heap(v) => v,
            Bytes::Mapped(m, at) => &m[at.clone()],
        }
    }
}

/// Reads the whole file at `path`.
pub fn read(path: &Path) -> Result<Bytes, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size >= MAPPED_FROM {
        return match read_mapped(&mut file, size as usize).map_err(io)? {
            Some(bytes) => Ok(bytes),
            None => std::fs::read(path).map(Bytes::Heap).map_err(io),
        };
    }
    // Small: into the heap, with the size known (`read_to_end` would ask for it again).
    let mut bytes = vec![0; size as usize];
    if !read_all(&mut file, &mut bytes).map_err(io)? {
        return std::fs::read(path).map(Bytes::Heap).map_err(io);
    }
    Ok(Bytes::Heap(bytes))
}

/// Fills `buffer` with the whole file; `false` when the file is not `buffer.len()` bytes long
/// (it changed while being read).
fn read_all(file: &mut std::fs::File, buffer: &mut [u8]) -> std::io::Result<bool> {
    match file.read_exact(buffer) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        other => other?,
    }
    let mut more = [0u8; 1];
    Ok(file.read(&mut more)? == 0)
}

/// `None` when the file is no longer `size` bytes long.
fn read_mapped(file: &mut std::fs::File, size: usize) -> std::io::Result<Option<Bytes>> {
    // One huge page more than needed, so that the bytes can start on a huge page boundary (the
    // pages never touched cost nothing); huge pages asked for whole ones only, so that the
    // unaligned tail takes no more memory than it needs.
    let mut map = memmap2::MmapMut::map_anon(size + HUGE_PAGE)?;
    let start = (HUGE_PAGE - map.as_ptr() as usize % HUGE_PAGE) % HUGE_PAGE;
    let whole = size / HUGE_PAGE * HUGE_PAGE;
    if whole > 0 {
        // Advice only: without transparent huge pages the mapping works with small pages.
        let _ = map.advise_range(memmap2::Advice::HugePage, start, whole);
    }
    if !read_all(file, &mut map[start..start + size])? {
        return Ok(None);
    }
    Ok(Some(Bytes::Mapped(map, start..start + size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_files_are_mapped_small_ones_not_and_both_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        for (name, len, mapped) in [("large", 3 << 20 | 123, true), ("small", 4096 + 7, false)] {
            let path = dir.path().join(name);
            let content: Vec<u8> = (0..len).map(|i: usize| (i % 251) as u8).collect();
            std::fs::write(&path, &content).unwrap();
            let bytes = read(&path).unwrap();
            assert_eq!(matches!(bytes, Bytes::Mapped(..)), mapped, "{name}");
            assert!(bytes[..] == content[..], "{name}: content differs");
        }
        assert!(matches!(
            read(&dir.path().join("missing")),
            Err(Error::Io { .. })
        ));
    }
}
