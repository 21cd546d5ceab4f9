//! /proc/PID/maps: the target's address space.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::{Error, Pid, Result};

/// Suffix the kernel appends to the path of a mapped file that was unlinked.
const DELETED: &[u8] = b" (deleted)";

/// One line of /proc/PID/maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `r` permission.
    pub read: bool,
    /// `w` permission.
    pub write: bool,
    /// `x` permission.
    pub exec: bool,
    /// `s` (shared) rather than `p` (private).
    pub shared: bool,
    /// Offset into the mapped file.
    pub offset: u64,
    /// Device (major, minor) of the mapped file.
    pub dev: (u32, u32),
    /// Inode of the mapped file (0 for anonymous mappings).
    pub inode: u64,
    /// Path (a file, `[heap]`, `[stack]`, `[vdso]`, `/memfd:name`...), without the
    /// ` (deleted)` suffix; `None` for anonymous mappings. Raw bytes, not necessarily UTF-8.
    pub path: Option<PathBuf>,
    /// The kernel marked the file ` (deleted)`: unlinked (or replaced) on disk.
    pub deleted: bool,
}

impl MapEntry {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    /// True for an empty range (never produced by the kernel).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    /// True when `addr` lies inside this mapping.
    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
    /// True when backed by a file in the file system (path starting with `/`, inode set),
    /// which excludes `[heap]`-style pseudo paths; memfds count as files.
    pub fn is_file(&self) -> bool {
        self.inode != 0
            && self
                .path
                .as_ref()
                .is_some_and(|p| p.as_os_str().as_encoded_bytes().starts_with(b"/"))
    }
}

/// Read and parse /proc/PID/maps.
pub fn read(pid: Pid) -> Result<Vec<MapEntry>> {
    let read = |path: std::path::PathBuf| {
        // Room for a few hundred mappings in the first read.
        crate::procfs::read(&path, 32 << 10).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::NoSuchProcess { pid },
            _ => Error::Proc { path, source },
        })
    };
    let mut bytes = read(std::path::PathBuf::from(format!("/proc/{pid}/maps")))?;
    if bytes.is_empty() {
        // A process has mappings; a leader that exited (pthread_exit) shows none: ask a live
        // thread (`procfs::mm_dir`).
        bytes = read(crate::procfs::mm_dir(pid).join("maps"))?;
    }
    parse(pid, &bytes)
}

/// Parse the contents of a maps file (`pid` only names the process in errors).
pub fn parse(pid: Pid, bytes: &[u8]) -> Result<Vec<MapEntry>> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(i, line)| {
            parse_line(line).ok_or_else(|| Error::MapsParse {
                pid,
                line: i + 1,
                text: String::from_utf8_lossy(line).into_owned(),
            })
        })
        .collect()
}

/// Parse one line: `start-end perms offset major:minor inode [path]`.
pub fn parse_line(line: &[u8]) -> Option<MapEntry> {
    let mut rest = line;
    let mut next = || -> Option<&str> {
        let trimmed = rest
            .iter()
            .position(|&b| b != b' ')
            .map_or(&rest[rest.len()..], |i| &rest[i..]);
        let end = trimmed
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(trimmed.len());
        let (word, after) = trimmed.split_at(end);
        rest = after;
        if word.is_empty() {
            return None;
        }
        std::str::from_utf8(word).ok()
    };
    let (start, end) = next()?.split_once('-')?;
    let perms = next()?.as_bytes();
    let offset = next()?;
    let (major, minor) = next()?.split_once(':')?;
    let inode = next()?;
    if perms.len() != 4 {
        return None;
    }
    let mut entry = MapEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        read: perms[0] == b'r',
        write: perms[1] == b'w',
        exec: perms[2] == b'x',
        shared: perms[3] == b's',
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev: (
            u32::from_str_radix(major, 16).ok()?,
            u32::from_str_radix(minor, 16).ok()?,
        ),
        inode: inode.parse().ok()?,
        path: None,
        deleted: false,
    };
    // The path starts after the padding that follows the inode and runs to the end of the
    // line: it may itself contain spaces.
    let path = match rest.iter().position(|&b| b != b' ') {
        Some(i) => &rest[i..],
        None => &[][..],
    };
    if !path.is_empty() {
        let path = match path.strip_suffix(DELETED) {
            Some(p) => {
                entry.deleted = true;
                p
            }
            None => path,
        };
        entry.path = Some(PathBuf::from(OsString::from_vec(unescape(path))));
    }
    (entry.start < entry.end).then_some(entry)
}

/// The kernel writes a newline inside a path as the octal escape `\012`.
fn unescape(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i..].starts_with(b"\\012") {
            out.push(b'\n');
            i += 4;
        } else {
            out.push(path[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    fn one(line: &[u8]) -> MapEntry {
        parse_line(line).unwrap_or_else(|| panic!("unparsed {:?}", String::from_utf8_lossy(line)))
    }

    #[test]
    fn plain_file() {
        let e = one(b"55d0c0a00000-55d0c0a02000 r-xp 00001000 fe:01 1234567                    /usr/bin/cat");
        assert_eq!(e.start, 0x55d0c0a00000);
        assert_eq!(e.end, 0x55d0c0a02000);
        assert!(e.read && !e.write && e.exec && !e.shared);
        assert_eq!(e.offset, 0x1000);
        assert_eq!(e.dev, (0xfe, 1));
        assert_eq!(e.inode, 1234567);
        assert_eq!(
            e.path.as_deref(),
            Some(std::path::Path::new("/usr/bin/cat"))
        );
        assert!(!e.deleted);
        assert!(e.is_file());
    }

    #[test]
    fn anonymous_and_pseudo() {
        let e = one(b"7ffd1000-7ffd3000 rw-p 00000000 00:00 0 ");
        assert_eq!(e.path, None);
        assert!(!e.is_file());
        let e = one(b"7ffd1000-7ffd3000 rw-p 00000000 00:00 0");
        assert_eq!(e.path, None);
        let e = one(b"7ffd1000-7ffd3000 r-xp 00000000 00:00 0                          [vdso]");
        assert_eq!(e.path.as_deref(), Some(std::path::Path::new("[vdso]")));
        assert!(!e.is_file());
    }

    #[test]
    fn spaces_deleted_and_memfd() {
        let e = one(b"1000-2000 rw-s 00000000 00:01 77   /tmp/my dir/lib  x.so (deleted)");
        assert_eq!(
            e.path.as_deref(),
            Some(std::path::Path::new("/tmp/my dir/lib  x.so"))
        );
        assert!(e.deleted && e.shared);
        let e = one(b"1000-2000 rw-s 00000000 00:01 77   /memfd:lpkg:record (deleted)");
        assert_eq!(
            e.path.as_deref(),
            Some(std::path::Path::new("/memfd:lpkg:record"))
        );
        assert!(e.deleted && e.is_file());
        // A trailing space in the name is kept.
        let e = one(b"1000-2000 r--p 00000000 08:01 5 /tmp/a ");
        assert_eq!(e.path.unwrap().as_os_str().as_bytes(), b"/tmp/a ");
    }

    #[test]
    fn invalid_utf8_and_newline() {
        let e = one(b"1000-2000 r--p 00000000 08:01 5 /tmp/\xff\xfe\\012x");
        assert_eq!(e.path.unwrap().as_os_str().as_bytes(), b"/tmp/\xff\xfe\nx");
    }

    #[test]
    fn bad_lines() {
        assert!(parse_line(b"").is_none());
        assert!(parse_line(b"zz-2000 r--p 0 08:01 5").is_none());
        assert!(parse_line(b"1000-2000 r--p 0 0801 5").is_none());
        assert!(parse_line(b"1000-2000 r-p 0 08:01 5").is_none());
        assert!(parse_line(b"2000-1000 r--p 0 08:01 5").is_none());
        let err = parse(7, b"1000-2000 r--p 0 08:01 5 /a\ngarbage\n").unwrap_err();
        assert!(
            matches!(
                err,
                Error::MapsParse {
                    pid: 7,
                    line: 2,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn own_maps() {
        let maps = read(std::process::id() as Pid).unwrap();
        assert!(maps
            .iter()
            .any(|m| m.path.as_deref() == Some(std::path::Path::new("[stack]"))));
        assert!(maps.windows(2).all(|w| w[0].end <= w[1].start));
    }
}
