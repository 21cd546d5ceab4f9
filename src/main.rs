//! `lpkg`: build, sign, verify, inspect and apply live-patch packages.
//!
//! Thin on purpose: parse the command line, call the library crates, print. Each command lives
//! in its own file under `cmd/`; exit codes are decided in `exit.rs` only.

#![forbid(unsafe_code)]
mod cmd;
mod exit;

use clap::{Parser, Subcommand};

/// Live-patch running Linux processes with signed packages.
#[derive(Parser, Debug)]
#[command(name = "lpkg", version, about, after_help = exit::HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a signing key pair: PATH.key (secret, mode 0600) and PATH.pub.
    Keygen(cmd::keygen::Args),
    /// Add a signature to a package (existing signatures are kept).
    Sign(cmd::sign::Args),
    /// Check that a package is signed by a trusted key and intact.
    Verify(cmd::verify::Args),
    /// Show everything a package contains and whether it is verified.
    Inspect(cmd::inspect::Args),
    /// Write a package's manifest and payloads as files, for auditing.
    Extract(cmd::extract::Args),
    /// Build a signed package from the old and new object files of a fix.
    Build(cmd::build::Args),
    /// Build a signed package from a source tree and patch files (builds it as released and fixed).
    BuildSource(cmd::build_source::Args),
    /// Apply a package to a running process.
    Apply(cmd::apply::Args),
    /// List the packages applied to a running process.
    List(cmd::list::Args),
    /// Revert packages applied to a running process.
    Revert(cmd::revert::Args),
    /// Verify a package and keep it in the host's store (for `status` and `daemon`).
    Install(cmd::install::Args),
    /// Remove a package from the store (processes that have it applied keep it).
    Uninstall(cmd::uninstall::Args),
    /// List the packages of the store.
    Installed(cmd::installed::Args),
    /// Show every process that runs the target of an installed package, or holds one:
    /// what is applied, what is exposed, what drifted.
    Status(cmd::status::Args),
    /// Run in the foreground, applying installed packages to processes as they start.
    Daemon(cmd::daemon::Args),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen(args) => cmd::keygen::run(args),
        Command::Sign(args) => cmd::sign::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Extract(args) => cmd::extract::run(args),
        Command::Build(args) => cmd::build::run(args),
        Command::BuildSource(args) => cmd::build_source::run(args),
        Command::Apply(args) => cmd::apply::run(args),
        Command::List(args) => cmd::list::run(args),
        Command::Revert(args) => cmd::revert::run(args),
        Command::Install(args) => cmd::install::run(args),
        Command::Uninstall(args) => cmd::uninstall::run(args),
        Command::Installed(args) => cmd::installed::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::Daemon(args) => cmd::daemon::run(args),
    }
}

fn main() -> std::process::ExitCode {
    // Best effort: without it a closed pipe only turns into an error message.
    let _ = lpkg_kernel::interrupt::default_sigpipe();
    // clap prints usage errors itself and exits with 2 (exit::USAGE).
    exit::report(run(Cli::parse()))
}
