//! `lpkg apply PKG --pid PID [--trust FILE|DIR] [--timeout SECS] [--json]`

use std::path::PathBuf;

/// Arguments of `lpkg apply`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The package to apply.
    #[arg(value_name = "PKG")]
    pub package: PathBuf,
    /// The process to patch.
    #[arg(long, value_name = "PID")]
    pub pid: u32,
    /// Trusted public key (.pub) or folder of them [default: $LPKG_TRUST, then /etc/lpkg/trusted/].
    #[arg(long, value_name = "FILE|DIR")]
    pub trust: Option<PathBuf>,
    /// Give up (and leave the process unchanged) after this many seconds.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    super::not_yet_implemented("apply")
}
