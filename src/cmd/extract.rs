//! `lpkg extract PKG -o DIR`

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use lpkg_format::container::MANIFEST_FILE_NAME;
use lpkg_format::Package;

/// Arguments of `lpkg extract`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The package to extract (its structure and digests are checked, not its signatures).
    #[arg(value_name = "PKG")]
    package: PathBuf,
    /// Folder to write manifest.toml and the payloads into (created if missing; existing files
    /// are never overwritten).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    output: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bytes = super::read_package_file(&args.package)?;
    let package =
        Package::from_bytes(&bytes).with_context(|| args.package.display().to_string())?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    // Payload names are restricted by the format to plain file names, so they stay inside DIR.
    let files: Vec<(&str, &[u8])> = std::iter::once((MANIFEST_FILE_NAME, package.manifest_bytes()))
        .chain(package.payloads())
        .collect();
    // All or nothing: a name already taken is found before anything is written.
    if let Some(taken) = (files.iter())
        .map(|(name, _)| args.output.join(name))
        .find(|path| path.symlink_metadata().is_ok())
    {
        anyhow::bail!("{} already exists: nothing was extracted", taken.display());
    }
    for (name, contents) in files {
        let path = args.output.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut file| file.write_all(contents))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
