//! `lpkg apply PKG --pid all`: the package applied to every process that maps its target.

use lpkg_applier::host::{self, Process};
use lpkg_applier::{ApplyOptions, VerifiedPackage};

use super::super::host::{gone, one_line, print_line, who};
use super::Args;

/// What became of one process.
enum Outcome {
    Applied { functions: usize, pause_us: u64 },
    Already,
    WouldApply,
    Refused(String),
    Failed(String),
    Gone,
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Already => "already applied",
            Outcome::WouldApply => "would apply",
            Outcome::Refused(_) => "refused",
            Outcome::Failed(_) => "failed",
            Outcome::Gone => "gone",
        }
    }

    fn line(&self) -> String {
        match self {
            Outcome::Applied {
                functions,
                pause_us,
            } => format!("applied: {functions} function(s) replaced, threads paused {pause_us} us"),
            Outcome::Refused(why) => format!("refused: {why}"),
            Outcome::Failed(why) => format!("failed: {why}"),
            other => other.name().to_owned(),
        }
    }
}

pub fn run(args: &Args, package: &VerifiedPackage, options: &ApplyOptions) -> anyhow::Result<()> {
    let target = &package.manifest().target;
    let matching = host::running(args.select.processes()?, &target.build_id);
    let id = package.id();
    let work = |(process, _): &(Process, lpkg_kernel::maps::MapEntry)| {
        if args.dry_run {
            return dry_run(process, &id);
        }
        if lpkg_kernel::interrupt::requested() {
            return Outcome::Failed("not tried: interrupted".to_owned());
        }
        let options = ApplyOptions {
            start_time: Some(process.start_time),
            ..options.clone()
        };
        match lpkg_applier::apply_package(process.pid, package, &options) {
            Ok(report) => Outcome::Applied {
                functions: report.entries.len(),
                pause_us: report.pause.as_micros() as u64,
            },
            Err(lpkg_applier::Error::AlreadyApplied { .. }) => Outcome::Already,
            Err(e) if gone(process, &e) => Outcome::Gone,
            Err(e) if e.is_mismatch() || e.is_rejection() => {
                Outcome::Refused(one_line(&anyhow::Error::new(e)))
            }
            Err(e) => Outcome::Failed(one_line(&anyhow::Error::new(e))),
        }
    };
    let show = |(process, _): &(Process, lpkg_kernel::maps::MapEntry), outcome: &Outcome| {
        if !args.json {
            print_line(&format!("{}: {}", who(process), outcome.line()));
        }
    };
    let outcomes = host::in_parallel(&matching, args.select.workers(), work, show);
    let count = |name: &str| outcomes.iter().filter(|o| o.name() == name).count();
    let not_patched = count("refused") + count("failed");
    if args.json {
        let processes: Vec<_> = matching
            .iter()
            .zip(&outcomes)
            .map(|((process, entry), outcome)| {
                let mut value = serde_json::json!({
                    "pid": process.pid,
                    "command": process.command,
                    "start_time": process.start_time,
                    "object": entry.path.as_deref().unwrap_or(std::path::Path::new("")).to_string_lossy(),
                    "result": outcome.name(),
                });
                match outcome {
                    Outcome::Refused(why) | Outcome::Failed(why) => {
                        value["error"] = why.as_str().into()
                    }
                    Outcome::Applied {
                        pause_us,
                        functions,
                    } => {
                        value["pause_us"] = (*pause_us).into();
                        value["functions"] = (*functions).into();
                    }
                    _ => {}
                }
                value
            })
            .collect();
        let summary = serde_json::json!({
            "id": id,
            "name": package.manifest().package.name,
            "version": package.manifest().package.version,
            "dry_run": args.dry_run,
            "processes": processes,
            "summary": {
                "applied": count("applied"), "already": count("already applied"),
                "would_apply": count("would apply"), "refused": count("refused"),
                "failed": count("failed"), "gone": count("gone"),
            },
        });
        println!("{summary}");
    } else if args.dry_run {
        println!(
            "dry run: would apply to {}, already applied {}",
            count("would apply"),
            count("already applied")
        );
    } else {
        println!(
            "applied {}, already {}, refused {}, failed {}, gone {}",
            count("applied"),
            count("already applied"),
            count("refused"),
            count("failed"),
            count("gone")
        );
    }
    if not_patched > 0 {
        anyhow::bail!(
            "{not_patched} of {} matching process(es) do not have the package",
            matching.len()
        );
    }
    Ok(())
}

/// What an apply would do to `process`, changing nothing.
fn dry_run(process: &Process, id: &str) -> Outcome {
    match lpkg_applier::list(process.pid) {
        Ok(records) if records.iter().any(|r| r.body.id == id && r.is_live()) => Outcome::Already,
        Ok(_) => Outcome::WouldApply,
        Err(e) if gone(process, &e) => Outcome::Gone,
        Err(e) => Outcome::Failed(one_line(&anyhow::Error::new(e))),
    }
}
