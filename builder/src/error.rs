//! The one error type of the builder.

use std::path::PathBuf;

/// Why a build failed or was refused.
///
/// Refusals name the symbol (or type) and the reason, so the engineer knows what to change.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not an ELF object this builder understands.
    #[error("{path}: {reason}")]
    BadInput {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The target has no GNU build-id note.
    #[error("{path}: target has no GNU build-id (link with --build-id)")]
    NoBuildId {
        /// The target file.
        path: PathBuf,
    },
    /// The target has no `.symtab` (it was stripped) and no debug file was given or found.
    #[error("{path}: target is stripped (no .symtab) and no debug file with its build-id {build_id} was found (looked for {looked}); give it with --debug-file FILE (the -dbgsym package's /usr/lib/debug/.build-id/ file, debuginfod's, or one from a rebuild with the same build-id), or use the unstripped build")]
    StrippedTarget {
        /// The target file.
        path: PathBuf,
        /// The target's GNU build-id.
        build_id: String,
        /// The files looked for, comma-separated.
        looked: String,
    },
    /// The debug file given or found for a stripped target is not that target's.
    #[error("{debug}: not the debug file of {target}: its build-id is {found}, the target's is {expected}")]
    WrongDebugFile {
        /// The target file.
        target: PathBuf,
        /// The debug file.
        debug: PathBuf,
        /// The target's build-id.
        expected: String,
        /// The debug file's build-id (`none` when it has none).
        found: String,
    },
    /// An object was not compiled with `-ffunction-sections`.
    #[error("{path}: several functions share section {section} ({functions}); compile with -ffunction-sections -fdata-sections")]
    MultiFunctionText {
        /// The object file.
        path: PathBuf,
        /// The shared section.
        section: String,
        /// Some of the functions found in `.text`.
        functions: String,
    },
    /// The change cannot be expressed as a live patch.
    #[error("refused: {symbol}: {reason}")]
    Refused {
        /// The function, data object or type concerned.
        symbol: String,
        /// Why.
        reason: String,
    },
    /// A relocation type the applier does not support.
    #[error("refused: {symbol}: unsupported relocation type {r_type} at offset {offset:#x} (against {target})")]
    UnsupportedRelocation {
        /// The function or data object holding the relocation.
        symbol: String,
        /// Offset of the relocation inside it.
        offset: u64,
        /// ELF relocation type name or number.
        r_type: String,
        /// The symbol the relocation refers to.
        target: String,
    },
    /// A symbol the patch needs is not where it should be in the target.
    #[error("refused: {symbol}: not found in target {path} ({reason})")]
    NotInTarget {
        /// The symbol.
        symbol: String,
        /// The target file.
        path: PathBuf,
        /// Details.
        reason: String,
    },
    /// Writing the patch module failed.
    #[error("cannot write module.o: {0}")]
    Write(String),
    /// `build-source`: a file or folder of the source tree or of a build copy could not be
    /// read, written or copied.
    #[error("{path}: {reason}")]
    SourceTree {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// `build-source`: a patch did not apply to the tree.
    #[error("patch {patch} does not apply to {tree}:\n{output}")]
    Patch {
        /// The patch file.
        patch: PathBuf,
        /// The copy it was applied to.
        tree: PathBuf,
        /// What `patch` printed.
        output: String,
    },
    /// `build-source`: the project's build command failed.
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
    /// `build-source`: no C compiler to wrap was found on `PATH`.
    #[error("no {compiler} found on PATH to wrap")]
    NoCompiler {
        /// The compiler name looked for.
        compiler: String,
    },
    /// `build-source`: the built tree has no file at the target's relative path.
    #[error("the original build has no {path} (check --target, it is relative to the tree)")]
    NoTarget {
        /// The expected path.
        path: PathBuf,
    },
    /// `build-source`: the patched build changed no object file.
    #[error("no object file differs between {original} and {patched}: the patches change {touched}, and no object built from them differs (the changed code is not built by the build command, or is under a disabled #if or configure option)")]
    NothingChanged {
        /// The original build.
        original: PathBuf,
        /// The patched build.
        patched: PathBuf,
        /// The files the patches change, comma-separated.
        touched: String,
    },
}

impl Error {
    /// A source-tree file operation that failed on `path`.
    pub(crate) fn tree(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Error {
        Error::SourceTree {
            path: path.into(),
            reason: e.to_string(),
        }
    }
}

/// Shorthand for a refusal.
pub(crate) fn refuse(symbol: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Refused {
        symbol: symbol.into(),
        reason: reason.into(),
    }
}
