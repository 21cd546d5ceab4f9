//! `lpkg revert --pid PID [--id ID | --all] [--json]`

use std::time::Duration;

use anyhow::Context;
use lpkg_applier::Selection;

/// Arguments of `lpkg revert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The process to un-patch.
    #[arg(long, value_name = "PID")]
    pub pid: u32,
    /// Revert the package with this id.
    #[arg(long, value_name = "ID", conflicts_with = "all")]
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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pid = super::pid(args.pid)?;
    let selection = match (&args.id, args.all) {
        (Some(id), _) => Selection::Id(id.clone()),
        (None, true) => Selection::All,
        (None, false) => Selection::Latest,
    };
    let timeout = Duration::from_secs(args.timeout.unwrap_or(10)).min(lpkg_kernel::MAX_TIMEOUT);
    let reports = lpkg_applier::revert(pid, &selection, timeout)
        .with_context(|| format!("reverting in process {pid}"))?;
    if args.json {
        let value: Vec<_> = reports
            .iter()
            .map(|r| serde_json::json!({"id": r.id, "name": r.name, "version": r.version, "state": r.state, "restored": r.restored}))
            .collect();
        println!("{}", serde_json::Value::Array(value));
    } else {
        for r in &reports {
            println!(
                "reverted {} {} (id {}, was {}): {} function(s) restored",
                super::shown(&r.name),
                super::shown(&r.version),
                super::short_id(&r.id),
                r.state,
                r.restored
            );
        }
    }
    Ok(())
}
