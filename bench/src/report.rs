//! The Markdown table and the JSON file.

use std::fmt::Write as _;

use serde_json::json;

use crate::builder::Case;
use crate::pause::{CallRate, Gaps, Row};
use crate::stats::{show, us, Samples};
use crate::target::ProbeThread;
use crate::Setup;
use lpkg_applier::SwitchProfile;

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    // Online cores, not the harness's own (it keeps itself off the probe's core).
    let cores = std::fs::read_to_string("/proc/cpuinfo").map_or(0, |s| {
        s.lines().filter(|l| l.starts_with("processor")).count()
    });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

pub fn render(
    setup: &Setup,
    rows: &[Row],
    calls: &[CallRate],
    builds: &[Case],
) -> (String, serde_json::Value) {
    let mut md = String::new();
    writeln!(
        md,
        "Machine: {}. Repeats: {}{}.\n",
        machine(),
        setup.repeats,
        if setup.quick { " (--quick)" } else { "" }
    )
    .unwrap();
    md.push_str("### Pause and apply latency (median / worst)\n\n");
    md.push_str("Gaps are the largest gap between two CLOCK_MONOTONIC reads of the probe thread in a window containing the operation; *quiet* is the same window with nothing happening (scheduler noise). ");
    md.push_str(&match setup.probe {
        ProbeThread::Pinned(core) => format!("The probe thread runs alone on core {core}; the harness, the target's other threads, lpkg and gdb on the others.\n\n"),
        _ => "The probe thread shares the cores with the busy thread, the harness, lpkg and gdb (`--no-pin` or one core): gaps include CPU sharing.\n\n".to_owned(),
    });
    md.push_str("| machine | threads | functions | quiet gap | apply gap | apply (reported switch) | revert gap | apply lib wall | `lpkg apply` wall | CLI apply gap | gdb gap | gdb wall |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut json_rows = Vec::new();
    for r in rows {
        writeln!(
            md,
            "| {} | 1 busy + {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.machine.name(),
            r.sleepers,
            r.functions,
            show(&r.quiet.max),
            show(&r.apply_gap.max),
            show(&r.apply_reported),
            show(&r.revert_gap.max),
            show(&r.apply_lib),
            show(&r.apply_cli),
            show(&r.apply_cli_gap.max),
            show(&r.gdb_gap.max),
            show(&r.gdb_wall),
        )
        .unwrap();
        json_rows.push(json!({
            "machine": r.machine.name(),
            "sleeping_threads": r.sleepers,
            "functions": r.functions,
            "unit": "us",
            "quiet_gap": r.quiet.json(),
            "apply_gap": r.apply_gap.json(),
            "apply_reported_pause": r.apply_reported.json(),
            "revert_gap": r.revert_gap.json(),
            "apply_lib_wall": r.apply_lib.json(),
            "applier_run_queue_wait": r.applier_wait.json(),
            "apply_cli_wall": r.apply_cli.json(),
            "apply_cli_gap": r.apply_cli_gap.json(),
            "gdb_gap": r.gdb_gap.json(),
            "gdb_wall": r.gdb_wall.json(),
            "switch": r.switch.iter().map(|p| json!({
                "threads": p.threads,
                "stops": p.stops,
                "single_stops": p.single_stops,
                "ptrace": p.ptrace,
                "waitpid": p.waits,
                "stack_reads": p.stacks,
                "mem_accesses": p.memory,
            })).collect::<Vec<_>>(),
        }));
    }
    md.push_str("\n### What the gaps were (median)\n\nThe probe splits each gap over 10 µs with its own run-queue wait (/proc/thread-self/schedstat, read right after the gap): *stopped* is the largest time off the run queue within one gap (a ptrace or SIGSTOP stop: the pause; also interrupt handling on its core and, on a VM, the vCPU not running), *waiting* the largest run-queue wait within one gap (its core taken by another task: CPU sharing, not a stop). *Run wait*: the probe thread's total run-queue wait in the window. *Applier run wait*: the harness thread's (the applier's, in-process) run-queue wait during the library apply: the patcher waiting for a core, which lengthens a stop it is in.\n\n| machine | threads | functions | quiet: stopped / waiting / run wait | apply: stopped / waiting / run wait | applier run wait | CLI apply: stopped / waiting / run wait | revert: stopped / waiting |\n|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let m = |s: &Samples| us(s.median());
        let three =
            |g: &Gaps| format!("{} / {} / {}", m(&g.stopped), m(&g.waiting), m(&g.run_wait));
        writeln!(
            md,
            "| {} | 1 busy + {} | {} | {} | {} | {} | {} | {} / {} |",
            r.machine.name(),
            r.sleepers,
            r.functions,
            three(&r.quiet),
            three(&r.apply_gap),
            m(&r.applier_wait),
            three(&r.apply_cli_gap),
            m(&r.revert_gap.stopped),
            m(&r.revert_gap.waiting),
        )
        .unwrap();
    }
    md.push_str("\n### System calls of the switch (median per apply)\n\nCounted by the applier (`ApplyReport::switch`) from the first stop of the switch to the detach, failed attempts included: stops of the whole process (+ stops of a thread found busy before, alone), ptrace requests, waitpid calls, stack copies (`process_vm_readv`), /proc/PID/mem accesses (record state twice, one write per jump), and the thread-bound ones (ptrace, waitpid, stack reads) per thread.\n\n| machine | threads | functions | stops | ptrace | waitpid | stack reads | mem accesses | thread syscalls / thread |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let median =
            |f: &dyn Fn(&SwitchProfile) -> f64| Samples(r.switch.iter().map(f).collect()).median();
        writeln!(
            md,
            "| {} | 1 busy + {} | {} | {:.0} + {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} |",
            r.machine.name(),
            r.sleepers,
            r.functions,
            median(&|p| p.stops as f64),
            median(&|p| p.single_stops as f64),
            median(&|p| p.ptrace as f64),
            median(&|p| p.waits as f64),
            median(&|p| p.stacks as f64),
            median(&|p| p.memory as f64),
            median(&|p| p.per_thread()),
        )
        .unwrap();
    }
    md.push_str("\n### Call overhead\n\nCalls per second of the main thread's core time (schedstat), unpatched and patched in alternating windows on one target; ratio = median of the ratios of adjacent windows, with their range (the spread of the measurement).\n\n| function | patched with | window | unpatched (calls/s, median) | patched (calls/s, median) | ratio (median) | ratio min – max | entry mod 16: original, patched |\n|---|---|---|---|---|---|---|---|\n");
    let mut json_calls = Vec::new();
    for c in calls {
        writeln!(
            md,
            "| `{}` | {} | {} ms | {:.3e} | {:.3e} | {:.3} | {:.3} – {:.3} | {}, {} |",
            c.function,
            c.how,
            c.window.as_millis(),
            c.plain.median(),
            c.patched.median(),
            c.ratios.median(),
            c.ratios.0.iter().copied().fold(f64::NAN, f64::min),
            c.ratios.worst(),
            c.original_align,
            c.patched_align,
        )
        .unwrap();
        json_calls.push(json!({
            "function": c.function,
            "patched_with": c.how,
            "window_ms": c.window.as_millis() as u64,
            "unpatched_per_cpu_s": c.plain.json(),
            "patched_per_cpu_s": c.patched.json(),
            "ratio": c.ratios.json(),
            "original_entry_mod_16": c.original_align,
            "patched_entry_mod_16": c.patched_align,
            "original_entry": c.original_at,
            "patched_entries": c.patched_at,
        }));
    }
    md.push_str("\n### Builder\n\n| tree | input | `lpkg build` wall | read+SHA-256 | ratio | peak RSS | RSS / input |\n|---|---|---|---|---|---|---|\n");
    let mut json_builds = Vec::new();
    for b in builds {
        let mib = |v: f64| v / 1048576.0;
        writeln!(
            md,
            "| {} | {:.1} MiB | {} | {} | {:.1}× | {:.1} MiB | {:.2}× |",
            b.name,
            mib(b.input_bytes as f64),
            show(&b.build),
            show(&b.read_hash),
            b.build.median() / b.read_hash.median(),
            mib(b.max_rss.median()),
            b.max_rss.median() / b.input_bytes as f64,
        )
        .unwrap();
        json_builds.push(json!({
            "tree": b.name,
            "input_bytes": b.input_bytes,
            "build_wall_us": b.build.json(),
            "read_hash_us": b.read_hash.json(),
            "max_rss_bytes": b.max_rss.json(),
        }));
    }
    let json = json!({
        "machine": machine(),
        "repeats": setup.repeats,
        "quick": setup.quick,
        "pause": json_rows,
        "probe_thread": match setup.probe {
            ProbeThread::Pinned(core) => json!({ "pinned_core": core }),
            _ => json!("unpinned"),
        },
        "call_overhead": json_calls,
        "builder": json_builds,
    });
    (md, json)
}
