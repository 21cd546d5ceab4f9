//! `lpkg build --target BIN --old OLD --new NEW --key KEY -o OUT [--name N] [--version V] [--description D]`

use std::path::PathBuf;

/// Arguments of `lpkg build`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The executable or shared library running in the field (as installed).
    #[arg(long, value_name = "BIN")]
    pub target: PathBuf,
    /// The object file the target was built from.
    #[arg(long, value_name = "OLD")]
    pub old: PathBuf,
    /// The same object file, built from the fixed source.
    #[arg(long, value_name = "NEW")]
    pub new: PathBuf,
    /// Secret key to sign the package with.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Where to write the package.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
    /// Package name [default: derived from the target].
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// Package version.
    #[arg(long, value_name = "V")]
    pub version: Option<String>,
    /// Description for auditors.
    #[arg(long, value_name = "D")]
    pub description: Option<String>,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    super::not_yet_implemented("build")
}
