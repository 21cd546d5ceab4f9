//! `lpkg sign PKG --key KEY`

use std::path::PathBuf;

use anyhow::Context;
use lpkg_format::{Package, SecretKey};

/// Arguments of `lpkg sign`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The package to sign (rewritten in place).
    #[arg(value_name = "PKG")]
    package: PathBuf,
    /// Secret key file (from `lpkg keygen`).
    #[arg(long, value_name = "KEY")]
    key: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let key = SecretKey::read(&args.key)?;
    let bytes = super::read_package_file(&args.package)?;
    let mut package =
        Package::from_bytes(&bytes).with_context(|| args.package.display().to_string())?;
    package.sign(&key)?;
    // Write beside the package then rename, so a failure never leaves a half-written package.
    let mut temp = args.package.clone().into_os_string();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    std::fs::write(&temp, package.to_bytes())
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, &args.package)
        .with_context(|| format!("renaming {} to {}", temp.display(), args.package.display()))?;
    println!(
        "signed {} with key {} ({} signature(s))",
        args.package.display(),
        key.public().key_id(),
        package.signatures().len()
    );
    Ok(())
}
