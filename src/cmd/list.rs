//! `lpkg list --pid PID|all [--json]` (with `--pid all`: `[--exclude-pid PID]... [--comm REGEX]`)

use anyhow::Context;
use lpkg_applier::host;
use lpkg_applier::{Entry, Live, LiveRecord, OrphanModule};
use lpkg_kernel::Pid;

use super::host::{gone, one_line, Pids};

/// Arguments of `lpkg list`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The process to look at, or `all`: every process holding anything lpkg put there.
    #[arg(long, value_name = "PID|all", value_parser = super::host::parse_pids)]
    pub pid: Pids,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub select: super::host::Selection,
}

/// The state shown for a patch module that no record claims (as `lpkg revert` names it).
const UNRECORDED: &str = "unrecorded module";

/// What lpkg put into one process.
struct Found {
    records: Vec<LiveRecord>,
    orphans: Vec<OrphanModule>,
}

fn read(pid: Pid) -> Result<Found, lpkg_applier::Error> {
    Ok(Found {
        records: lpkg_applier::list(pid)?,
        // A module without a record is left by an apply that was killed (or is still
        // running): shown so that nothing lpkg put into the process goes unlisted.
        orphans: lpkg_applier::unrecorded_modules(pid)?,
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.select.only_host_wide(args.pid, false)?;
    let pid = match args.pid {
        Pids::All => return all(&args),
        Pids::One(pid) => pid,
    };
    let found = read(pid).with_context(|| format!("reading the lpkg records of process {pid}"))?;
    if args.json {
        println!("{}", json(&found));
    } else if found.records.is_empty() && found.orphans.is_empty() {
        println!("no lpkg package is applied to process {pid}");
    } else {
        print(&found);
    }
    Ok(())
}

fn all(args: &Args) -> anyhow::Result<()> {
    let holding = args.select.holding_lpkg()?;
    let results = host::in_parallel(&holding, args.select.workers(), |p| read(p.pid), |_, _| {});
    let mut values = Vec::new();
    let mut failed = 0;
    for (process, result) in holding.iter().zip(results) {
        let who = super::host::who(process);
        match result {
            Ok(found) if args.json => values.push(serde_json::json!({
                "pid": process.pid,
                "command": process.command,
                "start_time": process.start_time,
                "packages": json(&found),
            })),
            Ok(found) => {
                println!("process {who}");
                print(&found);
            }
            Err(e) if gone(process, &e) => {}
            Err(e) => {
                failed += 1;
                let why = one_line(&anyhow::Error::new(e));
                if args.json {
                    values.push(serde_json::json!({
                        "pid": process.pid, "command": process.command,
                        "start_time": process.start_time, "error": why,
                    }));
                } else {
                    println!("process {who}: cannot read: {why}");
                }
            }
        }
    }
    if args.json {
        println!("{}", serde_json::Value::Array(values));
    } else if holding.is_empty() {
        println!("no process holds an lpkg package");
    }
    if failed > 0 {
        anyhow::bail!("the lpkg records of {failed} process(es) could not be read");
    }
    Ok(())
}

/// What the state column says: the record's state, and whether the live code bears it out.
fn state(record: &LiveRecord) -> String {
    match &record.live {
        Live::Drifted(functions) => format!(
            "{} but NOT LIVE: the code of {} is not what this record says (forged record, or \
             code changed since)",
            record.state.name(),
            super::shown(&functions.join(", "))
        ),
        Live::Intact | Live::NotChecked => record.state.name().to_owned(),
    }
}

/// How an entry's new code is reached (`in place`, `jump`...), or `not switched` for a record
/// still `loading`: it wrote nothing yet, the old code runs.
fn how_reached(record: &LiveRecord, entry: &Entry) -> String {
    match record.may_have_written() {
        true => entry.how(),
        false => "not switched".to_owned(),
    }
}

fn json(found: &Found) -> serde_json::Value {
    let mut value: Vec<_> = found
        .records
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.body.id,
                "name": r.body.name,
                "version": r.body.version,
                "signers": r.body.signers,
                "applied_at": r.body.applied_at,
                "sequence": r.body.sequence,
                "requires": r.body.requires,
                "state": r.state.name(),
                "interrupted": r.state.is_interrupted(),
                "live": match &r.live {
                    Live::Intact => "intact",
                    Live::Drifted(_) => "drifted",
                    Live::NotChecked => "not checked",
                },
                "drifted": match &r.live { Live::Drifted(f) => f.clone(), _ => Vec::new() },
                "target": r.body.target_path,
                "functions": r.body.entries.iter().map(|e| e.function.clone()).collect::<Vec<_>>(),
                "in_place": r.body.entries.iter().filter(|e| e.in_place.is_some() && r.may_have_written()).map(|e| e.function.clone()).collect::<Vec<_>>(),
                "entries": r.body.entries.iter().map(|e| serde_json::json!({"function": e.function, "address": e.address, "how": how_reached(r, e), "call_sites": e.call_sites})).collect::<Vec<_>>(),
            })
        })
        .collect();
    value.extend(found.orphans.iter().map(|m| {
        serde_json::json!({
            "id": m.id_prefix,
            "state": UNRECORDED,
            "interrupted": true,
            "module_address": m.address,
            "module_len": m.len,
            "unwritten_record": m.record,
            "functions": [],
            "in_place": [],
        })
    }));
    serde_json::Value::Array(value)
}

fn print(found: &Found) {
    println!(
        "{:<16}  {:<24} {:<10} {:<16} {:<20} {:>9}  STATE",
        "ID", "NAME", "VERSION", "SIGNER", "APPLIED (UTC)", "FUNCTIONS"
    );
    for r in &found.records {
        println!(
            "{:<16}  {:<24} {:<10} {:<16} {:<20} {:>9}  {}",
            super::short_id(&r.body.id),
            super::shown(&r.body.name),
            super::shown(&r.body.version),
            super::shown(r.body.signers.first().map(String::as_str).unwrap_or("-")),
            super::utc(r.body.applied_at),
            r.body.entries.len(),
            state(r)
        );
        for entry in &r.body.entries {
            let how = how_reached(r, entry);
            println!(
                "    {} at {:#x} ({how})",
                super::shown(&entry.function),
                entry.address
            );
        }
    }
    for m in &found.orphans {
        println!(
            "{:<16}  {:<24} {:<10} {:<16} {:<20} {:>9}  {UNRECORDED}",
            super::short_id(&m.id_prefix),
            "-",
            "-",
            "-",
            "-",
            0
        );
        let what = if m.record {
            "record never written"
        } else {
            "module, no jump to it"
        };
        println!(
            "    {what} at {:#x} ({} bytes): left by an apply that was interrupted or is still \
             running; the next `lpkg apply` or `lpkg revert` removes it",
            m.address, m.len
        );
    }
}
