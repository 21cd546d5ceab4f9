//! Pause and apply latency: one row per (sleeping threads, patched functions), each figure
//! measured in the same run next to quiet windows and the gdb reference.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lpkg_applier::SwitchProfile;
use lpkg_applier::{ApplyOptions, Selection};
use lpkg_format::TrustStore;

use crate::stats::Samples;
use crate::target::{symbol_address, Gap, Loop, Machine, ProbeThread, Target};
use crate::Setup;

/// What the probe saw in repeated windows of one kind, in microseconds (see `target::Gap`).
#[derive(Default, Debug)]
pub struct Gaps {
    /// The largest gap, whatever its cause: what the tables show.
    pub max: Samples,
    /// The largest gap spent stopped.
    pub stopped: Samples,
    /// The largest run-queue wait within one gap.
    pub waiting: Samples,
    /// Run-queue wait of the probe thread in the window.
    pub run_wait: Samples,
}

impl Gaps {
    fn push(&mut self, gap: Gap) {
        self.max.push(gap.max);
        self.stopped.push(gap.stopped);
        self.waiting.push(gap.waiting);
        self.run_wait.push(gap.run_wait);
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "median": self.max.median(),
            "worst": self.max.worst(),
            "samples": self.max.0,
            "stopped": self.stopped.json(),
            "waiting": self.waiting.json(),
            "run_queue_wait": self.run_wait.json(),
        })
    }
}

/// Figures of one row, all in microseconds.
#[derive(Default, Debug)]
pub struct Row {
    /// The probe's machine.
    pub machine: Machine,
    pub sleepers: usize,
    pub functions: usize,
    /// Probe gaps in a window with nothing happening.
    pub quiet: Gaps,
    /// Probe gaps in a window containing a library apply.
    pub apply_gap: Gaps,
    /// The applier's own figure (`ApplyReport::pause`: switch only).
    pub apply_reported: Samples,
    /// Probe gaps in a window containing a library revert.
    pub revert_gap: Gaps,
    /// Wall time of `lpkg_applier::apply`.
    pub apply_lib: Samples,
    /// Run-queue wait of the harness thread (the applier, in-process) during that apply: the
    /// patcher itself waiting for a core, e.g. while the target is stopped.
    pub applier_wait: Samples,
    /// Wall time of `lpkg apply` (process start to exit).
    pub apply_cli: Samples,
    /// Probe gaps in a window containing the CLI apply.
    pub apply_cli_gap: Gaps,
    /// Probe gaps in a window containing gdb attach, 5-byte write, detach.
    pub gdb_gap: Gaps,
    /// Wall time of that gdb command.
    pub gdb_wall: Samples,
    /// The applier's system call counts for each library apply.
    pub switch: Vec<SwitchProfile>,
}

/// Measures the gaps in a window around `f`, plus `f`'s wall time.
fn window<T>(
    target: &Target,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(Gap, Duration, T)> {
    target.reset_gap()?;
    let started = Instant::now();
    let value = f()?;
    let wall = started.elapsed();
    // The probe records a gap only once it runs again.
    target.sync_probe()?;
    Ok((target.gap()?, wall, value))
}

fn gdb_write(pid: i32, address: u64, bytes: &[u8]) -> anyhow::Result<()> {
    let word = u32::from_le_bytes(bytes[..4].try_into()?);
    let out = Command::new("gdb")
        .args(["-nx", "-batch", "-iex", "set debuginfod enabled off"])
        .args(["-p", &pid.to_string()])
        .args([
            "-ex",
            &format!("set {{unsigned int}}{address:#x} = {word:#x}"),
        ])
        .args([
            "-ex",
            &format!("set {{unsigned char}}{:#x} = {:#x}", address + 4, bytes[4]),
        ])
        .output()
        .context("running gdb")?;
    if !out.status.success() {
        bail!("gdb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The calling thread's run-queue wait so far (schedstat; zero where there is none).
fn own_run_wait() -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = text
        .split_whitespace()
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or(0);
    Ok(Duration::from_nanos(ns))
}

pub fn measure(
    setup: &Setup,
    machine: Machine,
    sleepers: usize,
    functions: usize,
) -> anyhow::Result<Row> {
    let built = &setup.probes[&(machine, functions)];
    let package = std::fs::read(&built.package)?;
    let trust = TrustStore::from_path(&setup.public_key)?;
    let options = ApplyOptions::default();
    let target = Target::start(&built.exe, sleepers, setup.probe, Loop::F0)?;
    let pid = target.pid();
    if !target.splits_gaps()? {
        eprintln!("the probe cannot read its schedstat: stopped/waiting figures are 0");
    }
    let f0 = symbol_address(pid, &built.exe, "f0")?;
    let mut original = [0u8; 5];
    File::open(format!("/proc/{pid}/mem"))?.read_exact_at(&mut original, f0)?;
    let mut row = Row {
        machine,
        sleepers,
        functions,
        ..Row::default()
    };
    for _ in 0..setup.repeats {
        let (gap, _, _) = window(&target, || {
            std::thread::sleep(Duration::from_millis(20));
            Ok(())
        })?;
        row.quiet.push(gap);

        let (gap, wall, (report, waited)) = window(&target, || {
            let before = own_run_wait()?;
            let report = lpkg_applier::apply(pid, &package, &trust, &options)?;
            Ok((report, own_run_wait()?.saturating_sub(before)))
        })?;
        row.applier_wait.push(waited);
        row.apply_gap.push(gap);
        row.apply_lib.push(wall);
        row.apply_reported.push(report.pause);
        row.switch.push(report.switch);

        let (gap, _, _) = window(&target, || {
            Ok(lpkg_applier::revert(
                pid,
                &Selection::Latest,
                options.timeout,
            )?)
        })?;
        row.revert_gap.push(gap);

        let (gap, wall, _) = window(&target, || {
            let out = Command::new(&setup.lpkg)
                .arg("apply")
                .arg(&built.package)
                .args(["--pid", &pid.to_string(), "--trust"])
                .arg(&setup.public_key)
                .output()?;
            if !out.status.success() {
                bail!("lpkg apply: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        })?;
        row.apply_cli.push(wall);
        row.apply_cli_gap.push(gap);
        lpkg_applier::revert(pid, &Selection::Latest, options.timeout)?;

        if setup.gdb {
            // The same cost as writing a jump: attach, one 5-byte write, detach. Writing the
            // original bytes back keeps the target correct.
            let (gap, wall, _) = window(&target, || gdb_write(pid, f0, &original))?;
            row.gdb_gap.push(gap);
            row.gdb_wall.push(wall);
        }
    }
    Ok(row)
}

/// Call rates of one function, unpatched and patched, in calls per second of the main
/// thread's core time (not wall time, so other work on the machine taking the core does not
/// count against either side).
#[derive(Debug, Default)]
pub struct CallRate {
    /// The function called in the loop.
    pub function: &'static str,
    /// How the patch reached it: `in place` (its new code written over the old) or `jump`.
    pub how: &'static str,
    pub plain: Samples,
    pub patched: Samples,
    /// patched / unpatched of each pair of adjacent windows.
    pub ratios: Samples,
    /// Where the original and the patched function start, modulo 16.
    pub original_align: u64,
    pub patched_align: u64,
    /// Where the patched function was, for each pair (a new module address each time).
    pub patched_at: Vec<u64>,
    pub original_at: u64,
    /// Length of one window.
    pub window: Duration,
}

/// Calls per core-second of `f0` (the 2 ns leaf) and of `work` (≈ 80 ns) unpatched and
/// patched, as `lpkg apply` patches them (new code in place where it can) and with a jump
/// (`--jump-only`): alternating windows on one target per function and way, the order within
/// a pair alternated too so a drift of the machine does not favour one side.
pub fn call_rates(setup: &Setup) -> anyhow::Result<Vec<CallRate>> {
    let package = std::fs::read(&setup.calls_probe.package)?;
    let trust = TrustStore::from_path(&setup.public_key)?;
    let window = setup.call_window;
    let mut rates = Vec::new();
    let ways = [
        ApplyOptions::default(),
        ApplyOptions {
            in_place: false,
            ..ApplyOptions::default()
        },
    ];
    let runs = [("f0", Loop::F0), ("work", Loop::Work)]
        .into_iter()
        .flat_map(|run| ways.iter().map(move |options| (run, options)));
    for ((function, looped), options) in runs {
        let target = Target::start(&setup.calls_probe.exe, 0, ProbeThread::Absent, looped)?;
        let pid = target.pid();
        let rate = || -> anyhow::Result<f64> {
            let (c0, t0) = (target.calls()?, target.main_thread_cpu()?);
            std::thread::sleep(window);
            let (c1, t1) = (target.calls()?, target.main_thread_cpu()?);
            Ok((c1 - c0) as f64 / (t1 - t0).as_secs_f64())
        };
        let mut row = CallRate {
            function,
            window,
            ..CallRate::default()
        };
        for repeat in 0..setup.repeats {
            let mut plain = None;
            if repeat % 2 == 0 {
                plain = Some(rate()?);
            }
            let report = lpkg_applier::apply(pid, &package, &trust, options)?;
            let patched = rate()?;
            lpkg_applier::revert(pid, &Selection::Latest, Duration::from_secs(10))?;
            let plain = match plain {
                Some(p) => p,
                None => rate()?,
            };
            let entry = report
                .entries
                .iter()
                .find(|e| e.function == function)
                .with_context(|| format!("the package does not replace {function}"))?;
            row.how = if entry.in_place.is_none() {
                "jump"
            } else {
                "in place"
            };
            row.original_align = entry.address % 16;
            let runs_at = if entry.in_place.is_none() {
                entry.new_address
            } else {
                entry.address
            };
            row.patched_align = runs_at % 16;
            row.patched_at.push(entry.new_address);
            row.original_at = entry.address;
            row.plain.push_value(plain);
            row.patched.push_value(patched);
            row.ratios.push_value(patched / plain);
        }
        rates.push(row);
    }
    Ok(rates)
}
