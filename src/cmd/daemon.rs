//! `lpkg daemon [--store DIR] [--trust FILE|DIR] [--rescan SECS] [--no-exec-events]`

use std::time::Duration;

use lpkg_applier::daemon::{self, Config};

/// Arguments of `lpkg daemon`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub stores: super::StoreArgs,
    /// Seconds between two looks at every process (they find libraries loaded with dlopen,
    /// and processes whose exec event was missed).
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub rescan: f64,
    /// Do not listen to the kernel's exec events (process connector): rescans only.
    #[arg(long)]
    pub no_exec_events: bool,
    /// Processes worked on at once [default: one per core].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Each apply gives up (and leaves its process unchanged) after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !(args.rescan.is_finite() && args.rescan > 0.0) {
        anyhow::bail!("--rescan {}: give a number of seconds above 0", args.rescan);
    }
    let (trust, store) = args.stores.resolve()?;
    let config = Config {
        store,
        trust,
        rescan: Duration::from_secs_f64(args.rescan.min(1e9)),
        connector: !args.no_exec_events,
        workers: args
            .workers
            .unwrap_or_else(lpkg_applier::host::default_workers)
            .max(1),
        timeout: Duration::from_secs(args.timeout).min(lpkg_kernel::MAX_TIMEOUT),
    };
    let log = |line: &str| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        super::host::print_line(&format!("{} {line}", super::utc(now)));
    };
    daemon::run(&config, &log)?;
    Ok(())
}
