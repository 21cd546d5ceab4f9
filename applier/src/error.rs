//! The applier's error type.

use std::time::Duration;

/// Everything that can stop an apply, list or revert. After any error the target is as it was
/// before the command started (or, for a crash of lpkg itself, recorded as interrupted).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The package failed verification (signature, trust or digests).
    #[error(transparent)]
    Package(#[from] lpkg_format::Error),
    /// Contact with the process failed.
    #[error(transparent)]
    Process(#[from] lpkg_kernel::Error),
    /// No object mapped in the process has the package's build-id.
    #[error("process {pid} has no object with build-id {build_id} ({file_name}): this package is for another binary")]
    WrongTarget {
        /// The process.
        pid: i32,
        /// The build-id the package is bound to.
        build_id: String,
        /// The target's file name from the manifest.
        file_name: String,
    },
    /// The package was built for another machine than the process runs, or than lpkg patches.
    #[error("package is for {machine}, {reason}")]
    WrongMachine {
        /// The machine the manifest names.
        machine: String,
        /// What does not fit: the process's machine, or the machines lpkg patches.
        reason: String,
    },
    /// The package is a lower version of one applied to the process.
    #[error("process {pid} runs {name} {applied}: applying the lower version {version} would make older code live again (--allow-downgrade to do it anyway)")]
    Downgrade {
        /// The process.
        pid: i32,
        /// The package name.
        name: String,
        /// The version refused.
        version: String,
        /// The higher version applied.
        applied: String,
    },
    /// A signed manifest gives a size or an offset that does not fit the target or the module.
    #[error("package: function {function}: {reason}")]
    BadManifest {
        /// The function.
        function: String,
        /// What does not fit.
        reason: String,
    },
    /// A function's live bytes are neither the original nor an lpkg jump.
    #[error("function {function} at {address:#x} does not hold the bytes the package expects: someone else changed this code")]
    PreimageMismatch {
        /// The function.
        function: String,
        /// Its address in the process.
        address: u64,
    },
    /// The patch module or its symbol map is malformed (what a correct builder never writes).
    #[error("patch module: {0}")]
    BadModule(String),
    /// A relocation of the patch module cannot be applied where the module is loaded.
    #[error("patch module: relocation at {section}+{offset:#x} against {symbol}: {reason}")]
    Relocation {
        /// The module section holding the relocated field.
        section: String,
        /// The field's offset in it.
        offset: u64,
        /// The symbol it refers to.
        symbol: String,
        /// Why it cannot be applied (a value out of reach, a field past the section).
        reason: String,
    },
    /// The module uses a relocation type lpkg does not link.
    #[error("patch module: unsupported {machine} relocation type {r_type}")]
    UnsupportedRelocation {
        /// The machine of the module.
        machine: &'static str,
        /// The ELF relocation type.
        r_type: u32,
    },
    /// The module refers to a thread-local variable lpkg cannot place.
    #[error("patch module: TLS symbol {symbol}: {reason}")]
    UnsupportedTls {
        /// The symbol.
        symbol: String,
        /// Why.
        reason: String,
    },
    /// A replaced function's new code lies out of the reach of a `jmp rel32` from its entry.
    #[error("patch module: {function} is out of jump reach of its patch")]
    OutOfJumpReach {
        /// The function.
        function: String,
    },
    /// A function to replace is shorter than the jump written over its entry.
    #[error("patch module: function {function} is shorter than a jump")]
    FunctionTooShort {
        /// The function.
        function: String,
        /// Its size in bytes.
        size: u64,
    },
    /// The padding after a function shorter than a jump, which the jump runs into, is not
    /// the target file's.
    #[error("function {function}: the padding at {address:#x} after it, which its jump would overwrite, is not the target file's")]
    PaddingChanged {
        /// The function.
        function: String,
        /// Where the padding differs.
        address: u64,
    },
    /// A call site the manifest lists for a function too short for a jump does not lead to
    /// it (or lies outside the target's code).
    #[error("function {function}: the call site at {address:#x} does not call it")]
    CallSiteChanged {
        /// The function.
        function: String,
        /// Address of the call's displacement.
        address: u64,
    },
    /// An applied package led the calls of this function (too short for a jump) to its own
    /// new code: replacing the function again would not change what the calls reach.
    #[error("function {function}: an applied package leads its call sites to its own new code; revert it first")]
    CallSitesRedirected {
        /// The function.
        function: String,
    },
    /// The module of an applied package may call a function whose call sites this package
    /// would redirect: those calls would keep reaching the old code.
    #[error("function {function}: the patch module of applied package {package} may call it, and only the target's call sites can be redirected; revert that package first")]
    CalledFromModule {
        /// The function.
        function: String,
        /// The applied package's name.
        package: String,
    },
    /// An object mapped in the process is not an ELF file lpkg can read.
    #[error("patch module: {path}: {reason}")]
    BadObject {
        /// The object's path in the process.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A symbol the module needs is nowhere in the process.
    #[error("symbol {symbol} is not defined by any object loaded in process {pid}")]
    UnresolvedSymbol {
        /// The process.
        pid: i32,
        /// The symbol.
        symbol: String,
    },
    /// Threads stayed inside functions being replaced until the timeout.
    #[error("gave up after {waited:?}: {}", busy.join("; "))]
    Busy {
        /// How long apply kept retrying.
        waited: Duration,
        /// One line per busy thread: TID, name, function.
        busy: Vec<String>,
    },
    /// An init routine returned non-zero; the patch was rolled back.
    #[error("init routine {routine} returned {value}: the patch was rolled back")]
    InitFailed {
        /// The routine's symbol.
        routine: String,
        /// What it returned.
        value: i64,
    },
    /// A check routine returned non-zero before the switch; nothing of the target changed. Not
    /// a mismatch: the process may take the package later (`lpkg daemon` retries it).
    #[error(
        "check routine {routine} returned {value}: the package was not applied, nothing changed"
    )]
    CheckRefused {
        /// The routine's symbol.
        routine: String,
        /// What it returned.
        value: i64,
    },
    /// A package this one stacks on is not applied to the process.
    #[error("package requires {name} (id {id}) to be applied to process {pid} first")]
    MissingRequirement {
        /// The process.
        pid: i32,
        /// The required package's name.
        name: String,
        /// Its package id.
        id: String,
    },
    /// The package is already applied to this process.
    #[error("package {id} is already applied to process {pid}")]
    AlreadyApplied {
        /// The process.
        pid: i32,
        /// The package id.
        id: String,
    },
    /// Nothing matches what revert was asked for.
    #[error("{0}")]
    NothingToRevert(String),
    /// An in-target record cannot be read.
    #[error("record at {address:#x} in process {pid} is unreadable: {reason}")]
    BadRecord {
        /// The process.
        pid: i32,
        /// Where the record is mapped.
        address: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// SIGINT or SIGTERM arrived during apply: what was done was rolled back.
    #[error("interrupted at step {step}: the patch was rolled back")]
    Interrupted {
        /// The last step reached.
        step: &'static str,
    },
    /// The process's dynamic loader did not finish loading its libraries within the timeout.
    #[error("process {pid} is still being started by its dynamic loader (libraries not all loaded and relocated): try again")]
    StillLoading {
        /// The process.
        pid: i32,
    },
    /// Another lpkg command is changing the process and did not finish in time.
    #[error("process {pid} is being changed by another lpkg command ({holder}); waited {waited:?}: try again once it is done")]
    Locked {
        /// The process.
        pid: i32,
        /// The other command, as its lock file names it.
        holder: String,
        /// How long this command waited.
        waited: Duration,
    },
    /// The folder of the per-process locks may be changed by others.
    #[error("lock folder {path}: {reason} (or set LPKG_RUN_DIR)")]
    InsecureRunDir {
        /// The folder.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A per-process lock file could not be used.
    #[error("lock file {path}: {source} (set LPKG_RUN_DIR to a folder lpkg may write)")]
    LockFile {
        /// The file or its folder.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Another operation would break a stacked package.
    #[error("{0}")]
    Stacking(String),
}

impl Error {
    /// The package was refused before anything was touched: bad signature, untrusted, corrupt.
    pub fn is_rejection(&self) -> bool {
        matches!(self, Error::Package(e) if e.is_rejection())
    }

    /// The process is gone: it exited, or its pid names another process than the one meant.
    pub fn is_gone(&self) -> bool {
        use lpkg_kernel::Error as K;
        matches!(
            self,
            Error::Process(
                K::ProcessExited { .. }
                    | K::NoSuchProcess { .. }
                    | K::Zombie { .. }
                    | K::ProcessReplaced { .. }
            )
        )
    }

    /// The package does not fit this process: another binary or machine (a program of an
    /// architecture lpkg does not patch too, like a machine mismatch), or code someone else
    /// changed.
    pub fn is_mismatch(&self) -> bool {
        matches!(
            self,
            Error::Process(lpkg_kernel::Error::UnsupportedArch { .. })
                | Error::WrongTarget { .. }
                | Error::WrongMachine { .. }
                | Error::BadManifest { .. }
                | Error::Downgrade { .. }
                | Error::PreimageMismatch { .. }
                | Error::PaddingChanged { .. }
                | Error::CallSiteChanged { .. }
                | Error::CallSitesRedirected { .. }
                | Error::CalledFromModule { .. }
                | Error::AlreadyApplied { .. }
                | Error::MissingRequirement { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    /// A process of an architecture lpkg does not patch (x32, ARM under binfmt...) exits like
    /// a package for another machine (code 4).
    #[test]
    fn an_unsupported_architecture_is_a_mismatch() {
        let error = Error::Process(lpkg_kernel::Error::UnsupportedArch {
            pid: 1,
            class: 1,
            machine: 62,
        });
        assert!(error.is_mismatch());
        assert!(!error.is_gone() && !error.is_rejection());
        let other = Error::Process(lpkg_kernel::Error::NoSuchProcess { pid: 1 });
        assert!(!other.is_mismatch());
    }
}
