//! The separate debug file of a stripped target: given, or found where gdb looks for it (by
//! build-id under the debug directory, then by the name in the target's `.gnu_debuglink`).
//! Whatever is found must carry the target's build-id: symbols and DWARF of another build
//! would place functions at the wrong addresses.

use std::path::{Path, PathBuf};

use object::read::elf::{ElfFile, FileHeader};
use object::{Endianness, Object};

use crate::error::Error;

/// The debug directory gdb and Debian's `-dbgsym` packages use.
pub const DEFAULT_DEBUG_DIR: &str = "/usr/lib/debug";

/// Where the target's symbols and DWARF come from when they are not in the target itself.
#[derive(Debug, Clone, Default)]
pub struct DebugOptions {
    /// The debug file, given by the user: used even if the target has its own `.symtab`.
    pub file: Option<PathBuf>,
    /// The debug directory to look in (gdb's `debug-file-directory`); `/usr/lib/debug` when
    /// `None`.
    pub dir: Option<PathBuf>,
}

/// A debug file and how it was found, for the build's notes.
#[derive(Debug, Clone)]
pub struct Found {
    /// The file.
    pub path: PathBuf,
    /// `given`, `by build-id` or `by .gnu_debuglink`.
    pub how: &'static str,
}

/// The target's build-id as a file name under the debug directory: `.build-id/xx/rest.debug`.
fn build_id_path(dir: &Path, build_id: &str) -> Option<PathBuf> {
    let (head, rest) = (build_id.get(..2)?, build_id.get(2..)?);
    (!rest.is_empty()).then(|| {
        dir.join(".build-id")
            .join(head)
            .join(format!("{rest}.debug"))
    })
}

/// The places gdb looks for the debug file named in `.gnu_debuglink`: next to the target, in
/// its `.debug` folder, and under the debug directory at the target's own folder.
fn debuglink_paths(dir: &Path, target: &Path, name: &str) -> Vec<PathBuf> {
    // A name is a file name: anything that could leave those folders is not looked up.
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Vec::new();
    }
    let folder = target
        .parent()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()))
        .unwrap_or_default();
    let under_debug_dir = dir.join(folder.strip_prefix("/").unwrap_or(&folder));
    vec![
        folder.join(name),
        folder.join(".debug").join(name),
        under_debug_dir.join(name),
    ]
}

/// The debug file of `target` (parsed as `file`, build-id `build_id`). A given file must
/// carry the build-id; of the places looked in, the first file that carries it is taken.
pub fn find<Elf: FileHeader<Endian = Endianness>>(
    target: &Path,
    file: &ElfFile<'_, Elf>,
    build_id: &str,
    opts: &DebugOptions,
) -> Result<Found, Error> {
    if let Some(given) = &opts.file {
        check(target, given, build_id)?;
        return Ok(Found {
            path: given.clone(),
            how: "given",
        });
    }
    let dir = opts
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DEBUG_DIR));
    let mut candidates: Vec<(PathBuf, &'static str)> = Vec::new();
    if let Some(path) = build_id_path(&dir, build_id) {
        candidates.push((path, "by build-id"));
    }
    if let Ok(Some((name, _crc))) = file.gnu_debuglink() {
        let name = String::from_utf8_lossy(name);
        for path in debuglink_paths(&dir, target, &name) {
            candidates.push((path, "by .gnu_debuglink"));
        }
    }
    let mut wrong = None;
    for (path, how) in &candidates {
        // The target itself may be named by its debuglink folder: never its own debug file.
        if !path.is_file() || same_file(path, target) {
            continue;
        }
        match check(target, path, build_id) {
            Ok(()) => {
                return Ok(Found {
                    path: path.clone(),
                    how,
                })
            }
            Err(e) => {
                wrong.get_or_insert(e);
            }
        }
    }
    Err(wrong.unwrap_or_else(|| Error::StrippedTarget {
        path: target.to_path_buf(),
        build_id: build_id.to_owned(),
        looked: candidates
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    }))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Refuses `debug` unless it is an ELF file with the target's build-id.
fn check(target: &Path, debug: &Path, build_id: &str) -> Result<(), Error> {
    let found = read_build_id(debug)?;
    if found.as_deref() == Some(build_id) {
        return Ok(());
    }
    Err(Error::WrongDebugFile {
        target: target.to_path_buf(),
        debug: debug.to_path_buf(),
        expected: build_id.to_owned(),
        found: found.unwrap_or_else(|| "none".to_owned()),
    })
}

/// The GNU build-id of an ELF file, `None` when it has none.
fn read_build_id(path: &Path) -> Result<Option<String>, Error> {
    let bytes = crate::input::read(path)?;
    let file = object::File::parse(&bytes[..]).map_err(|e| Error::BadInput {
        path: path.to_path_buf(),
        reason: format!("debug file: not an ELF file: {e}"),
    })?;
    Ok(file.build_id().ok().flatten().map(crate::target::hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_id_paths_split_the_first_byte() {
        assert_eq!(
            build_id_path(Path::new("/usr/lib/debug"), "7a8c2916"),
            Some(PathBuf::from("/usr/lib/debug/.build-id/7a/8c2916.debug"))
        );
        assert_eq!(build_id_path(Path::new("/d"), "7a"), None);
        assert_eq!(build_id_path(Path::new("/d"), ""), None);
    }

    #[test]
    fn debuglink_names_cannot_leave_the_folders_looked_in() {
        let dir = Path::new("/usr/lib/debug");
        let target = Path::new("/nonexistent-lpkg/lib/libx.so");
        assert!(debuglink_paths(dir, target, "../../etc/shadow").is_empty());
        assert!(debuglink_paths(dir, target, "..").is_empty());
        assert!(debuglink_paths(dir, target, "").is_empty());
        assert_eq!(
            debuglink_paths(dir, target, "libx.so.debug"),
            vec![
                PathBuf::from("/nonexistent-lpkg/lib/libx.so.debug"),
                PathBuf::from("/nonexistent-lpkg/lib/.debug/libx.so.debug"),
                PathBuf::from("/usr/lib/debug/nonexistent-lpkg/lib/libx.so.debug"),
            ]
        );
    }
}
