//! One file per command.

pub mod apply;
pub mod build;
pub mod extract;
pub mod inspect;
pub mod keygen;
pub mod list;
pub mod revert;
pub mod sign;
pub mod verify;

use std::path::Path;

use anyhow::Context;

/// Reads a whole package file.
pub fn read_package_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// A command reserved for a later milestone.
pub fn not_yet_implemented(command: &str) -> anyhow::Result<()> {
    anyhow::bail!("lpkg {command}: not yet implemented")
}
