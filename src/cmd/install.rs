//! `lpkg install PKG [--trust FILE|DIR] [--store DIR] [--json]`

use std::path::PathBuf;

/// Arguments of `lpkg install`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The package to install.
    #[arg(value_name = "PKG")]
    pub package: PathBuf,
    #[command(flatten)]
    pub stores: super::StoreArgs,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (trust, store) = args.stores.resolve()?;
    let bytes = super::read_package_file(&args.package)?;
    let (package, new) = store.install(&bytes, &trust)?;
    let manifest = package.manifest();
    if args.json {
        let value = serde_json::json!({
            "id": package.id(),
            "name": manifest.package.name,
            "version": manifest.package.version,
            "installed": new,
            "store": store.dir().to_string_lossy(),
        });
        println!("{value}");
    } else {
        let what = if new {
            "installed"
        } else {
            "already installed"
        };
        println!(
            "{what} {} {} (id {}) in {}: `lpkg apply --pid all` applies it to running processes, \
             `lpkg daemon` to processes as they start",
            manifest.package.name,
            manifest.package.version,
            &package.id()[..16],
            store.dir().display()
        );
    }
    Ok(())
}
