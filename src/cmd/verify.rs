//! `lpkg verify PKG [--trust FILE|DIR] [--json]`

use std::path::PathBuf;

use anyhow::Context;
use lpkg_format::{open_verified, TrustStore};

/// Arguments of `lpkg verify`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The package to verify.
    #[arg(value_name = "PKG")]
    package: PathBuf,
    /// Trusted public key (.pub) or folder of them [default: $LPKG_TRUST, then /etc/lpkg/trusted/].
    #[arg(long, value_name = "FILE|DIR")]
    trust: Option<PathBuf>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let result = verify(&args);
    if args.json {
        let value = match &result {
            Ok((package, signers)) => serde_json::json!({
                "ok": true,
                "id": package.id(),
                "name": package.manifest().package.name,
                "version": package.manifest().package.version,
                "machine": package.manifest().target.machine,
                "trusted_signers": signers.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            }),
            Err(err) => serde_json::json!({
                "ok": false,
                "error": super::super::exit::one_line(err),
            }),
        };
        println!("{value}");
    }
    let (package, signers) = result?;
    if !args.json {
        let signers: Vec<String> = signers.iter().map(|k| k.to_string()).collect();
        let manifest = package.manifest();
        println!(
            "OK {} {} (id {}) for {} {} signed by trusted key {}",
            manifest.package.name,
            manifest.package.version,
            package.id(),
            super::shown(&manifest.target.file_name),
            super::shown(&manifest.target.machine),
            signers.join(", ")
        );
    }
    Ok(())
}

fn verify(args: &Args) -> anyhow::Result<(lpkg_format::Package, Vec<lpkg_format::KeyId>)> {
    let trust = TrustStore::resolve(args.trust.as_deref())?;
    let bytes = super::read_package_file(&args.package)?;
    open_verified(&bytes, &trust).with_context(|| args.package.display().to_string())
}
