//! Pairing the objects of the two builds: only those whose bytes differ go to the differ.

use std::path::{Path, PathBuf};

use super::Error;

/// Relative paths of `.o` files in `patched` that are new or differ from `original`'s; an error
/// naming the files `patches` change when there is none.
pub fn changed_objects(
    original: &Path,
    patched: &Path,
    patches: &[impl AsRef<Path>],
) -> Result<Vec<PathBuf>, Error> {
    let mut all = Vec::new();
    collect(patched, patched, &mut all)?;
    all.sort();
    let mut changed = Vec::new();
    for rel in all {
        let new = std::fs::read(patched.join(&rel)).map_err(|e| Error::tree(&rel, e))?;
        match std::fs::read(original.join(&rel)) {
            Ok(old) if old == new => {}
            _ => changed.push(rel),
        }
    }
    if changed.is_empty() {
        let mut touched = Vec::new();
        for patch in patches {
            touched.extend(super::tree::patched_files(patch.as_ref())?);
        }
        return Err(Error::NothingChanged {
            original: original.to_path_buf(),
            patched: patched.to_path_buf(),
            touched: touched.join(", "),
        });
    }
    Ok(changed)
}

/// Copies the changed objects into `old_dir` and `new_dir` under their relative paths, the
/// folder pair the differ takes (an object only in the patched build goes to `new_dir` only).
pub fn stage_objects(
    original: &Path,
    patched: &Path,
    changed: &[PathBuf],
    old_dir: &Path,
    new_dir: &Path,
) -> Result<(), Error> {
    for rel in changed {
        for (from_root, to_root) in [(original, old_dir), (patched, new_dir)] {
            let from = from_root.join(rel);
            if !from.exists() {
                continue;
            }
            let to = to_root.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::tree(parent, e))?;
            }
            std::fs::copy(&from, &to).map_err(|e| Error::tree(&from, e))?;
        }
    }
    for dir in [old_dir, new_dir] {
        std::fs::create_dir_all(dir).map_err(|e| Error::tree(dir, e))?;
    }
    Ok(())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::tree(dir, e))? {
        let entry = entry.map_err(|e| Error::tree(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::tree(&path, e))?;
        if kind.is_dir() {
            collect(root, &path, out)?;
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "o") {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}
