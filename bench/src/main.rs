//! `lpkg-bench host [--processes N] [--starts N] [--out DIR]` (see `host.rs`), or
//! `lpkg-bench [--quick] [--out DIR] [--lpkg PATH] [--repeats N] [--no-gdb] [--no-pin] [--call-window-ms MS] [--keep] [--builder-only]`
//!
//! Measures lpkg on this machine and writes `results.md` and `results.json` to DIR: the pause
//! seen from inside a target (probe thread), apply latency, call overhead, builder throughput,
//! and gdb as a reference peer, all in one run. See BENCHMARKS.md.

mod builder;
mod host;
mod pause;
mod pin;
mod report;
mod rusage;
mod session;
mod stats;
mod target;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use target::{Machine, ProbeThread};

/// Everything the measurements share.
pub struct Setup {
    pub quick: bool,
    pub repeats: usize,
    pub gdb: bool,
    pub lpkg: PathBuf,
    pub work: PathBuf,
    pub public_key: PathBuf,
    /// Probe builds and their packages, by machine and function count.
    pub probes: BTreeMap<(Machine, usize), Probe>,
    /// The probe build with `f0` and `work` for call rates (unused with `--builder-only`).
    pub calls_probe: Probe,
    /// Where the probe thread runs.
    pub probe: ProbeThread,
    /// Length of one call-rate window.
    pub call_window: std::time::Duration,
}

/// A probe executable and the package that patches all its functions.
#[derive(Default)]
pub struct Probe {
    pub exe: PathBuf,
    pub package: PathBuf,
}

struct Args {
    quick: bool,
    out: PathBuf,
    lpkg: Option<PathBuf>,
    repeats: Option<usize>,
    gdb: bool,
    /// Length of one call-rate window in ms.
    call_window_ms: Option<u64>,
    /// Pin the probe thread to a core of its own (`--no-pin`: share the cores).
    pin: bool,
    /// Keep the work folder (probes, packages, builder trees) for profiling.
    keep: bool,
    /// Measure only the builder (no probes, pauses or call rates).
    builder_only: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        quick: false,
        out: PathBuf::from("bench-results"),
        lpkg: None,
        repeats: None,
        gdb: true,
        pin: true,
        call_window_ms: None,
        keep: false,
        builder_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.quick = true,
            "--no-gdb" => args.gdb = false,
            "--no-pin" => args.pin = false,
            "--keep" => args.keep = true,
            "--builder-only" => args.builder_only = true,
            "--out" => args.out = it.next().context("--out needs a folder")?.into(),
            "--call-window-ms" => {
                args.call_window_ms = Some(
                    it.next()
                        .context("--call-window-ms needs a number")?
                        .parse()?,
                )
            }
            "--lpkg" => args.lpkg = Some(it.next().context("--lpkg needs a path")?.into()),
            "--repeats" => {
                args.repeats = Some(it.next().context("--repeats needs a number")?.parse()?)
            }
            "-h" | "--help" => {
                println!("usage: lpkg-bench [--quick] [--out DIR] [--lpkg PATH] [--repeats N] [--no-gdb] [--no-pin] [--call-window-ms MS] [--keep] [--builder-only]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    Ok(args)
}

fn lpkg(setup_lpkg: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(setup_lpkg).args(args).output()?;
    if !out.status.success() {
        bail!("lpkg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Builds the probe with `functions` functions (and `work`) and its package.
fn probe(
    work_dir: &Path,
    lpkg_path: &Path,
    key: &Path,
    (machine, functions): (Machine, usize),
    work: bool,
) -> anyhow::Result<Probe> {
    let built = target::build_for(machine, work_dir, functions, work)?;
    let package = built.exe.with_extension("lpkg");
    let s = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    lpkg(
        lpkg_path,
        &[
            "build",
            "--target",
            &s(&built.exe),
            "--old",
            &s(&built.old),
            "--new",
            &s(&built.new),
            "--key",
            &s(&key.with_extension("key")),
            "-o",
            &s(&package),
        ],
    )?;
    Ok(Probe {
        exe: built.exe,
        package,
    })
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("rusage") {
        return rusage::child_main(&argv[3..]);
    }
    if argv.get(1).map(String::as_str) == Some("host") {
        let lpkg = std::env::current_exe()?
            .parent()
            .context("no exe folder")?
            .join("lpkg");
        return host::main(lpkg);
    }
    let args = parse_args()?;
    if let Some(code) = session::rerun_in_own_session()? {
        std::process::exit(code);
    }
    // First, before any thread or child exists, so all of them inherit the harness's cores.
    let mut all_cores = None;
    let probe_thread = if args.pin {
        match pin::reserve_probe_core()? {
            Some((core, allowed)) => {
                all_cores = Some(allowed);
                ProbeThread::Pinned(core)
            }
            None => {
                eprintln!("one core only: the probe thread shares it (as with --no-pin)");
                ProbeThread::Unpinned
            }
        }
    } else {
        ProbeThread::Unpinned
    };
    let lpkg_path = match args.lpkg {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no exe folder")?
            .join("lpkg"),
    };
    if !lpkg_path.exists() {
        bail!(
            "{} not found: build it first (cargo build --release) or pass --lpkg PATH",
            lpkg_path.display()
        );
    }
    let mut work = tempfile::tempdir()?;
    if args.keep {
        work.disable_cleanup(true);
        eprintln!("work folder (kept): {}", work.path().display());
    }
    let key = work.path().join("bench");
    lpkg(
        &lpkg_path,
        &["keygen", "-o", key.to_str().unwrap_or_default()],
    )?;
    let mut setup = Setup {
        quick: args.quick,
        repeats: args.repeats.unwrap_or(if args.quick { 3 } else { 11 }),
        gdb: args.gdb,
        lpkg: lpkg_path,
        work: work.path().to_path_buf(),
        public_key: work.path().join("bench.pub"),
        probes: BTreeMap::new(),
        calls_probe: Probe::default(),
        probe: probe_thread,
        call_window: std::time::Duration::from_millis(
            args.call_window_ms
                .unwrap_or(if args.quick { 300 } else { 1000 }),
        ),
    };
    // (machine, sleeping threads, functions): i386 probes (-m32) next to x86_64 ones.
    use Machine::{I386, X86_64};
    let rows: &[(Machine, usize, usize)] = if args.builder_only {
        &[]
    } else if args.quick {
        &[
            (X86_64, 0, 1),
            (X86_64, 100, 1),
            (X86_64, 0, 10),
            (I386, 0, 1),
        ]
    } else {
        &[
            (X86_64, 0, 1),
            (X86_64, 10, 1),
            (X86_64, 100, 1),
            (X86_64, 1000, 1),
            (X86_64, 0, 10),
            (X86_64, 0, 100),
            (X86_64, 0, 1000),
            (I386, 0, 1),
            (I386, 100, 1),
        ]
    };
    for &(machine, _, functions) in rows {
        if setup.probes.contains_key(&(machine, functions)) {
            continue;
        }
        eprintln!(
            "building {} probe with {functions} function(s)",
            machine.name()
        );
        let built = probe(&setup.work, &setup.lpkg, &key, (machine, functions), false)?;
        setup.probes.insert((machine, functions), built);
    }
    if !args.builder_only {
        eprintln!("building probe for call rates");
        setup.calls_probe = probe(&setup.work, &setup.lpkg, &key, (X86_64, 1), true)?;
    }
    let mut pauses = Vec::new();
    for &(machine, sleepers, functions) in rows {
        eprintln!(
            "pause ({}): 1 busy + {sleepers} sleeping thread(s), {functions} function(s)",
            machine.name()
        );
        pauses.push(pause::measure(&setup, machine, sleepers, functions)?);
    }
    eprintln!("call overhead");
    let calls = if args.builder_only {
        Vec::new()
    } else {
        pause::call_rates(&setup)?
    };
    eprintln!("builder");
    // No probe thread runs now: the builder gets every core, as it would on a release machine.
    if let Some(allowed) = &all_cores {
        pin::release(allowed)?;
    }
    let builds = builder::measure(&setup)?;
    std::fs::create_dir_all(&args.out)?;
    let (md, json) = report::render(&setup, &pauses, &calls, &builds);
    std::fs::write(args.out.join("results.md"), &md)?;
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    print!("{md}");
    Ok(())
}
