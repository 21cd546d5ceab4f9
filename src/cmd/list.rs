//! `lpkg list --pid PID [--json]`

/// Arguments of `lpkg list`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The process to look at.
    #[arg(long, value_name = "PID")]
    pub pid: u32,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    super::not_yet_implemented("list")
}
