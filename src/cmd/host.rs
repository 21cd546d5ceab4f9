//! `--pid all`: what apply, list and revert share when they act on every process of the host.

use lpkg_applier::host::{self, Process};
use lpkg_kernel::Pid;

/// The processes a command acts on: one, or every process of the host that qualifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pids {
    /// One process, by id.
    One(Pid),
    /// Every process (that the selection options leave).
    All,
}

/// Parses `--pid`: a process id or `all`.
pub fn parse_pids(text: &str) -> Result<Pids, String> {
    if text == "all" {
        return Ok(Pids::All);
    }
    match text.parse::<Pid>() {
        Ok(pid) if pid > 0 => Ok(Pids::One(pid)),
        _ => Err(format!("{text:?} is neither a process id nor `all`")),
    }
}

/// Which processes `--pid all` takes, and how many at once.
#[derive(clap::Args, Debug, Default)]
pub struct Selection {
    /// Host-wide (--pid all, status): leave this process alone (repeat for more).
    #[arg(long, value_name = "PID")]
    pub exclude_pid: Vec<u32>,
    /// Host-wide (--pid all, status): only processes whose command name (as `ps -o comm`
    /// shows it) matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub comm: Option<String>,
    /// Host-wide (--pid all, status): processes worked on at once [default: one per core].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

impl Selection {
    /// Every process of the host this selection keeps.
    pub fn processes(&self) -> anyhow::Result<Vec<Process>> {
        let comm = match &self.comm {
            Some(pattern) => Some(
                regex::Regex::new(pattern)
                    .map_err(|e| anyhow::anyhow!("--comm {pattern:?}: {e}"))?,
            ),
            None => None,
        };
        Ok(host::processes()
            .into_iter()
            .filter(|p| !self.exclude_pid.iter().any(|&x| x as i64 == p.pid as i64))
            .filter(|p| comm.as_ref().is_none_or(|re| re.is_match(&p.command)))
            .collect())
    }

    /// The processes this selection keeps that hold anything lpkg put there.
    pub fn holding_lpkg(&self) -> anyhow::Result<Vec<Process>> {
        Ok(self
            .processes()?
            .into_iter()
            .filter(|p| host::holds_lpkg(p.pid))
            .collect())
    }

    /// Refuses the options that choose among the host's processes (and `--dry-run`, when
    /// `dry_run`) when `pid` names one process: silently ignored, a dry run would patch it.
    pub fn only_host_wide(
        &self,
        pid: Pids,
        dry_run: bool,
    ) -> Result<(), super::super::exit::Usage> {
        let Pids::One(pid) = pid else {
            return Ok(());
        };
        let given: Vec<&str> = [
            ("--exclude-pid", !self.exclude_pid.is_empty()),
            ("--comm", self.comm.is_some()),
            ("--workers", self.workers.is_some()),
            ("--dry-run", dry_run),
        ]
        .into_iter()
        .filter_map(|(option, on)| on.then_some(option))
        .collect();
        if given.is_empty() {
            return Ok(());
        }
        Err(super::super::exit::Usage(format!(
            "{} only with --pid all; --pid {pid} names one process",
            given.join(", ")
        )))
    }

    /// How many workers to use.
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or_else(host::default_workers).max(1)
    }
}

/// Whether process `process` is gone, by the error an operation on it returned, or because its
/// pid no longer names the process the scan saw.
pub fn gone(process: &Process, error: &lpkg_applier::Error) -> bool {
    error.is_gone() || lpkg_kernel::start_time(process.pid) != Some(process.start_time)
}

/// `PID COMMAND` of a process, its command escaped.
pub fn who(process: &Process) -> String {
    format!("{} {}", process.pid, super::shown(&process.command))
}

/// An error on one line, every cause.
pub fn one_line(error: &anyhow::Error) -> String {
    super::shown(&super::super::exit::one_line(error))
}

/// Prints one line for a process as soon as its outcome is known (lines of workers never mix).
pub fn print_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}
