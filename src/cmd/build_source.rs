//! `lpkg build-source --src DIR --patch FIX.patch... --target RELPATH --key KEY -o OUT
//! [--jobs N] [--reuse-original DIR] [--work DIR] [--deployed BIN] [--debug-file FILE] [--debug-dir DIR]
//! [--objects RELDIR] [--quiet] [-- BUILD COMMAND...]`
//!
//! Builds the tree as released and as fixed (in copies: `DIR` is never modified), diffs the
//! objects that changed and signs the package, showing each long step with its elapsed time.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use lpkg_builder::source::{self, BuildCommand};

/// Arguments of `lpkg build-source`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The project's source tree, as released (never modified).
    #[arg(long = "src", value_name = "DIR")]
    pub src: PathBuf,
    /// A fix to apply with `patch -p1`; repeat for several, applied in order.
    #[arg(long = "patch", value_name = "FIX.patch", required = true)]
    pub patches: Vec<PathBuf>,
    /// The executable or shared library to patch, relative to the tree (e.g. `src/server`).
    #[arg(long, value_name = "RELPATH")]
    pub target: PathBuf,
    /// The deployed file the package is for, when it is not the original build's RELPATH (e.g. a
    /// release built without `-ffunction-sections`); found by symbol, bound by build-id.
    #[arg(long, value_name = "BIN")]
    pub deployed: Option<PathBuf>,
    /// Compare only the objects below this folder of the tree (e.g. `.libs`, where libtool puts
    /// a shared library's objects when the build compiles each source twice, static and
    /// shared) [default: the whole tree].
    #[arg(long, value_name = "RELDIR")]
    pub objects: Option<PathBuf>,
    /// Parallel build jobs.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub jobs: usize,
    /// An original tree already built by an earlier `build-source` (its `original` folder under
    /// `--work`): not built again; the patched copy is made from it and rebuilt incrementally.
    #[arg(long, value_name = "DIR")]
    pub reuse_original: Option<PathBuf>,
    /// Keep the build copies here (`original/`, `patched/`, `objects/`) instead of a temporary
    /// folder that is removed at the end; must not exist yet.
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,
    #[command(flatten)]
    pub package: super::build::PackageArgs,
    #[command(flatten)]
    pub debug: super::build::DebugArgs,
    /// No progress display (errors and the final summary only).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// The project's build command, run in each copy [default: make].
    #[arg(last = true, value_name = "BUILD COMMAND")]
    pub build_command: Vec<String>,
}

/// Creates `--work`'s folder, which must not exist (lpkg fills it) nor lie inside the source
/// tree (which is never modified, and would be copied into itself).
fn make_work_dir(dir: &Path, src: &Path) -> anyhow::Result<()> {
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    if let (Ok(parent), Ok(src)) = (parent.canonicalize(), src.canonicalize()) {
        if parent.starts_with(&src) {
            anyhow::bail!(
                "--work {}: inside the source tree --src {}, which lpkg never modifies; give a folder outside it",
                dir.display(),
                src.display()
            );
        }
    }
    std::fs::create_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
            "--work {}: already exists; give a new folder (lpkg fills it with original/, patched/ and objects/)",
            dir.display()
        ),
        _ => anyhow::Error::new(e).context(format!("creating {}", dir.display())),
    })
}

/// Prints one line per long step on stderr: its name when it starts, its time when it ends.
struct Progress {
    quiet: bool,
}

impl Progress {
    fn step<T>(&self, what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        let started = Instant::now();
        if !self.quiet {
            eprintln!("[lpkg] {what} ...");
        }
        let result = f();
        if !self.quiet {
            let secs = started.elapsed().as_secs_f64();
            let verdict = if result.is_ok() { "done" } else { "FAILED" };
            eprintln!("[lpkg] {what}: {verdict} in {secs:.1}s");
        }
        result
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let progress = Progress { quiet: args.quiet };
    let cmd = BuildCommand::new(args.build_command.clone(), args.jobs);
    // A temporary folder is removed when `_temp` drops, after the package is written.
    let (_temp, work) = match &args.work {
        Some(dir) => {
            make_work_dir(dir, &args.src)?;
            (None, dir.clone())
        }
        None => {
            let temp = TempDir::new()?;
            let path = temp.0.clone();
            (Some(temp), path)
        }
    };
    let original = match &args.reuse_original {
        Some(dir) => dir.clone(),
        None => {
            let copy = work.join("original");
            progress.step("build original", || {
                source::copy_tree(&args.src, &copy)?;
                source::build_tree(&copy, &work.join("shim-original"), &cmd)?;
                Ok(())
            })?;
            copy
        }
    };
    let target = original.join(&args.target);
    if !target.is_file() {
        return Err(lpkg_builder::Error::NoTarget { path: target }.into());
    }
    let patched = work.join("patched");
    progress.step("build patched", || {
        // From the built original when reusing it, so only what the patches touch is rebuilt.
        let from = if args.reuse_original.is_some() {
            &original
        } else {
            &args.src
        };
        source::copy_tree(from, &patched)?;
        source::apply_patches(&patched, &args.patches)?;
        source::build_tree(&patched, &work.join("shim-patched"), &cmd)?;
        Ok(())
    })?;
    let old_dir = work.join("objects/old");
    let new_dir = work.join("objects/new");
    let changed = progress.step("diff", || {
        // Only the objects the target is linked from, when the build compiles sources twice.
        let (original, patched) = match &args.objects {
            Some(rel) => (original.join(rel), patched.join(rel)),
            None => (original.clone(), patched.clone()),
        };
        if !original.is_dir() {
            anyhow::bail!(
                "the original build has no folder {} (check --objects, it is relative to the tree)",
                original.display()
            );
        }
        let changed = source::changed_objects(&original, &patched, &args.patches)?;
        source::stage_objects(&original, &patched, &changed, &old_dir, &new_dir)?;
        Ok(changed)
    })?;
    if !args.quiet {
        for rel in &changed {
            eprintln!("[lpkg]   changed object: {}", rel.display());
        }
    }
    let deployed = args.deployed.clone().unwrap_or(target);
    let build_args = super::build::Args {
        target: deployed,
        old: old_dir,
        new: new_dir,
        package: args.package.clone(),
        debug: args.debug.clone(),
        requires: Vec::new(),
    };
    progress.step("sign", || super::build::run(build_args))
}

/// A scratch folder under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let base = std::env::temp_dir();
        for n in 0..1000u32 {
            let path = base.join(format!("lpkg-build-source.{}.{n}", std::process::id()));
            if std::fs::create_dir(&path).is_ok() {
                return Ok(TempDir(path));
            }
        }
        anyhow::bail!("cannot create a scratch folder in {}", base.display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
