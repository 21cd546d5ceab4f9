//! Copies of the source tree, patching them, and a digest to prove the user's tree is untouched.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::Error;

/// Copies `src` to `dst` (which must not exist) keeping modification times, so that `make` in a
/// copy of a built tree rebuilds only what a patch touches.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), Error> {
    if dst.exists() {
        return Err(Error::tree(dst, "already exists"));
    }
    if !src.is_dir() {
        return Err(Error::tree(src, "not a folder"));
    }
    let out = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .output()
        .map_err(|e| Error::tree(src, e))?;
    if !out.status.success() {
        return Err(Error::tree(
            dst,
            format!(
                "cp -a failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(())
}

/// Applies each patch (`-p1`, as `git diff` and Debian's `debian/patches` write them) to `tree`.
pub fn apply_patches(tree: &Path, patches: &[impl AsRef<Path>]) -> Result<(), Error> {
    for patch in patches {
        let patch = patch.as_ref();
        let abs = std::fs::canonicalize(patch).map_err(|e| Error::tree(patch, e))?;
        let out = Command::new("patch")
            .args([
                "-p1",
                "--batch",
                "--forward",
                "--no-backup-if-mismatch",
                "-i",
            ])
            .arg(&abs)
            .current_dir(tree)
            .output()
            .map_err(|e| Error::tree(patch, e))?;
        if !out.status.success() {
            let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
            output.push_str(&String::from_utf8_lossy(&out.stderr));
            return Err(Error::Patch {
                patch: patch.to_path_buf(),
                tree: tree.to_path_buf(),
                output: output.trim_end().to_owned(),
            });
        }
    }
    Ok(())
}

/// The files a `-p1` patch changes, from its `+++ ` lines, in order.
pub fn patched_files(patch: &Path) -> Result<Vec<String>, Error> {
    let bytes = std::fs::read(patch).map_err(|e| Error::tree(patch, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut files: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some(name) = line.strip_prefix("+++ ") else {
            continue;
        };
        // `+++ b/dir/file.c\t2024-01-01 ...`: drop the timestamp and the first component.
        let name = name.split('\t').next().unwrap_or(name).trim_end();
        if name == "/dev/null" {
            continue;
        }
        let name = name.split_once('/').map_or(name, |(_, rest)| rest);
        if !files.iter().any(|f| f == name) {
            files.push(name.to_owned());
        }
    }
    Ok(files)
}

/// SHA-256 over every path, file content and symlink target under `dir`, in sorted order.
pub fn tree_digest(dir: &Path) -> Result<String, Error> {
    let mut hasher = Sha256::new();
    digest_into(dir, dir, &mut hasher)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn digest_into(root: &Path, dir: &Path, hasher: &mut Sha256) -> Result<(), Error> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::tree(dir, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| Error::tree(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path);
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        let kind = entry.file_type().map_err(|e| Error::tree(&path, e))?;
        if kind.is_symlink() {
            let to = std::fs::read_link(&path).map_err(|e| Error::tree(&path, e))?;
            hasher.update(to.to_string_lossy().as_bytes());
        } else if kind.is_dir() {
            digest_into(root, &path, hasher)?;
        } else {
            let bytes = std::fs::read(&path).map_err(|e| Error::tree(&path, e))?;
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
    }
    Ok(())
}
