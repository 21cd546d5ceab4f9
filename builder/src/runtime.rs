//! The shadow-variable runtime (`runtime/lpkg-shadow.c`, compiled by `build.rs` for each
//! architecture): a unit of its own that the module writer copies functions from when the
//! patch calls `lpkg_shadow_*`, the way it carries functions the target lacks.
//! spec/shadow-variables.md describes what it expects of the applier.

use std::path::Path;

use crate::arch::Arch;
use crate::diff::Side;
use crate::dwarf::Wanted;
use crate::error::Error;
use crate::objfile::Obj;

/// The compiled runtime of each architecture (the i386 one empty when lpkg was built by a
/// compiler without 32-bit support).
const X86_64: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lpkg-shadow-x86_64.o"));
const I386: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lpkg-shadow-i386.o"));

/// Whether `name` is a function the runtime provides to patches.
pub fn provides(name: &str) -> bool {
    name.starts_with("lpkg_shadow_")
}

/// The runtime for `arch` as a pair: an empty old object and the compiled one; `None` when
/// this builder has none for `arch`.
pub fn sides(arch: Arch) -> Result<Option<(Side, Side)>, Error> {
    let object = match arch {
        Arch::X86_64 => X86_64,
        Arch::I386 => I386,
    };
    if object.is_empty() {
        return Ok(None);
    }
    let path = format!("<lpkg runtime lpkg-shadow-{}.o>", arch.name());
    let new = Obj::parse(Path::new(&path), object)?;
    let old = Obj::empty(&new);
    Ok(Some((
        Side::new(old, Wanted::OldSide, false),
        Side::new(new, Wanted::All, false),
    )))
}
