//! `lpkg-bench host [--processes N] [--starts N] [--out DIR] [--lpkg PATH]`: the host-wide
//! figures. N copies of a small target run; `lpkg status`, `lpkg apply --pid all` and
//! `lpkg revert --pid all` are timed over them (wall clock, median of runs side by side in one
//! run); then `lpkg daemon` runs with the package installed and new copies are started one by
//! one: the time from each one's spawn until its package is live (median, p99), and the
//! daemon's CPU while idle.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

struct Options {
    processes: usize,
    starts: usize,
    out: PathBuf,
    lpkg: PathBuf,
}

fn options(lpkg: PathBuf) -> anyhow::Result<Options> {
    let mut options = Options {
        processes: 1000,
        starts: 100,
        out: PathBuf::from("bench-results"),
        lpkg,
    };
    let mut it = std::env::args().skip(2);
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--processes" => options.processes = value()?.parse()?,
            "--starts" => options.starts = value()?.parse()?,
            "--out" => options.out = value()?.into(),
            "--lpkg" => options.lpkg = value()?.into(),
            "-h" | "--help" => {
                println!(
                    "usage: lpkg-bench host [--processes N] [--starts N] [--out DIR] [--lpkg PATH]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    Ok(options)
}

/// Copies of the target, killed (by pid) when dropped.
struct Copies(Vec<Child>);

impl Drop for Copies {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

fn run(lpkg: &Path, args: &[&str]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new(lpkg).args(args).output()?;
    let took = started.elapsed();
    // status exits 5 when processes are exposed: that is a result, not a failure.
    if !out.status.success() && out.status.code() != Some(5) {
        bail!(
            "lpkg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(took)
}

fn gcc(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("gcc").args(args).status()?;
    if !status.success() {
        bail!("gcc {args:?} failed");
    }
    Ok(())
}

/// Milliseconds, for the table.
fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub fn main(lpkg: PathBuf) -> anyhow::Result<()> {
    let o = options(lpkg)?;
    let work = tempfile::tempdir()?;
    let dir = work.path();
    let token = format!("{:05x}", std::process::id() & 0xf_ffff);
    let name = format!("lbh{token}");
    std::fs::write(
        dir.join("t.c"),
        "#include <unistd.h>\n__attribute__((noinline)) long rate(long x) { return x * RATE + 1; }\n\
         int main(void) { for (;;) { rate(3); pause(); } }\n",
    )?;
    let path = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let flags = ["-O2", "-g", "-ffunction-sections", "-fdata-sections", "-c"];
    for (object, rate) in [("old.o", "1"), ("new.o", "2")] {
        let (define, source, output) = (format!("-DRATE={rate}"), path("t.c"), path(object));
        let mut args = flags.to_vec();
        args.extend([define.as_str(), &source, "-o", &output]);
        gcc(&args)?;
    }
    gcc(&[&path("old.o"), "-o", &path(&name)])?;
    run(&o.lpkg, &["keygen", "-o", &path("k")])?;
    let (package, trust, store) = (path("p.lpkg"), path("k.pub"), path("store"));
    run(
        &o.lpkg,
        &[
            "build",
            "--target",
            &path(&name),
            "--old",
            &path("old.o"),
            "--new",
            &path("new.o"),
            "--key",
            &path("k.key"),
            "-o",
            &package,
            "--name",
            "bench",
            "--version",
            "1",
        ],
    )?;
    run(
        &o.lpkg,
        &["install", &package, "--trust", &trust, "--store", &store],
    )?;
    let comm = format!("^{name}$");
    eprintln!("starting {} copies", o.processes);
    let mut copies = Copies(Vec::new());
    for _ in 0..o.processes {
        copies.0.push(
            Command::new(dir.join(&name))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()?,
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let status = [
        "status", "--trust", &trust, "--store", &store, "--comm", &comm, "--json",
    ];
    let apply = [
        "apply", &package, "--pid", "all", "--trust", &trust, "--comm", &comm,
    ];
    let revert = ["revert", "--pid", "all", "--all", "--comm", &comm];
    let (mut exposed, mut applied, mut patched, mut reverted) = (vec![], vec![], vec![], vec![]);
    for round in 0..3 {
        eprintln!("round {round}: status, apply --pid all, status, revert --pid all");
        exposed.push(run(&o.lpkg, &status)?);
        applied.push(run(&o.lpkg, &apply)?);
        patched.push(run(&o.lpkg, &status)?);
        reverted.push(run(&o.lpkg, &revert)?);
    }
    drop(copies);
    let (latencies, idle) = daemon(&o, dir, &name, &store, &trust)?;
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let table = format!(
        "| figure ({} processes, {} cores) | median of 3 |\n|---|---|\n\
         | `lpkg status` (all exposed) | {} |\n| `lpkg apply --pid all` | {} |\n\
         | `lpkg status` (all patched) | {} |\n| `lpkg revert --pid all --all` | {} |\n\n\
         | daemon: exec to package live ({} starts) | median | p99 | worst |\n|---|---|---|---|\n\
         | | {} | {} | {} |\n\n\
         daemon CPU while idle (10 s, default rescan 30 s, {} processes on the host): {:.2} % of a core\n",
        o.processes,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        ms(median(&mut exposed)),
        ms(median(&mut applied)),
        ms(median(&mut patched)),
        ms(median(&mut reverted)),
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.iter().copied().max().unwrap_or_default()),
        count_processes(),
        idle * 100.0
    );
    std::fs::create_dir_all(&o.out)?;
    std::fs::write(o.out.join("host.md"), &table)?;
    println!("{table}");
    Ok(())
}

/// Starts the daemon with the package installed, then `o.starts` copies one by one; returns
/// each copy's time from spawn to its package live, and the daemon's idle CPU share.
fn daemon(
    o: &Options,
    dir: &Path,
    name: &str,
    store: &str,
    trust: &str,
) -> anyhow::Result<(Vec<Duration>, f64)> {
    let mut daemon = Copies(vec![Command::new(&o.lpkg)
        .args(["daemon", "--store", store, "--trust", trust])
        .stdout(Stdio::null())
        .spawn()?]);
    std::thread::sleep(Duration::from_millis(1000));
    let mut latencies = Vec::new();
    let mut started = Copies(Vec::new());
    eprintln!("daemon: {} starts", o.starts);
    for _ in 0..o.starts {
        let spawned = Instant::now();
        let child = Command::new(dir.join(name))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        let pid = child.id() as i32;
        started.0.push(child);
        loop {
            let live =
                lpkg_applier::list(pid).is_ok_and(|records| records.iter().any(|r| r.is_live()));
            if live {
                latencies.push(spawned.elapsed());
                break;
            }
            if spawned.elapsed() > Duration::from_secs(10) {
                bail!("process {pid} was not patched within 10 s");
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    latencies.sort();
    let daemon_pid = daemon.0[0].id();
    let before = cpu_ticks(daemon_pid)?;
    std::thread::sleep(Duration::from_secs(10));
    let after = cpu_ticks(daemon_pid)?;
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let idle = (after - before) as f64 / ticks_per_second / 10.0;
    drop(started);
    daemon.0[0].kill()?;
    Ok((latencies, idle))
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (_, rest) = stat.rsplit_once(") ").context("bad stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// The `p`th percentile of sorted durations (nearest rank).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn count_processes() -> usize {
    std::fs::read_dir("/proc").map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        })
        .count()
    })
}
