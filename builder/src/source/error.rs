//! Errors of the source-tree steps (kept apart from the differ's `Error`, which they wrap).

use std::path::PathBuf;

/// Why building a patch from a source tree failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or folder could not be read, written or copied.
    #[error("{path}: {reason}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A patch did not apply to the tree.
    #[error("patch {patch} does not apply to {tree}:\n{output}")]
    Patch {
        /// The patch file.
        patch: PathBuf,
        /// The copy it was applied to.
        tree: PathBuf,
        /// What `patch` printed.
        output: String,
    },
    /// The project's build command failed.
    #[error("build of {tree} failed ({status}): {command}\n--- last lines of {log} ---\n{tail}")]
    BuildFailed {
        /// The copy being built.
        tree: PathBuf,
        /// The command line.
        command: String,
        /// Exit status as text.
        status: String,
        /// The full build output.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// No C compiler to wrap was found on `PATH`.
    #[error("no {compiler} found on PATH to wrap")]
    NoCompiler {
        /// The compiler name looked for.
        compiler: String,
    },
    /// The built tree has no file at the target's relative path.
    #[error("the original build has no {path} (check --target, it is relative to the tree)")]
    NoTarget {
        /// The expected path.
        path: PathBuf,
    },
    /// The patched build changed no object file.
    #[error("no object file differs between {original} and {patched}: the patches change nothing that is compiled")]
    NothingChanged {
        /// The original build.
        original: PathBuf,
        /// The patched build.
        patched: PathBuf,
    },
}

impl SourceError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> SourceError {
        SourceError::Io {
            path: path.into(),
            reason: e.to_string(),
        }
    }
}
