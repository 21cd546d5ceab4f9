//! The shadow-variable runtime (`runtime/lpkg-shadow.c`, compiled by `build.rs`): a unit of
//! its own that the module writer copies functions from when the patch calls
//! `lpkg_shadow_*`, the way it carries functions the target lacks. spec/shadow-variables.md
//! describes what it expects of the applier.

use std::path::Path;

use crate::arch::Arch;
use crate::diff::Side;
use crate::dwarf::Wanted;
use crate::error::Error;
use crate::objfile::Obj;

/// The compiled runtime, for x86_64 patch modules.
const OBJECT_X86_64: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lpkg-shadow.o"));
/// The same for i386 patch modules.
const OBJECT_I386: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lpkg-shadow-i386.o"));

/// Whether `name` is a function the runtime provides to patches.
pub fn provides(name: &str) -> bool {
    name.starts_with("lpkg_shadow_")
}

/// The runtime for a target of `arch` as a pair: an empty old object and the compiled one.
pub fn sides(arch: Arch) -> Result<(Side, Side), Error> {
    let object = match arch {
        Arch::X86_64 => OBJECT_X86_64,
        Arch::I386 => OBJECT_I386,
    };
    let new = Obj::parse(Path::new("<lpkg runtime lpkg-shadow.o>"), object)?;
    let old = Obj::empty(&new);
    Ok((
        Side::new(old, Wanted::OldSide, false),
        Side::new(new, Wanted::All, false),
    ))
}
