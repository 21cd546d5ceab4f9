//! Every process of the host: which run an object, which hold what lpkg put there, and a
//! bounded pool of workers to act on many of them at once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use lpkg_kernel::maps::{self, MapEntry};
use lpkg_kernel::objects::{self, BuildIds};
use lpkg_kernel::Pid;

/// One process as a scan saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The process id.
    pub pid: Pid,
    /// When it started (field 22 of /proc/PID/stat): with the pid, its identity.
    pub start_time: u64,
    /// Its command name (`comm`, at most 15 bytes, chosen by the process: escape it to print).
    pub command: String,
}

/// Every process of the host but this one, in pid order. Processes that exit during the scan
/// are left out.
pub fn processes() -> Vec<Process> {
    let me = std::process::id() as Pid;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<Pid> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| pid != me)
        .collect();
    pids.sort_unstable();
    let found = look_at_each(&pids, |&pid| process(pid));
    found.into_iter().flatten().collect()
}

/// `look` at each of `items` (reads of /proc, no tracing), on [`default_workers`] threads when
/// they are many; results in the order of `items`.
fn look_at_each<T: Sync, R: Send>(items: &[T], look: impl Fn(&T) -> R + Sync) -> Vec<R> {
    /// Fewer are looked at on the calling thread: threads cost more than they save (the
    /// daemon looks at each new process alone).
    const ALONE: usize = 32;
    match items.len() < ALONE {
        true => items.iter().map(look).collect(),
        false => in_parallel(items, default_workers(), look, |_, _| {}),
    }
}

/// Process `pid` as it is now, `None` if it is gone.
pub fn process(pid: Pid) -> Option<Process> {
    let start_time = lpkg_kernel::start_time(pid)?;
    let command = std::fs::read(format!("/proc/{pid}/comm")).ok()?;
    let command = String::from_utf8_lossy(&command[..command.len().min(64)])
        .trim_end_matches('\n')
        .to_owned();
    Some(Process {
        pid,
        start_time,
        command,
    })
}

/// The processes among `candidates` that map an object whose build-id is `build_id` (hex),
/// with that object's offset-0 mapping, in the order of `candidates`. Each file is read once
/// however many processes map it; the processes are looked at by [`default_workers`] threads.
pub fn running(candidates: Vec<Process>, build_id: &str) -> Vec<(Process, MapEntry)> {
    let Some(wanted) = crate::record::unhex(build_id) else {
        return Vec::new();
    };
    let cache = BuildIds::default();
    let look = |p: &Process| {
        objects::find_build_id(p.pid, &wanted, &cache)
            .ok()
            .flatten()
    };
    let found = look_at_each(&candidates, look);
    candidates
        .into_iter()
        .zip(found)
        .filter_map(|(p, entry)| Some((p, entry?)))
        .collect()
}

/// The file of a mapping as /proc/PID/maps names it: device and inode.
pub fn file_of(entry: &MapEntry) -> ((u32, u32), u64) {
    (entry.dev, entry.inode)
}

/// Whether process `pid` maps, at file offset 0, one of the files `known` (device and inode)
/// or a file named one of `names` (its last path component): a quick look, before
/// [`running`] reads what it must.
pub fn may_run(pid: Pid, known: &HashSet<((u32, u32), u64)>, names: &HashSet<String>) -> bool {
    maps::read(pid).is_ok_and(|entries| {
        entries
            .iter()
            .filter(|e| e.is_file() && e.offset == 0)
            .any(|e| {
                known.contains(&file_of(e))
                    || e.path
                        .as_ref()
                        .and_then(|p| p.file_name())
                        .is_some_and(|n| names.contains(n.to_string_lossy().as_ref()))
            })
    })
}

/// Whether process `pid` holds anything lpkg put there: a record or a patch module.
pub fn holds_lpkg(pid: Pid) -> bool {
    maps::read(pid).is_ok_and(|entries| entries.iter().any(crate::records::is_ours))
}

/// The number of workers `in_parallel` uses by default: one per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `work` on every item with at most `workers` new threads, each item on one thread from
/// start to end (a seized process stays with the thread that seized it); results in the
/// order of `items`. `done` sees each result as it comes, on the worker's thread.
pub fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    work: impl Fn(&T) -> R + Sync,
    done: impl Fn(&T, &R) + Sync,
) -> Vec<R> {
    if items.is_empty() {
        return Vec::new();
    }
    // Always on threads that end with the batch, even for one item: a thread that a failed
    // operation could not detach (stuck where no interrupt stops it, in vfork() say) stays
    // traced by the thread that seized it until that thread exits, when the kernel detaches
    // it. A long-running caller (the daemon) must not be that thread.
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(index) else { break };
                let result = work(item);
                done(item, &result);
                results.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}
