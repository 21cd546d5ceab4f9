//! `lpkg installed [--trust FILE|DIR] [--store DIR] [--json]`

/// Arguments of `lpkg installed`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub stores: super::StoreArgs,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (trust, store) = args.stores.resolve()?;
    let (stored, skipped) = store.packages(&trust)?;
    for s in &skipped {
        eprintln!("lpkg: skipped {}: {}", s.path.display(), s.error);
    }
    if args.json {
        let value: Vec<_> = stored
            .iter()
            .map(|s| {
                let m = s.package.manifest();
                serde_json::json!({
                    "id": s.package.id(),
                    "name": m.package.name,
                    "version": m.package.version,
                    "target": m.target.file_name,
                    "build_id": m.target.build_id,
                    "signers": s.signers.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                    "path": s.path.to_string_lossy(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(value));
        return Ok(());
    }
    if stored.is_empty() {
        println!("no package is installed in {}", store.dir().display());
        return Ok(());
    }
    println!(
        "{:<16}  {:<24} {:<10} TARGET (BUILD-ID)",
        "ID", "NAME", "VERSION"
    );
    for s in &stored {
        let m = s.package.manifest();
        println!(
            "{:<16}  {:<24} {:<10} {} ({})",
            &s.package.id()[..16],
            m.package.name,
            m.package.version,
            m.target.file_name,
            m.target.build_id
        );
    }
    Ok(())
}
