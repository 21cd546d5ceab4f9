//! The C probe: a target with N patchable functions, one busy thread, a probe thread that
//! records the largest gap between two CLOCK_MONOTONIC reads, and any number of sleepers.
//!
//! The probe shares its figures through a small file (on tmpfs) the target maps MAP_SHARED;
//! the harness reads and resets them with pread/pwrite, which see the same page cache pages.

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
const PROBE_TID: u64 = 32;
const MAX_STOPPED: u64 = 40;
const MAX_WAITING: u64 = 48;
const PING: u64 = 56;
const SPLIT: u64 = 64;

/// The probe thread of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeThread {
    /// No probe thread (call rates).
    Absent,
    /// A probe thread free to run on any core the target may use.
    Unpinned,
    /// A probe thread pinned to this core.
    Pinned(usize),
}

/// The machine a probe is compiled for: the machine's own, or i386 (`-m32`, run by the
/// kernel's IA32 emulation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Machine {
    #[default]
    X86_64,
    I386,
}

impl Machine {
    /// gcc's flag.
    pub fn flag(self) -> &'static str {
        match self {
            Machine::X86_64 => "-m64",
            Machine::I386 => "-m32",
        }
    }

    /// The name lpkg gives it.
    pub fn name(self) -> &'static str {
        match self {
            Machine::X86_64 => "x86_64",
            Machine::I386 => "i386",
        }
    }
}

/// What the target's main thread calls in its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    /// `f0`, the 2 ns leaf.
    F0,
    /// `work`, ≈ 80 ns (only in builds with `work`).
    Work,
}

/// What the probe saw since the last reset.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gap {
    /// The largest gap between two clock reads, whatever its cause.
    pub max: Duration,
    /// The largest time off the run queue within one gap (the gap less its run-queue wait):
    /// stopped (ptrace or SIGSTOP), the pause a patcher imposes; or the VM's vCPU not running.
    pub stopped: Duration,
    /// The largest run-queue wait within one gap: the probe's core taken by another task, CPU
    /// sharing and not a stop.
    pub waiting: Duration,
    /// Time the probe thread spent runnable but waiting for a core in the window (from
    /// /proc/PID/task/TID/schedstat).
    pub run_wait: Duration,
}

/// C source of the target with `functions` patchable functions `f0..`, plus `work` when
/// `work` is set; `fixed` is the new release (every function returns a different constant, so
/// a patched call is observable).
pub fn source(functions: usize, fixed: bool, work: bool) -> String {
    let delta = if fixed { 1 } else { 0 };
    let mut c = String::from(
        r#"#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
/* 64-bit words in a 32-bit probe too: the harness reads them at fixed offsets. */
typedef unsigned long long u64;
struct shared {
  volatile u64 max_gap_ns, reset, calls, ready, probe_tid, max_stopped_ns, max_waiting_ns,
    ping, split;
};
static struct shared *sh;
static int probe_cpu = -1;
volatile long sink;
/* Every 1024 calls: publish the count. The loop never waits for the harness: a thread almost
   always inside `work` is what the applier's quick re-checks of a busy thread are for. */
#define TICK(i) if (((i) & 1023) == 0) sh->calls = (i);
"#,
    );
    writeln!(c, "#define HAS_WORK {}", work as u8).unwrap();
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
    if work {
        // A function of realistic size: FNV-1a of a 128-byte buffer, a serial chain of 128
        // multiplications (≈ 80 ns here), for the call overhead next to the 2 ns leaf f0.
        writeln!(
            c,
            "static unsigned char buf[128] = \"GET /index.html HTTP/1.1 Host: example.org Accept: */*\";\n\
             __attribute__((noipa)) long work(const unsigned char *p, long n, long seed) {{\n\
             \x20 unsigned long h = 1469598103934665603ul ^ (unsigned long)seed;\n\
             \x20 for (long k = 0; k < n; k++) {{ h ^= p[k]; h *= 1099511628211ul; }}\n\
             \x20 return (long)h + {delta};\n}}"
        )
        .unwrap();
    }
    c.push_str(
        r#"
static u64 now_ns(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
  return (u64)t.tv_sec * 1000000000ull + (u64)t.tv_nsec;
}
/* run_delay (ns) from an open schedstat file, ~0 if it cannot be read. */
static u64 run_delay(int fd) {
  char b[96]; ssize_t n = fd < 0 ? -1 : pread(fd, b, sizeof b - 1, 0);
  if (n <= 0) return ~0ull;
  b[n] = 0;
  char *end; strtoull(b, &end, 10);
  return strtoull(end, 0, 10);
}
static void *probe(void *arg) {
  (void)arg;
  /* Highest CFS weight, so the gaps we see are the patcher's stops and not the busy thread or
     the rest of the machine taking our core (needs root; harmless if refused). */
  setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), -20);
  /* A core of our own (the harness keeps itself and the other threads off it), so the gaps are
     stops of the process and not CPU shared with the busy thread and the patcher. */
  if (probe_cpu >= 0) {
    cpu_set_t set; CPU_ZERO(&set); CPU_SET(probe_cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) { perror("probe affinity"); exit(1); }
  }
  sh->probe_tid = (u64)syscall(SYS_gettid);
  /* What a gap was: time runnable but waiting for the core (shared with another task) and the
     rest, time off the run queue (stopped by ptrace or SIGSTOP: the pause; or the VM's vCPU not
     running). The kernel adds a wait to run_delay when the thread gets its core back, so
     reading it right after a gap gives that gap's wait. Read only after gaps long enough to
     hold a switch, so the loop stays a tight clock read. */
  int ss = open("/proc/thread-self/schedstat", O_RDONLY);
  u64 waited = run_delay(ss);
  sh->split = ss >= 0 && waited != ~0ull;
  u64 last = now_ns();
  for (;;) {
    u64 t = now_ns();
    u64 gap = t - last;
    last = t;
    if (sh->reset) {
      sh->max_gap_ns = 0; sh->max_stopped_ns = 0; sh->max_waiting_ns = 0;
      /* A stop or a wait for the core that began after the last clock read (it may have
         lasted until now) belongs to the window before the reset, not to this one; a wait
         left in `waited` would be charged to the next gap, which would show less stopped. */
      if (sh->split) waited = run_delay(ss);
      __sync_synchronize(); sh->reset = 0;
      last = now_ns(); continue;
    }
    if (gap > 10000 && sh->split) {
      u64 w = run_delay(ss);
      u64 waiting = w - waited;
      waited = w;
      if (waiting > gap) waiting = gap; /* waits of earlier short gaps */
      if (gap - waiting > sh->max_stopped_ns) sh->max_stopped_ns = gap - waiting;
      if (waiting > sh->max_waiting_ns) sh->max_waiting_ns = waiting;
      last = now_ns(); /* the read's own time is not a gap */
    }
    if (gap > sh->max_gap_ns) sh->max_gap_ns = gap;
    /* After recording: an answer means every gap before the ping is in the figures. */
    if (sh->ping) sh->ping = 0;
  }
  return 0;
}
static void *sleeper(void *arg) { (void)arg; for (;;) sleep(1000); return 0; }
int main(int argc, char **argv) {
  if (argc != 6) { fprintf(stderr, "usage: probe SHARED SLEEPERS PROBE(0|1) PROBE_CPU(-1: any) LOOP(f0|work)\n"); return 2; }
  if (argv[5][0] == 'w' && !HAS_WORK) { fprintf(stderr, "no work function in this build\n"); return 2; }
  int fd = open(argv[1], O_RDWR | O_CREAT, 0600);
  if (fd < 0 || ftruncate(fd, 4096) != 0) { perror("shared"); return 1; }
  sh = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (sh == MAP_FAILED) { perror("mmap"); return 1; }
  probe_cpu = atoi(argv[4]);
  pthread_attr_t small; pthread_attr_init(&small); pthread_attr_setstacksize(&small, 65536);
  pthread_t t;
  for (int i = 0; i < atoi(argv[2]); i++)
    if (pthread_create(&t, &small, sleeper, 0) != 0) { perror("sleeper"); return 1; }
  if (atoi(argv[3])) {
    if (pthread_create(&t, &small, probe, 0) != 0) { perror("probe"); return 1; }
    while (!sh->probe_tid) sched_yield();
  }
  sh->ready = 1;
"#,
    );
    if work {
        c.push_str(
            r#"  if (argv[5][0] == 'w')
    for (unsigned long i = 0;; i++) {
      sink = work(buf, sizeof buf, (long)i);
      TICK(i);
    }
"#,
        );
    }
    c.push_str(
        r#"  for (unsigned long i = 0;; i++) {
    sink = f0((long)i); /* volatile: the call cannot be dropped or hoisted */
    TICK(i);
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

/// Builds the probe with `functions` functions (and `work` if `work`) in a folder of `dir`
/// named after them (the tests' probes: x86_64).
#[cfg(test)]
pub fn build(dir: &Path, functions: usize, work: bool) -> anyhow::Result<Built> {
    build_for(Machine::X86_64, dir, functions, work)
}

/// [`build`] for `machine`.
pub fn build_for(
    machine: Machine,
    dir: &Path,
    functions: usize,
    work: bool,
) -> anyhow::Result<Built> {
    let dir = dir.join(format!(
        "probe-{}-{functions}{}",
        machine.name(),
        if work { "-work" } else { "" }
    ));
    std::fs::create_dir_all(dir.join("old"))?;
    std::fs::create_dir_all(dir.join("new"))?;
    let path = |p: &str| dir.join(p).display().to_string();
    for (side, fixed) in [("old", false), ("new", true)] {
        std::fs::write(
            dir.join(side).join("probe.c"),
            source(functions, fixed, work),
        )?;
        let mut args = vec![machine.flag()];
        args.extend(CFLAGS);
        let (src, obj) = (
            path(&format!("{side}/probe.c")),
            path(&format!("{side}/probe.o")),
        );
        args.extend(["-c", &src, "-o", &obj]);
        gcc(&args)?;
    }
    let (obj, exe) = (path("old/probe.o"), path("probe"));
    gcc(&[machine.flag(), "-pie", "-pthread", &obj, "-o", &exe])?;
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
    /// The probe thread's run-queue wait at the last reset (ns).
    run_wait_at_reset: std::cell::Cell<u64>,
}

impl Target {
    /// Starts `exe` with `sleepers` sleeping threads, the gap probe as `probe` says, and its
    /// main thread calling `looped`.
    pub fn start(
        exe: &Path,
        sleepers: usize,
        probe: ProbeThread,
        looped: Loop,
    ) -> anyhow::Result<Target> {
        // On tmpfs when there is one: a page of a disk file is written back now and then, and
        // the probe's next store to it can then fault and wait for the write, which the probe
        // would report as a stop.
        let shared_dir = match Path::new("/dev/shm").is_dir() {
            true => tempfile::tempdir_in("/dev/shm")?,
            false => tempfile::tempdir()?,
        };
        let shared_path = shared_dir.path().join("shared");
        let cpu = match probe {
            ProbeThread::Pinned(cpu) => cpu as i64,
            _ => -1,
        };
        let mut command = Command::new(exe);
        let child = command
            .arg(&shared_path)
            .arg(sleepers.to_string())
            .arg(if probe == ProbeThread::Absent {
                "0"
            } else {
                "1"
            })
            .arg(cpu.to_string())
            .arg(match looped {
                Loop::F0 => "f0",
                Loop::Work => "work",
            })
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
                        run_wait_at_reset: Default::default(),
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
        let running = std::fs::read_link(format!("/proc/{}/exe", target.pid()))?;
        if running != exe.canonicalize()? {
            bail!(
                "process {} runs {}, not the probe",
                target.pid(),
                running.display()
            );
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

    /// Fields of /proc/PID/task/TID/schedstat of thread `tid`: time on a core and time
    /// runnable waiting for one, in ns.
    fn schedstat(&self, tid: u64) -> anyhow::Result<(u64, u64)> {
        let path = format!("/proc/{}/task/{tid}/schedstat", self.pid());
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let mut fields = text.split_whitespace().map(str::parse::<u64>);
        match (fields.next(), fields.next()) {
            (Some(Ok(on_cpu)), Some(Ok(waiting))) => Ok((on_cpu, waiting)),
            _ => bail!("unexpected {path}: {text:?}"),
        }
    }

    /// Time the main (busy) thread has run on a core so far.
    pub fn main_thread_cpu(&self) -> anyhow::Result<Duration> {
        Ok(Duration::from_nanos(self.schedstat(self.pid() as u64)?.0))
    }

    /// Clears the probe's gaps and waits until the probe has seen the request.
    pub fn reset_gap(&self) -> anyhow::Result<()> {
        self.run_wait_at_reset
            .set(self.schedstat(self.word(PROBE_TID)?)?.1);
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

    /// Whether the probe splits its gaps into stopped and waiting (it reads its schedstat).
    pub fn splits_gaps(&self) -> anyhow::Result<bool> {
        Ok(self.word(SPLIT)? != 0)
    }

    /// Waits until the probe thread has run after now, so a gap that began before has ended
    /// and is recorded (under load the probe may wait for its core for several ms).
    pub fn sync_probe(&self) -> anyhow::Result<()> {
        self.shared.write_all_at(&1u64.to_le_bytes(), PING)?;
        let started = Instant::now();
        while self.word(PING)? != 0 {
            if started.elapsed() > Duration::from_secs(5) {
                bail!("probe thread does not answer");
            }
            std::thread::yield_now();
        }
        Ok(())
    }

    /// What the probe saw since the last reset.
    pub fn gap(&self) -> anyhow::Result<Gap> {
        let ns = |offset| Ok::<_, anyhow::Error>(Duration::from_nanos(self.word(offset)?));
        let waiting = self.schedstat(self.word(PROBE_TID)?)?.1;
        Ok(Gap {
            max: ns(MAX_GAP)?,
            stopped: ns(MAX_STOPPED)?,
            waiting: ns(MAX_WAITING)?,
            run_wait: Duration::from_nanos(waiting.saturating_sub(self.run_wait_at_reset.get())),
        })
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

    /// Held by tests that pin probes to the last core, so one test's probes do not take
    /// another's core (the test threads run in parallel).
    static LAST_CORE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// The last core this test may use.
    fn last_core() -> usize {
        let allowed = nix::sched::sched_getaffinity(Pid::from_raw(0)).unwrap();
        (0..nix::sched::CpuSet::count())
            .rev()
            .find(|&c| allowed.is_set(c).unwrap())
            .unwrap()
    }

    /// The instrument itself: a 60 ms SIGSTOP must show as a gap of about 60 ms, spent
    /// stopped, whether the probe thread is pinned to a core or not, and the gaps must clear
    /// on reset.
    #[test]
    fn probe_sees_a_stop_and_resets() {
        let dir = tempfile::tempdir().unwrap();
        let built = build(dir.path(), 2, false).unwrap();
        let _core = LAST_CORE.lock().unwrap_or_else(|e| e.into_inner());
        for probe in [ProbeThread::Unpinned, ProbeThread::Pinned(last_core())] {
            let target = Target::start(&built.exe, 3, probe, Loop::F0).unwrap();
            let pid = Pid::from_raw(target.pid());
            target.reset_gap().unwrap();
            kill(pid, Signal::SIGSTOP).unwrap();
            // The stop takes effect asynchronously: time it from when every thread is stopped.
            wait_for(|| all_threads_stopped(target.pid()), "the target to stop");
            std::thread::sleep(Duration::from_millis(60));
            kill(pid, Signal::SIGCONT).unwrap();
            target.sync_probe().unwrap();
            let gap = target.gap().unwrap();
            assert!(gap.max >= Duration::from_millis(55), "{probe:?}: {gap:?}");
            assert!(gap.max < Duration::from_secs(5), "{probe:?}: {gap:?}");
            assert!(
                gap.stopped >= Duration::from_millis(55),
                "{probe:?}: {gap:?}"
            );
            target.reset_gap().unwrap();
            std::thread::sleep(Duration::from_millis(5));
            let gap = target.gap().unwrap();
            assert!(gap.max < Duration::from_millis(55), "{probe:?}: {gap:?}");
            assert!(
                gap.stopped < Duration::from_millis(55),
                "{probe:?}: {gap:?}"
            );
            let before = target.calls().unwrap();
            wait_for(
                || target.calls().unwrap() > before,
                "the busy thread to call f0",
            );
        }
    }

    /// Sharing the probe's core is told apart from a stop: with another probe of the same
    /// weight pinned to the same core, the gaps are run-queue waits (about half the window),
    /// not stops.
    #[test]
    fn probe_tells_a_shared_core_from_a_stop() {
        let dir = tempfile::tempdir().unwrap();
        let built = build(dir.path(), 1, false).unwrap();
        let core = ProbeThread::Pinned(last_core());
        let _core = LAST_CORE.lock().unwrap_or_else(|e| e.into_inner());
        let target = Target::start(&built.exe, 0, core, Loop::F0).unwrap();
        let _rival = Target::start(&built.exe, 0, core, Loop::F0).unwrap();
        target.reset_gap().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        target.sync_probe().unwrap();
        let gap = target.gap().unwrap();
        assert!(target.splits_gaps().unwrap());
        assert!(gap.waiting >= Duration::from_micros(500), "{gap:?}");
        assert!(gap.stopped < Duration::from_millis(55), "{gap:?}");
        assert!(gap.run_wait >= Duration::from_millis(50), "{gap:?}");
    }

    /// The call-rate build runs `work` in its loop when asked, `f0` otherwise, and a build
    /// without `work` refuses to start with it.
    #[test]
    fn the_work_loop_calls_work() {
        let dir = tempfile::tempdir().unwrap();
        let built = build(dir.path(), 1, true).unwrap();
        // What the loop stores in `sink`: f0(i) stays below 2^50 for any i reached in a test
        // (i * 31^3 at most); an FNV-1a hash is above it but once in 2^14.
        let sinks = |looped| {
            let target = Target::start(&built.exe, 0, ProbeThread::Absent, looped).unwrap();
            let sink = symbol_address(target.pid(), &built.exe, "sink").unwrap();
            let mem = File::open(format!("/proc/{}/mem", target.pid())).unwrap();
            (0..5)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(1));
                    let mut b = [0u8; 8];
                    mem.read_exact_at(&mut b, sink).unwrap();
                    i64::from_le_bytes(b).unsigned_abs()
                })
                .collect::<Vec<_>>()
        };
        let large = |v: &Vec<u64>| v.iter().any(|&s| s >= 1 << 50);
        let (work, f0) = (sinks(Loop::Work), sinks(Loop::F0));
        assert!(large(&work), "work loop: {work:x?}");
        assert!(!large(&f0), "f0 loop: {f0:x?}");
        let without = build(&dir.path().join("plain"), 1, false).unwrap();
        assert!(Target::start(&without.exe, 0, ProbeThread::Absent, Loop::Work).is_err());
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
