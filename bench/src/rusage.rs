//! `lpkg-bench rusage -- CMD...`: runs CMD and prints its wall time and peak RSS, so the
//! figure is the child's alone (RUSAGE_CHILDREN of this short-lived process).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::resource::{getrusage, UsageWho};

/// Wall time and peak resident set (bytes) of a command.
pub struct Usage {
    pub wall: Duration,
    pub max_rss: u64,
}

/// Entry point of the `rusage` sub-mode: prints "WALL_NS MAXRSS_BYTES".
pub fn child_main(cmd: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    let status = Command::new(&cmd[0]).args(&cmd[1..]).status()?;
    let wall = started.elapsed();
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    // ru_maxrss is in KiB on Linux.
    println!("{} {}", wall.as_nanos(), usage.max_rss() as u64 * 1024);
    Ok(())
}

/// Runs `cmd` under a fresh `lpkg-bench rusage` process.
pub fn measure(cmd: &[&str]) -> anyhow::Result<Usage> {
    let out = Command::new(std::env::current_exe()?)
        .arg("rusage")
        .arg("--")
        .args(cmd)
        .output()?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("no rusage line")?;
    let mut parts = line.split_whitespace().map(|p| p.parse::<u64>());
    let (Some(Ok(wall)), Some(Ok(rss))) = (parts.next(), parts.next()) else {
        bail!("bad rusage line {line:?}");
    };
    Ok(Usage {
        wall: Duration::from_nanos(wall),
        max_rss: rss,
    })
}
