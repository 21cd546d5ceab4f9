//! The compiler wrapper: a folder of `cc`/`gcc`/`c++`/`g++` scripts put first on `PATH` (and in
//! `CC`/`CXX`) that run the real compiler with the project's own flags plus the ones the differ
//! needs.
//!
//! The flags go last so they win over a project's `-fno-function-sections`. `lpkg.h` (shadow
//! variables, routines) is on the include path after the project's own folders
//! (`-idirafter`), so an adapted fix only has to include it. The tree's absolute
//! path is mapped to `.` so the original and patched copies, which live in different folders,
//! produce identical bytes for unchanged sources (paths end up in DWARF and `__FILE__`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{BuildCommand, Error};

/// Compilers wrapped: (name in the shim, real compiler looked up on `PATH`).
const COMPILERS: [(&str, &str); 4] = [
    ("cc", "gcc"),
    ("gcc", "gcc"),
    ("c++", "g++"),
    ("g++", "g++"),
];

/// The header patches include (`builder/include/lpkg.h`).
const LPKG_H: &str = include_str!("../../include/lpkg.h");

pub struct Shim {
    bin: PathBuf,
}

impl Shim {
    /// Writes the wrapper scripts for building `tree` into `dir/bin`.
    pub fn install(dir: &Path, tree: &Path) -> Result<Shim, Error> {
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).map_err(|e| Error::tree(&bin, e))?;
        // Absolute: the build runs inside the tree, where a relative PATH entry means nothing.
        let bin = std::fs::canonicalize(&bin).map_err(|e| Error::tree(&bin, e))?;
        let tree = std::fs::canonicalize(tree).map_err(|e| Error::tree(tree, e))?;
        let include = bin.with_file_name("include");
        std::fs::create_dir_all(&include).map_err(|e| Error::tree(&include, e))?;
        let header = include.join("lpkg.h");
        std::fs::write(&header, LPKG_H).map_err(|e| Error::tree(&header, e))?;
        for (name, real) in COMPILERS {
            let Some(real_path) = find_on_path(real) else {
                if real == "gcc" {
                    return Err(Error::NoCompiler {
                        compiler: real.into(),
                    });
                }
                continue; // no C++ compiler: C projects still build
            };
            let script = format!(
                "#!/bin/sh\nexec '{}' \"$@\" -ffunction-sections -fdata-sections '-ffile-prefix-map={}=.' -idirafter '{}'\n",
                real_path.display(),
                tree.display(),
                include.display()
            );
            let path = bin.join(name);
            std::fs::write(&path, script).map_err(|e| Error::tree(&path, e))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::tree(&path, e))?;
        }
        Ok(Shim { bin })
    }

    /// Runs the build command in `tree` with the wrapper, its output going to `log`.
    pub fn run(&self, tree: &Path, cmd: &BuildCommand, log: &Path) -> Result<(), Error> {
        let out = std::fs::File::create(log).map_err(|e| Error::tree(log, e))?;
        let err = out.try_clone().map_err(|e| Error::tree(log, e))?;
        let path = match std::env::var_os("PATH") {
            Some(p) => {
                let mut all = vec![self.bin.clone()];
                all.extend(std::env::split_paths(&p));
                std::env::join_paths(all).map_err(|e| Error::tree(&self.bin, e))?
            }
            None => self.bin.clone().into_os_string(),
        };
        let status = Command::new(&cmd.argv[0])
            .args(&cmd.argv[1..])
            .current_dir(tree)
            .env("PATH", path)
            .env("CC", self.bin.join("cc"))
            .env("CXX", self.bin.join("c++"))
            .env("MAKEFLAGS", format!("-j{}", cmd.jobs))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| Error::tree(&cmd.argv[0], e))?;
        if status.success() {
            return Ok(());
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(cmd.tail_lines)..].join("\n");
        Err(Error::BuildFailed {
            tree: tree.to_path_buf(),
            command: cmd.argv.join(" "),
            status: status.to_string(),
            log: log.to_path_buf(),
            tail,
        })
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
