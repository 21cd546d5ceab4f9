//! What the host runs against what is installed: for each process that maps the target of an
//! installed package or holds anything lpkg put there, the packages applied (checked against
//! the live code) and the installed packages it lacks.

use std::path::PathBuf;

use crate::host::{self, Process};
use crate::records::{self, Live, LiveRecord};

/// An installed package, as status needs it.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The package id.
    pub id: String,
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// The build-id (hex) of the object it patches.
    pub build_id: String,
}

/// One process.
#[derive(Debug)]
pub struct ProcessStatus {
    /// The process.
    pub process: Process,
    /// Its cgroup (v2 path), as the process's `/proc/PID/cgroup` says.
    pub cgroup: Option<String>,
    /// The systemd unit (service or scope) of its cgroup, when there is one.
    pub unit: Option<String>,
    /// The targets of installed packages it maps: (path, build-id).
    pub objects: Vec<(PathBuf, String)>,
    /// The records of what lpkg applied to it.
    pub applied: Vec<LiveRecord>,
    /// The installed packages for an object it maps that are not live in it (indexes into
    /// the installed packages given).
    pub exposed: Vec<usize>,
    /// Why its records could not be read, if they could not.
    pub error: Option<String>,
}

impl ProcessStatus {
    /// The records of applied packages whose code is not what the record says.
    pub fn drifted(&self) -> impl Iterator<Item = &LiveRecord> {
        self.applied
            .iter()
            .filter(|r| matches!(r.live, Live::Drifted(_)))
    }
}

/// The status of every process among `candidates` that maps the target of one of `installed`
/// or holds anything lpkg put there, in pid order; read with `workers` threads.
pub fn status(
    candidates: Vec<Process>,
    installed: &[Installed],
    workers: usize,
) -> Vec<ProcessStatus> {
    let mut relevant: Vec<(Process, Vec<(PathBuf, String)>)> = Vec::new();
    let mut build_ids: Vec<&str> = installed.iter().map(|i| i.build_id.as_str()).collect();
    build_ids.sort_unstable();
    build_ids.dedup();
    let mut mapping: std::collections::BTreeMap<i32, Vec<(PathBuf, String)>> =
        std::collections::BTreeMap::new();
    for build_id in build_ids {
        for (process, entry) in host::running(candidates.clone(), build_id) {
            mapping
                .entry(process.pid)
                .or_default()
                .push((entry.path.unwrap_or_default(), build_id.to_owned()));
        }
    }
    for process in candidates {
        let objects = mapping.remove(&process.pid).unwrap_or_default();
        if !objects.is_empty() || host::holds_lpkg(process.pid) {
            relevant.push((process, objects));
        }
    }
    let read = |(process, objects): &(Process, Vec<(PathBuf, String)>)| {
        one(process.clone(), objects.clone(), installed)
    };
    host::in_parallel(&relevant, workers, read, |_, _| {})
        .into_iter()
        .flatten()
        .collect()
}

/// The status of one process, `None` if it is gone.
fn one(
    process: Process,
    objects: Vec<(PathBuf, String)>,
    installed: &[Installed],
) -> Option<ProcessStatus> {
    let (applied, error) = match records::read(process.pid) {
        Ok(records) => (records, None),
        Err(e) if e.is_gone() => return None,
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    if lpkg_kernel::start_time(process.pid) != Some(process.start_time) {
        return None;
    }
    let exposed = installed
        .iter()
        .enumerate()
        .filter(|(_, package)| objects.iter().any(|(_, b)| *b == package.build_id))
        .filter(|(_, package)| {
            !applied
                .iter()
                .any(|r| r.body.id == package.id && r.is_live())
        })
        .map(|(index, _)| index)
        .collect();
    let cgroup = cgroup(process.pid);
    let unit = cgroup.as_deref().and_then(unit_of);
    Some(ProcessStatus {
        process,
        cgroup,
        unit,
        objects,
        applied,
        exposed,
        error,
    })
}

/// The cgroup v2 path of `pid` (`0::PATH` in /proc/PID/cgroup), read up to 4 KiB.
fn cgroup(pid: i32) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(format!("/proc/{pid}/cgroup"))
        .ok()?
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

/// The systemd unit a cgroup path belongs to: its innermost `.service` or `.scope` component.
fn unit_of(cgroup: &str) -> Option<String> {
    cgroup
        .rsplit('/')
        .find(|part| part.ends_with(".service") || part.ends_with(".scope"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_is_the_innermost_service_or_scope() {
        assert_eq!(
            unit_of("/system.slice/nginx.service").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            unit_of("/user.slice/user-0.slice/session-3.scope/x").as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(unit_of("/"), None);
    }
}
