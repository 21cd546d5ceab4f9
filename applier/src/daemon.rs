//! `lpkg daemon`: installed packages applied to every process that runs their target, as
//! processes start (exec events from the process connector), at every rescan (which also finds
//! libraries loaded later with `dlopen`, and is the fallback without the connector), and at
//! once when a package is installed. Failures are retried with backoff and written to a state
//! file that `lpkg status` reads. Nothing is reverted when the daemon stops.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use lpkg_format::{Store, TrustStore};
use lpkg_kernel::proc_events::{Events, ExecEvents};
use lpkg_kernel::{interrupt, Pid};

use crate::apply::{apply_package, ApplyOptions, VerifiedPackage};
use crate::host::{self, Process};
use crate::Error;

/// How the daemon runs.
pub struct Config {
    /// Where the installed packages are.
    pub store: Store,
    /// Who may sign them.
    pub trust: TrustStore,
    /// Time between two looks at every process.
    pub rescan: Duration,
    /// Listen to the process connector (else: rescans only).
    pub connector: bool,
    /// Processes worked on at once.
    pub workers: usize,
    /// Each apply's `--timeout`.
    pub timeout: Duration,
}

/// The first and the longest wait before an apply that failed is tried again.
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(300);

/// The file, in lpkg's run folder, where the daemon of process `pid` says what it failed to
/// apply (`daemon-PID.json`: each daemon its own, removed when it stops).
pub fn state_path(pid: u32) -> Result<PathBuf, Error> {
    Ok(crate::claim::run_dir()?.join(format!("daemon-{pid}.json")))
}

/// What a daemon says in its state file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DaemonState {
    /// The daemon's process.
    pub daemon: u32,
    /// Its start time (clock ticks since boot): a file whose pid now names another process,
    /// or a thread, is a dead daemon's.
    #[serde(default)]
    pub start_time: u64,
    /// The applies it failed and retries.
    pub failures: Vec<FailedApply>,
}

/// An apply the daemon failed and retries.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FailedApply {
    /// The process.
    pub pid: Pid,
    /// Its start time (clock ticks since boot), which tells it from a later one with its pid.
    pub start_time: u64,
    /// The package id.
    pub id: String,
    /// How many times it was tried.
    pub attempts: u32,
    /// The last error.
    pub error: String,
}

/// What the running daemons say: their state files (at most 1 MiB each; one that does not
/// parse says nothing, nor does one left by a daemon that died).
pub fn states() -> Vec<DaemonState> {
    state_files()
        .into_iter()
        .filter_map(|(_, state)| state.filter(running))
        .collect()
}

/// Whether the daemon a state file names still runs: its pid names a process started when
/// the file says (a pid is reused, and `/proc/TID` exists for any thread too).
fn running(state: &DaemonState) -> bool {
    state.start_time != 0 && lpkg_kernel::start_time(state.daemon as Pid) == Some(state.start_time)
}

/// Removes the state files of daemons that no longer run (killed: one that stops removes its
/// own).
fn remove_stale_states() {
    for (path, state) in state_files() {
        if state.is_some_and(|s| !running(&s)) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The daemons' state files, sorted, each with what it says when it parses and names the
/// daemon of its file name.
fn state_files() -> Vec<(PathBuf, Option<DaemonState>)> {
    let Ok(dir) = crate::claim::run_dir() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, Option<DaemonState>)> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            let pid: u32 = name
                .to_str()?
                .strip_prefix("daemon-")?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            let path = dir.join(&name);
            let state = std::fs::read(&path).ok().and_then(|text| {
                serde_json::from_slice::<DaemonState>(&text[..text.len().min(1 << 20)]).ok()
            });
            Some((path, state.filter(|s| s.daemon == pid)))
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

/// An installed package, verified.
struct Installed {
    package: VerifiedPackage,
    id: String,
    build_id: String,
    label: String,
}

/// An apply that failed and will be tried again.
struct Failure {
    process: Process,
    error: String,
    attempts: u32,
    next: Instant,
}

/// When a process that just started a program is looked at again (after its exec): its
/// libraries are mapped by its dynamic loader some time after the exec event.
const LOOK_AGAIN: [Duration; 5] = [
    Duration::from_millis(2),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_secs(1),
];

/// When a process that started a program at `exec` and was looked at `looks` times is
/// looked at next.
fn next_look(exec: Instant, looks: usize) -> Instant {
    match looks {
        0 => exec,
        n => exec + LOOK_AGAIN[(n - 1).min(LOOK_AGAIN.len() - 1)],
    }
}

/// The daemon's state between two events.
struct Daemon<'a> {
    config: &'a Config,
    log: &'a (dyn Fn(&str) + Sync),
    installed: Vec<Installed>,
    /// The store's files and their modification times when last read.
    store_seen: Vec<(PathBuf, Option<SystemTime>)>,
    /// By (pid, package id).
    failures: BTreeMap<(Pid, String), Failure>,
    /// Processes that started a program lately, with when they started it and how many
    /// times they were looked at.
    young: Vec<(Process, Instant, usize)>,
    /// Files (device, inode) found to be targets of installed packages, and the targets'
    /// file names: a new process is read in full only if it maps one of them.
    known_targets: HashSet<((u32, u32), u64)>,
    target_names: HashSet<String>,
    /// When the store was last looked at.
    store_checked: Instant,
}

/// Runs until SIGINT or SIGTERM (an apply in progress is rolled back, then it returns Ok).
pub fn run(config: &Config, log: &(dyn Fn(&str) + Sync)) -> Result<(), Error> {
    interrupt::catch()?;
    interrupt::catch_hangup()?;
    let mut daemon = Daemon {
        config,
        log,
        installed: Vec::new(),
        store_seen: Vec::new(),
        failures: BTreeMap::new(),
        young: Vec::new(),
        known_targets: HashSet::new(),
        target_names: HashSet::new(),
        store_checked: Instant::now(),
    };
    let events = if config.connector {
        match ExecEvents::open() {
            Ok(events) => Some(events),
            Err(e) => {
                log(&format!(
                    "process connector unavailable ({e}): rescans only"
                ));
                None
            }
        }
    } else {
        None
    };
    remove_stale_states();
    // Written at once: `lpkg status` shows the daemon running before anything fails.
    daemon.write_state();
    daemon.reload_store();
    log(&format!(
        "ready: {} package(s) installed, {}, rescan every {:?}",
        daemon.installed.len(),
        if events.is_some() {
            "exec events on"
        } else {
            "exec events off"
        },
        config.rescan
    ));
    daemon.rescan("start");
    let mut next_rescan = Instant::now() + config.rescan;
    while !interrupt::requested() {
        let now = Instant::now();
        let next_retry = daemon.failures.values().map(|f| f.next).min();
        let next_look = daemon
            .young
            .iter()
            .map(|(_, exec, looks)| next_look(*exec, *looks))
            .min();
        let until = [next_retry, next_look]
            .into_iter()
            .flatten()
            .fold(next_rescan, Instant::min);
        // Wake at least every second to notice the store changing.
        let wait = until
            .saturating_duration_since(now)
            .min(Duration::from_secs(1));
        let execs = match &events {
            Some(events) => events.wait(wait)?,
            None => {
                std::thread::sleep(wait.min(Duration::from_millis(100)));
                Events::Exec(Vec::new())
            }
        };
        if interrupt::requested() {
            break;
        }
        match execs {
            Events::Exec(pids) => daemon.started(pids),
            Events::Overrun => daemon.rescan("exec events lost"),
        }
        if daemon.store_checked.elapsed() >= Duration::from_secs(1) && daemon.store_changed() {
            daemon.reload_store();
            daemon.rescan("store changed");
        }
        if interrupt::hangup() {
            daemon.rescan("SIGHUP");
            next_rescan = Instant::now() + config.rescan;
        } else if Instant::now() >= next_rescan {
            daemon.rescan("periodic");
            next_rescan = Instant::now() + config.rescan;
        }
        daemon.retry();
    }
    log("stopping (SIGTERM or SIGINT): applied packages stay applied");
    if let Ok(path) = state_path(std::process::id()) {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

impl Daemon<'_> {
    fn store_files(&self) -> Vec<(PathBuf, Option<SystemTime>)> {
        let Ok(entries) = std::fs::read_dir(self.config.store.dir()) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let modified = e.metadata().ok().and_then(|m| m.modified().ok());
                Some((e.path(), modified))
            })
            .filter(|(p, _)| p.extension().is_some_and(|e| e == "lpkg"))
            .collect();
        files.sort();
        files
    }

    fn store_changed(&mut self) -> bool {
        self.store_checked = Instant::now();
        self.store_files() != self.store_seen
    }

    /// Reads the store again: every file verified, what does not verify skipped and said.
    fn reload_store(&mut self) {
        self.store_seen = self.store_files();
        let (stored, skipped) = match self.config.store.packages(&self.config.trust) {
            Ok(found) => found,
            Err(e) => {
                (self.log)(&format!("store {}: {e}", self.config.store.dir().display()));
                return;
            }
        };
        for s in skipped {
            (self.log)(&format!("store: skipped {}: {}", s.path.display(), s.error));
        }
        let before: Vec<String> = self.installed.iter().map(|i| i.id.clone()).collect();
        self.installed = stored
            .into_iter()
            .filter_map(|s| {
                let package = match VerifiedPackage::open(&s.bytes, &self.config.trust) {
                    Ok(p) => p,
                    Err(e) => {
                        (self.log)(&format!("store: skipped {}: {e}", s.path.display()));
                        return None;
                    }
                };
                let m = package.manifest();
                let label = format!(
                    "{} {} (id {})",
                    m.package.name,
                    m.package.version,
                    &package.id()[..16]
                );
                Some(Installed {
                    id: package.id(),
                    build_id: m.target.build_id.clone(),
                    label,
                    package,
                })
            })
            .collect();
        self.target_names = self
            .installed
            .iter()
            .map(|i| i.package.manifest().target.file_name.clone())
            .collect();
        for i in self.installed.iter().filter(|i| !before.contains(&i.id)) {
            (self.log)(&format!("store: installed {}", i.label));
        }
        self.failures
            .retain(|(_, id), _| self.installed.iter().any(|i| &i.id == id));
    }

    /// Every process that runs the target of an installed package and lacks it.
    fn rescan(&mut self, why: &str) {
        let work = self.targets_among(host::processes());
        let applied = self.apply_all(work, why);
        if applied > 0 || why != "periodic" {
            (self.log)(&format!("rescan ({why}): {applied} apply(ies)"));
        }
    }

    /// Processes that just started a program (`pids`, possibly none), and those started lately
    /// whose time to be looked at again has come: each is looked at now and at every
    /// [`LOOK_AGAIN`] after its exec, as its loader maps its libraries.
    fn started(&mut self, pids: Vec<Pid>) {
        if self.installed.is_empty() {
            self.young.clear();
            return;
        }
        let now = Instant::now();
        self.young.extend(
            pids.into_iter()
                .filter_map(host::process)
                .map(|p| (p, now, 0)),
        );
        let mut due = Vec::new();
        self.young.retain_mut(|(process, exec, looks)| {
            if next_look(*exec, *looks) > now {
                return true;
            }
            due.push(process.clone());
            *looks += 1;
            *looks <= LOOK_AGAIN.len()
        });
        // Most programs started run none of the targets: one read of their maps tells.
        due.retain(|p| host::may_run(p.pid, &self.known_targets, &self.target_names));
        if due.is_empty() {
            return;
        }
        let work = self.targets_among(due);
        self.apply_all(work, "exec");
    }

    /// Each of `processes` that runs the target of an installed package, with the package's
    /// index; the files found to be targets are remembered for quick looks at new processes.
    fn targets_among(&mut self, processes: Vec<Process>) -> Vec<(Process, usize)> {
        let mut work = Vec::new();
        for (index, installed) in self.installed.iter().enumerate() {
            for (process, entry) in host::running(processes.clone(), &installed.build_id) {
                self.known_targets.insert(host::file_of(&entry));
                work.push((process, index));
            }
        }
        work
    }

    /// Tries again the applies whose time has come.
    fn retry(&mut self) {
        let now = Instant::now();
        let due: Vec<(Process, usize)> = self
            .failures
            .iter()
            .filter(|(_, f)| f.next <= now)
            .filter_map(|((_, id), f)| {
                let index = self.installed.iter().position(|i| &i.id == id)?;
                Some((f.process.clone(), index))
            })
            .collect();
        if !due.is_empty() {
            self.apply_all(due, "retry");
        }
    }

    /// Applies each (process, installed package) not already live there; one log line per
    /// apply; returns how many were made.
    fn apply_all(&mut self, work: Vec<(Process, usize)>, why: &str) -> usize {
        if work.is_empty() {
            return 0;
        }
        let config = self.config;
        let installed = &self.installed;
        let outcome = |(process, index): &(Process, usize)| -> Option<Result<(), Error>> {
            let package = &installed[*index];
            let live = crate::records::read(process.pid)
                .is_ok_and(|r| r.iter().any(|r| r.body.id == package.id && r.is_live()));
            if live {
                return None;
            }
            let options = ApplyOptions {
                timeout: config.timeout,
                start_time: Some(process.start_time),
                ..ApplyOptions::default()
            };
            Some(apply_package(process.pid, &package.package, &options).map(|_| ()))
        };
        let results = host::in_parallel(&work, config.workers, outcome, |_, _| {});
        let mut applied = 0;
        let failures_before = self.failures.len();
        let mut failures_changed = false;
        for ((process, index), result) in work.iter().zip(results) {
            let Some(result) = result else { continue };
            let package = &installed[*index];
            let key = (process.pid, package.id.clone());
            let who = format!("{} {}", process.pid, process.command.escape_debug());
            match result {
                Ok(()) | Err(Error::AlreadyApplied { .. }) => {
                    applied += 1;
                    self.failures.remove(&key);
                    (self.log)(&format!("{why} {who}: applied {}", package.label));
                }
                Err(e) if e.is_gone() => {
                    self.failures.remove(&key);
                }
                Err(e) if e.is_mismatch() || e.is_rejection() => {
                    if self.failures.remove(&key).is_none() {
                        (self.log)(&format!("{why} {who}: refused {}: {e}", package.label));
                    }
                }
                Err(e) => {
                    let error = e.to_string().escape_debug().to_string();
                    let attempts = self.failures.get(&key).map_or(0, |f| f.attempts) + 1;
                    let backoff = (FIRST_RETRY * 2u32.saturating_pow(attempts.min(20) - 1))
                        .min(LONGEST_RETRY);
                    (self.log)(&format!(
                        "{why} {who}: failed {} (attempt {attempts}, again in {backoff:?}): {error}",
                        package.label
                    ));
                    failures_changed = true;
                    self.failures.insert(
                        key,
                        Failure {
                            process: process.clone(),
                            error,
                            attempts,
                            next: Instant::now() + backoff,
                        },
                    );
                }
            }
        }
        if failures_changed || self.failures.len() != failures_before {
            self.write_state();
        }
        applied
    }

    /// Writes the failures to the state file (`lpkg status` shows them).
    fn write_state(&self) {
        let Ok(path) = state_path(std::process::id()) else {
            return;
        };
        let state = DaemonState {
            daemon: std::process::id(),
            start_time: lpkg_kernel::start_time(std::process::id() as Pid).unwrap_or(0),
            failures: (self.failures.iter())
                .map(|((pid, id), f)| FailedApply {
                    pid: *pid,
                    start_time: f.process.start_time,
                    id: id.clone(),
                    attempts: f.attempts,
                    error: f.error.clone(),
                })
                .collect(),
        };
        let Ok(text) = serde_json::to_vec(&state) else {
            return;
        };
        let temporary = path.with_extension("tmp");
        if std::fs::write(&temporary, text).is_ok() {
            let _ = std::fs::rename(&temporary, &path);
        }
    }
}
