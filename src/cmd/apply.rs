//! `lpkg apply PKG --pid PID|all [--trust FILE|DIR] [--timeout SECS] [--jump-only] [--json]`
//! (with `--pid all`: `[--exclude-pid PID]... [--comm REGEX] [--dry-run] [--workers N]`)

use std::time::Duration;

use anyhow::Context;
use lpkg_applier::{ApplyOptions, ApplyReport, VerifiedPackage};
use lpkg_format::TrustStore;

use std::path::PathBuf;

use super::host::Pids;

mod all;

/// Arguments of `lpkg apply`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The package to apply.
    #[arg(value_name = "PKG")]
    pub package: PathBuf,
    /// The process to patch, or `all`: every process that maps the package's target object
    /// (executable or library, found by build-id).
    #[arg(long, value_name = "PID|all", value_parser = super::host::parse_pids)]
    pub pid: Pids,
    /// Trusted public key (.pub) or folder of them [default: $LPKG_TRUST, then /etc/lpkg/trusted/].
    #[arg(long, value_name = "FILE|DIR")]
    pub trust: Option<PathBuf>,
    /// Give up (and leave the process unchanged) after this many seconds [default: 10].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Give every replaced function a jump to its new code, never its new code written in
    /// place of the old (which lpkg does where it is safe: spec/apply-protocol.md).
    #[arg(long)]
    pub jump_only: bool,
    /// Apply even over a higher version of the same package name.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// With --pid all: list the processes that would be patched, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub select: super::host::Selection,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.select.only_host_wide(args.pid, args.dry_run)?;
    let trust = TrustStore::resolve(args.trust.as_deref())?;
    let bytes = super::read_package_file(&args.package)?;
    let mut options = ApplyOptions {
        in_place: !args.jump_only,
        allow_downgrade: args.allow_downgrade,
        ..ApplyOptions::default()
    };
    if let Some(secs) = args.timeout {
        // Huge values wait as long as anything can (`lpkg_kernel::MAX_TIMEOUT`).
        options.timeout = Duration::from_secs(secs).min(lpkg_kernel::MAX_TIMEOUT);
    }
    let package = VerifiedPackage::open(&bytes, &trust)
        .with_context(|| format!("verifying {}", args.package.display()))?;
    // Ctrl-C or SIGTERM during apply rolls the target back before lpkg exits.
    lpkg_applier::catch_interrupts()?;
    let pid = match args.pid {
        Pids::All => return all::run(&args, &package, &options),
        Pids::One(pid) => pid,
    };
    let report = lpkg_applier::apply_package(pid, &package, &options)
        .with_context(|| format!("applying {} to process {pid}", args.package.display()))?;
    if args.json {
        println!("{}", report_json(pid, &report));
    } else {
        print_report(pid, &report);
    }
    Ok(())
}

fn report_json(pid: lpkg_kernel::Pid, report: &ApplyReport) -> serde_json::Value {
    serde_json::json!({
        "pid": pid,
        "id": report.id,
        "name": report.name,
        "version": report.version,
        "signers": report.signers,
        "module_address": format!("{:#x}", report.module_address),
        "recovered": report.recovered,
        "unwind_registered": report.unwind.as_ref().map(|u| u.is_ok()),
        "unwind": report.unwind.as_ref().map(|u| match u {
            Ok(library) => format!("registered with {library}"),
            Err(why) => format!("not registered: {why}"),
        }),
        "pause_us": report.pause.as_micros() as u64,
        "functions": report.entries.iter().zip(&report.jumps).map(|(e, jump)| serde_json::json!({
            "name": e.function,
            "address": format!("{:#x}", e.address),
            "new_address": format!("{:#x}", e.new_address),
            "in_place": e.in_place.is_some(),
            "how": e.how(),
            "call_sites_rewritten": e.call_sites.len(),
            "jump_because": jump.map(|j| j.reason()),
        })).collect::<Vec<_>>(),
    })
}

fn print_report(pid: lpkg_kernel::Pid, report: &ApplyReport) {
    for id in &report.recovered {
        println!(
            "rolled back an interrupted operation of package {}",
            super::short_id(id)
        );
    }
    println!(
        "applied {} {} (id {}) to process {pid}: {} function(s) replaced, threads paused {} us",
        report.name,
        report.version,
        &report.id[..16],
        report.entries.len(),
        report.pause.as_micros()
    );
    match &report.unwind {
        Some(Ok(library)) => println!("  unwind information registered with {library}"),
        Some(Err(why)) => println!(
            "  note: unwind information not registered ({why}): an unwinder does not \
             know the new code (C++ exceptions stop there, thread cancellation takes it for C \
             code without cleanups, backtrace() ends there)"
        ),
        None => {}
    }
    for (entry, jump) in report.entries.iter().zip(&report.jumps) {
        if entry.in_place.is_none() {
            let why = jump.map_or(String::new(), |j| format!("; {}", j.reason()));
            println!(
                "  {} {:#x} -> {:#x} ({}{why})",
                entry.function,
                entry.address,
                entry.new_address,
                entry.how()
            );
        } else {
            println!(
                "  {} {:#x}: new code written in place",
                entry.function, entry.address
            );
        }
    }
}
