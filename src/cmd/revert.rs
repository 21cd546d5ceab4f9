//! `lpkg revert --pid PID|all [--id ID | --all] [--json]` (with `--pid all`, `--id` or `--all`
//! is needed, and `[--exclude-pid PID]... [--comm REGEX]` choose processes)

use std::time::Duration;

use anyhow::Context;
use lpkg_applier::host::{self, Process};
use lpkg_applier::{RevertReport, Selection};

use super::host::{gone, one_line, print_line, who, Pids};

/// Arguments of `lpkg revert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The process to un-patch, or `all`: every process holding anything lpkg put there.
    #[arg(long, value_name = "PID|all", value_parser = super::host::parse_pids)]
    pub pid: Pids,
    /// Revert the package with this id (or a unique prefix of it).
    #[arg(long, value_name = "ID", conflicts_with = "all", value_parser = super::parse_id)]
    pub id: Option<String>,
    /// Revert every applied package.
    #[arg(long)]
    pub all: bool,
    /// Give up (and leave the process unchanged) after this many seconds [default: 10].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub select: super::host::Selection,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.select.only_host_wide(args.pid, false)?;
    let selection = match (&args.id, args.all) {
        (Some(id), _) => Selection::Id(id.clone()),
        (None, true) => Selection::All,
        (None, false) if args.pid == Pids::All => {
            return Err(super::super::exit::Usage(
                "revert --pid all needs --id ID or --all: which package to take out".into(),
            )
            .into())
        }
        (None, false) => Selection::Latest,
    };
    let timeout = Duration::from_secs(args.timeout.unwrap_or(10)).min(lpkg_kernel::MAX_TIMEOUT);
    let pid = match args.pid {
        Pids::All => return all(&args, &selection, timeout),
        Pids::One(pid) => pid,
    };
    let reports = lpkg_applier::revert(pid, &selection, timeout)
        .with_context(|| format!("reverting in process {pid}"))?;
    if args.json {
        println!("{}", json(&reports));
    } else {
        for r in &reports {
            println!("{}", line(r));
        }
    }
    Ok(())
}

fn json(reports: &[RevertReport]) -> serde_json::Value {
    reports
        .iter()
        .map(|r| serde_json::json!({"id": r.id, "name": r.name, "version": r.version, "state": r.state, "restored": r.restored}))
        .collect()
}

fn line(r: &RevertReport) -> String {
    format!(
        "reverted {} {} (id {}, was {}): {} function(s) restored",
        super::shown(&r.name),
        super::shown(&r.version),
        super::short_id(&r.id),
        r.state,
        r.restored
    )
}

/// What became of one process.
enum Outcome {
    Reverted(Vec<RevertReport>),
    Nothing,
    Failed(String),
    Gone,
}

impl Outcome {
    fn name(&self) -> &'static str {
        match self {
            Outcome::Reverted(_) => "reverted",
            Outcome::Nothing => "nothing to revert",
            Outcome::Failed(_) => "failed",
            Outcome::Gone => "gone",
        }
    }
}

fn all(args: &Args, selection: &Selection, timeout: Duration) -> anyhow::Result<()> {
    let holding = args.select.holding_lpkg()?;
    let work = |process: &Process| match lpkg_applier::revert_process(
        process.pid,
        Some(process.start_time),
        selection,
        timeout,
    ) {
        Ok(reports) => Outcome::Reverted(reports),
        Err(lpkg_applier::Error::NothingToRevert(_)) => Outcome::Nothing,
        Err(e) if gone(process, &e) => Outcome::Gone,
        Err(e) => Outcome::Failed(one_line(&anyhow::Error::new(e))),
    };
    let show = |process: &Process, outcome: &Outcome| {
        if args.json {
            return;
        }
        let text = match outcome {
            Outcome::Reverted(reports) => {
                let lines: Vec<String> = reports.iter().map(line).collect();
                lines.join("; ")
            }
            Outcome::Failed(why) => format!("failed: {why}"),
            other => other.name().to_owned(),
        };
        print_line(&format!("{}: {text}", who(process)));
    };
    let outcomes = host::in_parallel(&holding, args.select.workers(), work, show);
    let count = |name: &str| outcomes.iter().filter(|o| o.name() == name).count();
    if args.json {
        let processes: Vec<_> = holding
            .iter()
            .zip(&outcomes)
            .map(|(process, outcome)| {
                let mut value = serde_json::json!({
                    "pid": process.pid, "command": process.command,
                    "start_time": process.start_time, "result": outcome.name(),
                });
                match outcome {
                    Outcome::Reverted(reports) => value["packages"] = json(reports),
                    Outcome::Failed(why) => value["error"] = why.as_str().into(),
                    _ => {}
                }
                value
            })
            .collect();
        let value = serde_json::json!({
            "processes": processes,
            "summary": {"reverted": count("reverted"), "nothing": count("nothing to revert"),
                        "failed": count("failed"), "gone": count("gone")},
        });
        println!("{value}");
    } else {
        println!(
            "reverted {}, nothing to revert {}, failed {}, gone {}",
            count("reverted"),
            count("nothing to revert"),
            count("failed"),
            count("gone")
        );
    }
    if count("failed") > 0 {
        anyhow::bail!("{} process(es) could not be reverted", count("failed"));
    }
    Ok(())
}
