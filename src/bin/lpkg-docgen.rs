//! `lpkg-docgen OUT_DIR`: writes lpkg's manual pages (`OUT_DIR/man/lpkg.1` and one per command,
//! `lpkg-apply.1`...) and its shell completions (`OUT_DIR/completions/lpkg.bash`, `_lpkg`,
//! `lpkg.fish`), generated from the clap definitions the `lpkg` binary parses with, so they
//! never disagree with it. `scripts/build-deb.sh` puts them in the `.deb`.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

// The lpkg command line itself, compiled into this binary; its `main` is not used here.
#[allow(dead_code)]
#[path = "../main.rs"]
mod lpkg;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: lpkg-docgen OUT_DIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(&out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lpkg-docgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(lpkg::Cli::command(), &man)?;
    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut lpkg::Cli::command(), "lpkg", &completions)?;
    }
    Ok(())
}
