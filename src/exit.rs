//! Exit codes, in one place, and how an error maps to one.

use std::process::ExitCode;

/// Success.
pub const SUCCESS: u8 = 0;
/// Operational failure (I/O, keys, trust store, not implemented...).
pub const FAILURE: u8 = 1;
/// Usage error (bad command line); clap exits with this code itself, [`Usage`] otherwise.
pub const USAGE: u8 = 2;
/// The package is rejected: no trusted signature, an invalid signature, or corrupt.
pub const REJECTED: u8 = 3;
/// The package does not match the target (wrong build, already patched...). Used by `apply`.
pub const MISMATCH: u8 = 4;

/// `status`: a process lacks an installed package, its code is not what its records say, or
/// its records could not be read.
pub const EXPOSED: u8 = 5;

/// A command line that clap accepts but that makes no sense (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The exit code table shown at the end of `lpkg --help`.
pub const HELP: &str = "\
Exit codes:
  0  success
  1  operational failure (I/O, keys, trust store, ...)
  2  usage error
  3  package rejected: no trusted signature, invalid signature, or corrupt package
  4  package does not match the target process
  5  status: a process is exposed (an installed package not applied), drifted or unreadable";

/// Prints the error (every cause, on one line) and returns the exit code for `result`.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(SUCCESS),
        Err(err) => {
            // Causes quote packages, files and processes: nothing in them reaches the terminal
            // as a control character.
            eprintln!("error: {}", super::cmd::shown(&one_line(&err)));
            ExitCode::from(code_for(&err))
        }
    }
}

/// Every cause of `err` on one line, `: ` between them; a cause whose text ends the one
/// before it (an I/O error a message already quotes) is not said twice. At most
/// [`LONGEST_LINE`] characters: a cause may quote what a process or a package holds.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain().map(|c| c.to_string()) {
        if line.is_empty() {
            line = cause;
        } else if !line.ends_with(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    match line.char_indices().nth(LONGEST_LINE) {
        Some((end, _)) => format!("{} [...]", &line[..end]),
        None => line,
    }
}

/// The longest error line printed, in characters.
const LONGEST_LINE: usize = 4096;

fn code_for(err: &anyhow::Error) -> u8 {
    let applier = || {
        err.chain()
            .filter_map(|c| c.downcast_ref::<lpkg_applier::Error>())
    };
    let rejected = err
        .chain()
        .filter_map(|c| c.downcast_ref::<lpkg_format::Error>())
        .any(|e| e.is_rejection())
        || applier().any(|e| e.is_rejection());
    if err.chain().any(|c| c.is::<Usage>()) {
        USAGE
    } else if err.chain().any(|c| c.is::<super::cmd::status::Exposed>()) {
        EXPOSED
    } else if rejected {
        REJECTED
    } else if applier().any(|e| e.is_mismatch()) {
        MISMATCH
    } else {
        FAILURE
    }
}
