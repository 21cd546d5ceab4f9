//! `lpkg list --pid PID [--json]`

use anyhow::Context;

/// Arguments of `lpkg list`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The process to look at.
    #[arg(long, value_name = "PID")]
    pub pid: u32,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The state shown for a patch module that no record claims (as `lpkg revert` names it).
const UNRECORDED: &str = "unrecorded module";

pub fn run(args: Args) -> anyhow::Result<()> {
    let pid = super::pid(args.pid)?;
    let records = lpkg_applier::list(pid)
        .with_context(|| format!("reading the lpkg records of process {pid}"))?;
    // A module without a record is left by an apply that was killed (or is still running):
    // shown so that nothing lpkg put into the process goes unlisted.
    let orphans = lpkg_applier::unrecorded_modules(pid)
        .with_context(|| format!("reading the memory map of process {pid}"))?;
    if args.json {
        let mut value: Vec<_> = records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.body.id,
                    "name": r.body.name,
                    "version": r.body.version,
                    "signers": r.body.signers,
                    "applied_at": r.body.applied_at,
                    "sequence": r.body.sequence,
                    "state": r.state.name(),
                    "interrupted": r.state.is_interrupted(),
                    "target": r.body.target_path,
                    "functions": r.body.entries.iter().map(|e| e.function.clone()).collect::<Vec<_>>(),
                    "in_place": r.body.entries.iter().filter(|e| e.in_place.is_some()).map(|e| e.function.clone()).collect::<Vec<_>>(),
                    "entries": r.body.entries.iter().map(|e| serde_json::json!({"function": e.function, "address": e.address, "how": e.how(), "call_sites": e.call_sites})).collect::<Vec<_>>(),
                })
            })
            .collect();
        value.extend(orphans.iter().map(|m| {
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
        println!("{}", serde_json::Value::Array(value));
        return Ok(());
    }
    if records.is_empty() && orphans.is_empty() {
        println!("no lpkg package is applied to process {pid}");
        return Ok(());
    }
    println!(
        "{:<16}  {:<24} {:<10} {:<16} {:<20} {:>9}  STATE",
        "ID", "NAME", "VERSION", "SIGNER", "APPLIED (UTC)", "FUNCTIONS"
    );
    for r in &records {
        println!(
            "{:<16}  {:<24} {:<10} {:<16} {:<20} {:>9}  {}",
            super::short_id(&r.body.id),
            super::shown(&r.body.name),
            super::shown(&r.body.version),
            super::shown(r.body.signers.first().map(String::as_str).unwrap_or("-")),
            super::utc(r.body.applied_at),
            r.body.entries.len(),
            r.state.name()
        );
        for entry in &r.body.entries {
            let how = entry.how();
            println!(
                "    {} at {:#x} ({how})",
                super::shown(&entry.function),
                entry.address
            );
        }
    }
    for m in &orphans {
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
    Ok(())
}
