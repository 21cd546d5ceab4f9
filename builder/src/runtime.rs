//! The shadow-variable runtime (`runtime/lpkg-shadow.c`, compiled by `build.rs`): a unit of
//! its own that the module writer copies functions from when the patch calls
//! `lpkg_shadow_*`, the way it carries functions the target lacks. spec/shadow-variables.md
//! describes what it expects of the applier.

use std::path::Path;

use crate::diff::Side;
use crate::dwarf::Wanted;
use crate::error::Error;
use crate::objfile::Obj;

/// The compiled runtime.
const OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/lpkg-shadow.o"));

/// Whether `name` is a function the runtime provides to patches.
pub fn provides(name: &str) -> bool {
    name.starts_with("lpkg_shadow_")
}

/// The runtime as a pair: an empty old object and the compiled one.
pub fn sides() -> Result<(Side, Side), Error> {
    let new = Obj::parse(Path::new("<lpkg runtime lpkg-shadow.o>"), OBJECT)?;
    let old = Obj::empty(&new);
    Ok((
        Side::new(old, Wanted::OldSide, false),
        Side::new(new, Wanted::All, false),
    ))
}
