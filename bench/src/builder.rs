//! Builder throughput: `lpkg build` on a generated build tree against reading and hashing the
//! same inputs, and its peak memory against the input size.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::rusage;
use crate::stats::Samples;
use crate::target::{gcc, CFLAGS};
use crate::Setup;

/// One builder case.
#[derive(Debug, Default)]
pub struct Case {
    pub name: String,
    pub input_bytes: u64,
    pub build: Samples,
    pub read_hash: Samples,
    pub max_rss: Samples,
}

/// A C file of `functions` functions named `{prefix}_f{k}`; `changed` of them differ in `new`.
fn unit(prefix: &str, functions: usize, changed: usize, fixed: bool) -> String {
    let mut c = String::new();
    for k in 0..functions {
        let delta = if fixed && k < changed { 1 } else { 0 };
        writeln!(
            c,
            "int {prefix}_f{k}(int x) {{ int s = x; for (int i = 0; i < (x & 15); i++) \
             s = s * {} + i; return s ^ {}; }}",
            k + 3,
            k + delta
        )
        .unwrap();
    }
    c
}

fn write_tree(
    dir: &Path,
    files: usize,
    functions: usize,
    changed_files: usize,
) -> anyhow::Result<()> {
    for side in ["old", "new"] {
        std::fs::create_dir_all(dir.join(side))?;
        for i in 0..files {
            let src = dir.join(format!("{side}/u{i}.c"));
            let changed = if i < changed_files { 1 } else { 0 };
            std::fs::write(
                &src,
                unit(&format!("u{i}"), functions, changed, side == "new"),
            )?;
            let obj = dir.join(format!("{side}/u{i}.o"));
            let (src, obj) = (src.display().to_string(), obj.display().to_string());
            let mut args = CFLAGS.to_vec();
            args.extend(["-c", &src, "-o", &obj]);
            gcc(&args)?;
        }
    }
    let main = dir.join("main.c");
    let mut c = String::new();
    for i in 0..files {
        writeln!(c, "int u{i}_f0(int);").unwrap();
    }
    c.push_str("int main(int argc, char **argv) { int s = 0;\n");
    for i in 0..files {
        writeln!(c, "  s += u{i}_f0(argc);").unwrap();
    }
    c.push_str("  (void)argv; return s & 1; }\n");
    std::fs::write(&main, c)?;
    let mut args: Vec<String> = vec![
        "-pie".into(),
        "-o".into(),
        dir.join("target").display().to_string(),
    ];
    args.push(main.display().to_string());
    for i in 0..files {
        args.push(dir.join(format!("old/u{i}.o")).display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    gcc(&args)
}

fn inputs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = vec![dir.join("target")];
    for side in ["old", "new"] {
        for entry in std::fs::read_dir(dir.join(side))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "o") {
                files.push(path);
            }
        }
    }
    Ok(files)
}

fn read_hash(files: &[PathBuf]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut hasher = Sha256::new();
    for f in files {
        hasher.update(std::fs::read(f)?);
    }
    std::hint::black_box(hasher.finalize());
    Ok(started.elapsed())
}

fn case(
    setup: &Setup,
    name: &str,
    files: usize,
    functions: usize,
    changed: usize,
) -> anyhow::Result<Case> {
    let dir = setup.work.join(format!("tree-{name}"));
    write_tree(&dir, files, functions, changed)?;
    let list = inputs(&dir)?;
    let mut result = Case {
        name: name.into(),
        input_bytes: list
            .iter()
            .map(|f| f.metadata().map_or(0, |m| m.len()))
            .sum(),
        ..Case::default()
    };
    let (target, old, new) = (dir.join("target"), dir.join("old"), dir.join("new"));
    let key = setup.work.join("bench.key");
    let out = dir.join("fix.lpkg");
    // One unmeasured round first: gcc has just written the inputs, and the first read of them
    // (page cache, the machine's fresh memory) is not what either side costs when run again.
    for round in 0..=setup.repeats {
        let read_hash = read_hash(&list)?;
        let _ = std::fs::remove_file(&out);
        let usage = rusage::measure(&[
            setup.lpkg.to_str().unwrap_or_default(),
            "build",
            "--target",
            target.to_str().unwrap_or_default(),
            "--old",
            old.to_str().unwrap_or_default(),
            "--new",
            new.to_str().unwrap_or_default(),
            "--key",
            key.to_str().unwrap_or_default(),
            "-o",
            out.to_str().unwrap_or_default(),
        ])?;
        if round > 0 {
            result.read_hash.push(read_hash);
            result.build.push(usage.wall);
            result.max_rss.push_value(usage.max_rss as f64);
        }
    }
    Ok(result)
}

/// The tree of many objects and the one very large object.
pub fn measure(setup: &Setup) -> anyhow::Result<Vec<Case>> {
    let (files, big) = if setup.quick {
        (20, 2000)
    } else {
        (100, 10000)
    };
    Ok(vec![
        case(setup, &format!("{files}-objects"), files, 50, files / 10)?,
        case(setup, &format!("1-object-{big}-functions"), 1, big, 10)?,
    ])
}
