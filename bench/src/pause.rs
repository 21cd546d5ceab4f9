//! Pause and apply latency: one row per (sleeping threads, patched functions), each figure
//! measured in the same run next to quiet windows and the gdb reference.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use lpkg_applier::apply::SwitchProfile;
use lpkg_applier::{ApplyOptions, Selection};
use lpkg_format::TrustStore;

use crate::stats::Samples;
use crate::target::{symbol_address, Target};
use crate::Setup;

/// Figures of one row, all in microseconds.
#[derive(Default, Debug)]
pub struct Row {
    pub sleepers: usize,
    pub functions: usize,
    /// Largest probe gap in a window with nothing happening.
    pub quiet: Samples,
    /// Largest probe gap in a window containing a library apply.
    pub apply_gap: Samples,
    /// The applier's own figure (`ApplyReport::pause`: switch only).
    pub apply_reported: Samples,
    /// Largest probe gap in a window containing a library revert.
    pub revert_gap: Samples,
    /// Wall time of `lpkg_applier::apply`.
    pub apply_lib: Samples,
    /// Wall time of `lpkg apply` (process start to exit).
    pub apply_cli: Samples,
    /// Largest probe gap in a window containing the CLI apply.
    pub apply_cli_gap: Samples,
    /// Largest probe gap in a window containing gdb attach, 5-byte write, detach.
    pub gdb_gap: Samples,
    /// Wall time of that gdb command.
    pub gdb_wall: Samples,
    /// The applier's system call counts for each library apply.
    pub switch: Vec<SwitchProfile>,
}

/// Measures the gap in a window around `f`, plus `f`'s wall time.
fn window<T>(
    target: &Target,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(Duration, Duration, T)> {
    target.reset_gap()?;
    let started = Instant::now();
    let value = f()?;
    let wall = started.elapsed();
    // The probe records a gap only once it runs again; give it a moment.
    std::thread::sleep(Duration::from_millis(2));
    Ok((target.max_gap()?, wall, value))
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

pub fn measure(setup: &Setup, sleepers: usize, functions: usize) -> anyhow::Result<Row> {
    let built = &setup.probes[&functions];
    let package = std::fs::read(&built.package)?;
    let trust = TrustStore::from_path(&setup.public_key)?;
    let options = ApplyOptions::default();
    let target = Target::start(&built.exe, sleepers, true)?;
    let pid = target.pid();
    let f0 = symbol_address(pid, &built.exe, "f0")?;
    let mut original = [0u8; 5];
    File::open(format!("/proc/{pid}/mem"))?.read_exact_at(&mut original, f0)?;
    let mut row = Row {
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

        let (gap, wall, report) = window(&target, || {
            Ok(lpkg_applier::apply(pid, &package, &trust, &options)?)
        })?;
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

/// Calls per second of f0 unpatched and patched, alternating windows on one target.
pub fn call_rate(setup: &Setup) -> anyhow::Result<(Samples, Samples)> {
    let built = &setup.probes[&1];
    let package = std::fs::read(&built.package)?;
    let trust = TrustStore::from_path(&setup.public_key)?;
    let target = Target::start(&built.exe, 0, false)?;
    let pid = target.pid();
    let window = if setup.quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(1)
    };
    let rate = || -> anyhow::Result<f64> {
        let (c0, t0) = (target.calls()?, Instant::now());
        std::thread::sleep(window);
        let (c1, t1) = (target.calls()?, Instant::now());
        Ok((c1 - c0) as f64 / (t1 - t0).as_secs_f64())
    };
    let (mut plain, mut patched) = (Samples::default(), Samples::default());
    for _ in 0..setup.repeats {
        plain.push_value(rate()?);
        lpkg_applier::apply(pid, &package, &trust, &ApplyOptions::default())?;
        patched.push_value(rate()?);
        lpkg_applier::revert(pid, &Selection::Latest, Duration::from_secs(10))?;
    }
    Ok((plain, patched))
}
