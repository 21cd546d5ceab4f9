//! Build a patch from a source tree and patch files: build the tree as released and as fixed
//! (in copies, never touching the user's tree), through a compiler wrapper that adds
//! `-ffunction-sections -fdata-sections`, then diff the objects whose bytes changed.
//!
//! The steps are separate functions so the CLI can show progress between them. They fail with
//! the builder's one [`Error`] (its `build-source` variants).

mod objects;
mod shim;
mod tree;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::Error;
pub use objects::{changed_objects, stage_objects};
pub use tree::{apply_patches, copy_tree, tree_digest};

/// One build of a tree: where it ran, how, and how long it took.
#[derive(Debug, Clone)]
pub struct TreeBuild {
    /// The copy that was built.
    pub dir: PathBuf,
    /// Wall time of the build command.
    pub elapsed: Duration,
}

/// How to run the project's own build.
#[derive(Debug, Clone)]
pub struct BuildCommand {
    /// Program and arguments; `make` when the user gave none.
    pub argv: Vec<String>,
    /// Parallel jobs (`MAKEFLAGS=-jN`).
    pub jobs: usize,
    /// Lines of compiler output shown when the build fails.
    pub tail_lines: usize,
}

impl BuildCommand {
    /// `argv`, or `make` when empty.
    pub fn new(argv: Vec<String>, jobs: usize) -> BuildCommand {
        let argv = if argv.is_empty() {
            vec!["make".to_owned()]
        } else {
            argv
        };
        BuildCommand {
            argv,
            jobs: jobs.max(1),
            tail_lines: 30,
        }
    }
}

/// Runs `cmd` in `dir` with the compiler wrapper installed for that tree.
///
/// The wrapper lives in `shim_dir` (outside the tree, so the tree's contents stay the project's);
/// the build's combined output goes to `shim_dir/build.log`.
pub fn build_tree(dir: &Path, shim_dir: &Path, cmd: &BuildCommand) -> Result<TreeBuild, Error> {
    let started = std::time::Instant::now();
    let shim = shim::Shim::install(shim_dir, dir)?;
    let log = shim_dir.join("build.log");
    shim.run(dir, cmd, &log)?;
    Ok(TreeBuild {
        dir: dir.to_path_buf(),
        elapsed: started.elapsed(),
    })
}
