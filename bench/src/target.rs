//! The C probe: a target with N patchable functions, one busy thread, a probe thread that
//! records the largest gap between two CLOCK_MONOTONIC reads, and any number of sleepers.
//!
//! The probe shares its figures through a small file the target maps MAP_SHARED; the harness
//! reads and resets them with pread/pwrite, which see the same page cache pages.

use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Byte offsets of the shared words (see the C struct `shared`).
const MAX_GAP: u64 = 0;
const RESET: u64 = 8;
const CALLS: u64 = 16;
const READY: u64 = 24;

/// C source of the target with `functions` patchable functions; `fixed` is the new release
/// (every function returns a different constant, so a patched call is observable).
pub fn source(functions: usize, fixed: bool) -> String {
    let delta = if fixed { 1 } else { 0 };
    let mut c = String::from(
        r#"#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
struct shared { volatile unsigned long max_gap_ns, reset, calls, ready; };
static struct shared *sh;
volatile long sink;
"#,
    );
    for i in 0..functions {
        // Big enough for a 5-byte jump, small enough that a call is mostly call overhead; noipa so
        // the caller does not depend on the body (IPA-RA would change main with every fix).
        writeln!(
            c,
            "__attribute__((noipa)) long f{i}(long x) {{ long s = x; \
             for (long k = 0; k < (x & 3); k++) s = s * 31 + k; return s + {}; }}",
            i * 2 + delta
        )
        .unwrap();
    }
    c.push_str(
        r#"
static unsigned long now_ns(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  return (unsigned long)t.tv_sec * 1000000000ul + (unsigned long)t.tv_nsec;
}
static void *probe(void *arg) {
  (void)arg;
  /* Highest CFS weight, so the gaps we see are the patcher's stops and not the busy thread or
     the rest of the machine taking our core (needs root; harmless if refused). */
  setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), -20);
  unsigned long last = now_ns();
  for (;;) {
    unsigned long t = now_ns();
    unsigned long gap = t - last;
    last = t;
    if (sh->reset) { sh->max_gap_ns = 0; __sync_synchronize(); sh->reset = 0; continue; }
    if (gap > sh->max_gap_ns) sh->max_gap_ns = gap;
  }
  return 0;
}
static void *sleeper(void *arg) { (void)arg; for (;;) sleep(1000); return 0; }
int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: probe SHARED SLEEPERS PROBE(0|1)\n"); return 2; }
  int fd = open(argv[1], O_RDWR | O_CREAT, 0600);
  if (fd < 0 || ftruncate(fd, 4096) != 0) { perror("shared"); return 1; }
  sh = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (sh == MAP_FAILED) { perror("mmap"); return 1; }
  pthread_attr_t small; pthread_attr_init(&small); pthread_attr_setstacksize(&small, 65536);
  pthread_t t;
  for (int i = 0; i < atoi(argv[2]); i++)
    if (pthread_create(&t, &small, sleeper, 0) != 0) { perror("sleeper"); return 1; }
  if (atoi(argv[3]) && pthread_create(&t, &small, probe, 0) != 0) { perror("probe"); return 1; }
  sh->ready = 1;
  for (unsigned long i = 0;; i++) {
    sink = f0((long)i); /* volatile: the call cannot be dropped or hoisted */
    if ((i & 1023) == 0) sh->calls = i;
  }
  return 0;
}
"#,
    );
    c
}

/// Old and new objects and the linked old executable for `functions` functions, in `dir`.
pub struct Built {
    /// The running release.
    pub exe: PathBuf,
    /// Its object.
    pub old: PathBuf,
    /// The fixed object.
    pub new: PathBuf,
}

/// Flags of a patchable build, as in examples/common.sh.
pub const CFLAGS: &[&str] = &[
    "-O2",
    "-g",
    "-ffunction-sections",
    "-fdata-sections",
    "-fPIE",
];

pub fn gcc(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("gcc")
        .args(args)
        .output()
        .context("running gcc")?;
    if !out.status.success() {
        bail!(
            "gcc {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub fn build(dir: &Path, functions: usize) -> anyhow::Result<Built> {
    let dir = dir.join(format!("probe-{functions}"));
    std::fs::create_dir_all(dir.join("old"))?;
    std::fs::create_dir_all(dir.join("new"))?;
    let path = |p: &str| dir.join(p).display().to_string();
    for (side, fixed) in [("old", false), ("new", true)] {
        std::fs::write(dir.join(side).join("probe.c"), source(functions, fixed))?;
        let mut args = CFLAGS.to_vec();
        let (src, obj) = (
            path(&format!("{side}/probe.c")),
            path(&format!("{side}/probe.o")),
        );
        args.extend(["-c", &src, "-o", &obj]);
        gcc(&args)?;
    }
    let (obj, exe) = (path("old/probe.o"), path("probe"));
    gcc(&["-pie", "-pthread", &obj, "-o", &exe])?;
    Ok(Built {
        exe: dir.join("probe"),
        old: dir.join("old/probe.o"),
        new: dir.join("new/probe.o"),
    })
}

/// A running probe; killed on drop.
pub struct Target {
    child: Child,
    shared: File,
    _shared_dir: tempfile::TempDir,
}

impl Target {
    /// Starts `exe` with `sleepers` sleeping threads and, if `probe`, the gap probe.
    pub fn start(exe: &Path, sleepers: usize, probe: bool) -> anyhow::Result<Target> {
        let shared_dir = tempfile::tempdir()?;
        let shared_path = shared_dir.path().join("shared");
        let child = Command::new(exe)
            .arg(&shared_path)
            .arg(sleepers.to_string())
            .arg(if probe { "1" } else { "0" })
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let started = Instant::now();
        let mut target = loop {
            if let Ok(shared) = File::options().read(true).write(true).open(&shared_path) {
                if shared.metadata()?.len() >= 4096 {
                    break Target {
                        child,
                        shared,
                        _shared_dir: shared_dir,
                    };
                }
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("probe did not start");
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        while target.word(READY)? == 0 {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("probe did not get ready");
            }
            if let Some(status) = target.child.try_wait()? {
                bail!("probe exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // Let the threads settle (the sleepers reach sleep(), the probe starts spinning).
        std::thread::sleep(Duration::from_millis(50 + sleepers as u64 / 10));
        Ok(target)
    }

    /// Process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn word(&self, offset: u64) -> anyhow::Result<u64> {
        let mut b = [0u8; 8];
        self.shared.read_exact_at(&mut b, offset)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Clears the probe's largest gap and waits until the probe has seen the request.
    pub fn reset_gap(&self) -> anyhow::Result<()> {
        self.shared.write_all_at(&1u64.to_le_bytes(), RESET)?;
        let started = Instant::now();
        while self.word(RESET)? != 0 {
            if started.elapsed() > Duration::from_secs(5) {
                bail!("probe thread does not answer");
            }
            std::thread::yield_now();
        }
        Ok(())
    }

    /// The largest gap the probe saw since the last reset.
    pub fn max_gap(&self) -> anyhow::Result<Duration> {
        Ok(Duration::from_nanos(self.word(MAX_GAP)?))
    }

    /// Calls of f0 so far (updated every 1024 calls).
    pub fn calls(&self) -> anyhow::Result<u64> {
        self.word(CALLS)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Address of `symbol` in the running `pid` whose executable is `exe` (PIE: base + value).
pub fn symbol_address(pid: i32, exe: &Path, symbol: &str) -> anyhow::Result<u64> {
    use object::{Object, ObjectSymbol};
    let data = std::fs::read(exe)?;
    let file = object::File::parse(&*data)?;
    let value = file
        .symbols()
        .find(|s| s.name() == Ok(symbol))
        .with_context(|| format!("{symbol} not in {}", exe.display()))?
        .address();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let canonical = exe.canonicalize()?;
    let base = maps
        .lines()
        .find(|l| l.ends_with(&*canonical.to_string_lossy()))
        .and_then(|l| l.split('-').next())
        .and_then(|a| u64::from_str_radix(a, 16).ok())
        .context("executable not in maps")?;
    Ok(base + value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    /// The instrument itself: a 60 ms SIGSTOP must show as a gap of about 60 ms, and the gap
    /// must clear on reset.
    #[test]
    fn probe_sees_a_stop_and_resets() {
        let dir = tempfile::tempdir().unwrap();
        let built = build(dir.path(), 2).unwrap();
        let target = Target::start(&built.exe, 3, true).unwrap();
        let pid = Pid::from_raw(target.pid());
        target.reset_gap().unwrap();
        kill(pid, Signal::SIGSTOP).unwrap();
        // The stop takes effect asynchronously: time it from when every thread is stopped.
        wait_for(|| all_threads_stopped(target.pid()), "the target to stop");
        std::thread::sleep(Duration::from_millis(60));
        kill(pid, Signal::SIGCONT).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let gap = target.max_gap().unwrap();
        assert!(gap >= Duration::from_millis(55), "gap {gap:?}");
        assert!(gap < Duration::from_secs(5), "gap {gap:?}");
        target.reset_gap().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(target.max_gap().unwrap() < Duration::from_millis(55));
        let before = target.calls().unwrap();
        wait_for(
            || target.calls().unwrap() > before,
            "the busy thread to call f0",
        );
    }

    fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
        let started = std::time::Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "waited 10 s for {what}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn all_threads_stopped(pid: i32) -> bool {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .all(|task| {
                let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
                let state = stat.rsplit(") ").next().unwrap_or("");
                state.starts_with('T')
            })
    }
}
