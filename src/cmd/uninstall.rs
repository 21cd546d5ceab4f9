//! `lpkg uninstall ID [--store DIR]`

use std::path::PathBuf;

use lpkg_format::Store;

/// Arguments of `lpkg uninstall`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The package id (or a unique prefix of it).
    #[arg(value_name = "ID", value_parser = super::parse_id)]
    pub id: String,
    /// The package store [default: $LPKG_STORE, then /var/lib/lpkg].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::resolve(args.store.as_deref());
    let id = store.uninstall(&args.id)?;
    println!(
        "uninstalled {} from {}: processes that have it applied keep it \
         (`lpkg revert --pid all --id {}` takes it out of them)",
        &id[..id.len().min(16)],
        store.dir().display(),
        &id[..id.len().min(16)]
    );
    Ok(())
}
