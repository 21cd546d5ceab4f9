//! Runs the builder and prints the manifest, the symbol map and the notes:
//! `cargo run -p lpkg-builder --example dump -- TARGET OLD NEW [--allow-line-changes]`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: dump TARGET OLD NEW [--allow-line-changes]");
        std::process::exit(2);
    }
    let opts = lpkg_builder::BuildOptions {
        target: args[0].clone().into(),
        old: args[1].clone().into(),
        new: args[2].clone().into(),
        name: "dump".into(),
        version: "0".into(),
        description: String::new(),
        allow_line_changes: args.iter().any(|a| a == "--allow-line-changes"),
        ..Default::default()
    };
    match lpkg_builder::build(&opts) {
        Ok(built) => {
            println!("{}", toml::to_string(&built.manifest).unwrap());
            println!(
                "# symbols.toml\n{}",
                String::from_utf8_lossy(&built.payloads[1].1)
            );
            for n in &built.notes {
                println!("# note: {n}");
            }
            if let Some(out) = args.get(3).filter(|a| !a.starts_with("--")) {
                std::fs::write(out, &built.payloads[0].1).unwrap();
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
