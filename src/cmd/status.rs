//! `lpkg status [--store DIR] [--trust FILE|DIR] [--json]`: the host against its store.

use lpkg_applier::daemon::{DaemonState, FailedApply};
use lpkg_applier::status::{self, Installed, ProcessStatus};
use lpkg_applier::Live;

/// Arguments of `lpkg status`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub stores: super::StoreArgs,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub select: super::host::Selection,
}

/// Status found processes that lack an installed package, whose code is not what their
/// records say, or whose records could not be read (exit code 5).
#[derive(Debug, thiserror::Error)]
#[error("{exposed} process(es) exposed, {drifted} drifted, {unreadable} unreadable")]
pub struct Exposed {
    exposed: usize,
    drifted: usize,
    unreadable: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (trust, store) = args.stores.resolve()?;
    let (stored, skipped) = store.packages(&trust)?;
    for s in &skipped {
        eprintln!("lpkg: skipped {}: {}", s.path.display(), s.error);
    }
    let installed: Vec<Installed> = stored
        .iter()
        .map(|s| {
            let m = s.package.manifest();
            Installed {
                id: s.package.id(),
                name: m.package.name.clone(),
                version: m.package.version.clone(),
                build_id: m.target.build_id.clone(),
            }
        })
        .collect();
    let processes = status::status(args.select.processes()?, &installed, args.select.workers());
    let summary = Exposed {
        exposed: processes.iter().filter(|p| !p.exposed.is_empty()).count(),
        drifted: processes
            .iter()
            .filter(|p| p.drifted().next().is_some())
            .count(),
        unreadable: processes.iter().filter(|p| p.error.is_some()).count(),
    };
    let daemon = lpkg_applier::daemon::states();
    if args.json {
        print_json(&processes, &installed, &skipped, &summary, &daemon);
    } else {
        print_text(&processes, &installed, &summary, &daemon);
    }
    if summary.exposed + summary.drifted + summary.unreadable > 0 {
        return Err(summary.into());
    }
    Ok(())
}

/// The daemons' failures for `process`.
fn daemon_failures<'a>(
    daemon: &'a [DaemonState],
    process: &'a ProcessStatus,
) -> impl Iterator<Item = &'a FailedApply> {
    (daemon.iter().flat_map(|d| &d.failures))
        .filter(|f| f.pid == process.process.pid && f.start_time == process.process.start_time)
}

fn live_name(live: &Live) -> &'static str {
    match live {
        Live::Intact => "intact",
        Live::Drifted(_) => "drifted",
        Live::NotChecked => "not checked",
    }
}

fn print_json(
    processes: &[ProcessStatus],
    installed: &[Installed],
    skipped: &[lpkg_format::Skipped],
    summary: &Exposed,
    daemon: &[DaemonState],
) {
    let processes: Vec<_> = processes
        .iter()
        .map(|p| {
            serde_json::json!({
                "pid": p.process.pid,
                "command": p.process.command,
                "start_time": p.process.start_time,
                "cgroup": p.cgroup,
                "unit": p.unit,
                "objects": p.objects.iter().map(|(path, build_id)| serde_json::json!({
                    "path": path.to_string_lossy(), "build_id": build_id,
                })).collect::<Vec<_>>(),
                "applied": p.applied.iter().map(|r| serde_json::json!({
                    "id": r.body.id, "name": r.body.name, "version": r.body.version,
                    "state": r.state.name(), "live": live_name(&r.live),
                    "drifted": match &r.live { Live::Drifted(f) => f.clone(), _ => Vec::new() },
                })).collect::<Vec<_>>(),
                "exposed": p.exposed.iter().map(|&i| serde_json::json!({
                    "id": installed[i].id, "name": installed[i].name,
                    "version": installed[i].version,
                })).collect::<Vec<_>>(),
                "error": p.error,
                "daemon_failures": daemon_failures(daemon, p).collect::<Vec<_>>(),
            })
        })
        .collect();
    let value = serde_json::json!({
        "installed": installed.iter().map(|i| serde_json::json!({
            "id": i.id, "name": i.name, "version": i.version, "build_id": i.build_id,
        })).collect::<Vec<_>>(),
        "skipped": skipped.iter().map(|s| serde_json::json!({
            "path": s.path.to_string_lossy(), "error": s.error.to_string(),
        })).collect::<Vec<_>>(),
        "processes": processes,
        "daemons": daemon,
        "summary": {
            "processes": processes.len(),
            "exposed": summary.exposed,
            "drifted": summary.drifted,
            "unreadable": summary.unreadable,
        },
    });
    println!("{value}");
}

fn print_text(
    processes: &[ProcessStatus],
    installed: &[Installed],
    summary: &Exposed,
    daemon: &[DaemonState],
) {
    for p in processes {
        let unit = p
            .unit
            .as_deref()
            .map_or(String::new(), |u| format!(" [{}]", super::shown(u)));
        println!("{}{unit}", super::host::who(&p.process));
        for (path, build_id) in &p.objects {
            println!(
                "    runs {} ({build_id})",
                super::shown(&path.to_string_lossy())
            );
        }
        for r in &p.applied {
            let state = match &r.live {
                Live::Drifted(functions) => format!(
                    "DRIFTED: the code of {} is not what the record says",
                    super::shown(&functions.join(", "))
                ),
                _ => r.state.name().to_owned(),
            };
            println!(
                "    {} {} {} (id {}): {state}",
                if r.is_live() { "patched" } else { "package" },
                super::shown(&r.body.name),
                super::shown(&r.body.version),
                super::short_id(&r.body.id)
            );
        }
        for &i in &p.exposed {
            let package = &installed[i];
            println!(
                "    EXPOSED: installed {} {} (id {}) is not applied",
                package.name,
                package.version,
                &package.id[..16]
            );
        }
        if let Some(error) = &p.error {
            println!("    UNREADABLE: {}", super::shown(error));
        }
        for failure in daemon_failures(daemon, p) {
            println!(
                "    daemon: failed {} time(s), retrying: {}",
                failure.attempts,
                super::shown(&failure.error)
            );
        }
    }
    let daemons: Vec<String> = daemon.iter().map(|d| d.daemon.to_string()).collect();
    match daemons.as_slice() {
        [] => println!("no lpkg daemon running"),
        pids => println!("lpkg daemon running (pid {})", pids.join(", ")),
    }
    println!(
        "{} process(es); {} installed package(s); exposed {}, drifted {}, unreadable {}",
        processes.len(),
        installed.len(),
        summary.exposed,
        summary.drifted,
        summary.unreadable
    );
}
