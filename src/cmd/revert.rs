//! `lpkg revert --pid PID [--id ID | --all] [--json]`

/// Arguments of `lpkg revert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The process to un-patch.
    #[arg(long, value_name = "PID")]
    pub pid: u32,
    /// Revert the package with this id.
    #[arg(long, value_name = "ID", conflicts_with = "all")]
    pub id: Option<String>,
    /// Revert every applied package.
    #[arg(long)]
    pub all: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    super::not_yet_implemented("revert")
}
