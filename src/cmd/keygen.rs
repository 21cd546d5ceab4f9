//! `lpkg keygen -o PATH [-f]`

use std::ffi::OsString;
use std::path::PathBuf;

use lpkg_format::SecretKey;

/// Arguments of `lpkg keygen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Writes PATH.key (secret) and PATH.pub (public).
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    output: PathBuf,
    /// Overwrite existing key files.
    #[arg(short = 'f', long)]
    force: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if args.output.as_os_str().as_bytes().ends_with(b"/") || args.output.is_dir() {
        return Err(super::super::exit::Usage(format!(
            "-o {}: a folder; -o takes the key files' path without suffix (`-o keys/release` writes keys/release.key and keys/release.pub)",
            args.output.display()
        ))
        .into());
    }
    let secret_path = with_suffix(&args.output, ".key");
    let public_path = with_suffix(&args.output, ".pub");
    if !args.force {
        // Check both first so a refusal never leaves half a key pair behind.
        for path in [&secret_path, &public_path] {
            if path.symlink_metadata().is_ok() {
                return Err(lpkg_format::Error::KeyExists { path: path.clone() }.into());
            }
        }
    }
    let key = SecretKey::generate()?;
    key.write(&secret_path, args.force)?;
    key.public().write(&public_path, args.force)?;
    println!(
        "key id {}\nsecret key: {} (keep it private)\npublic key: {} (install it in trust stores)",
        key.public().key_id(),
        secret_path.display(),
        public_path.display()
    );
    Ok(())
}

fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}
