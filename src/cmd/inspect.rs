//! `lpkg inspect PKG [--trust FILE|DIR] [--json] [--disasm [--target BIN]]`
//!
//! Shows the content of any structurally valid package (digests checked), then exits like
//! `lpkg verify`: 0 only when a trusted signature is valid. An auditor can thus read an
//! unverified package, and a script can never mistake one for a verified one.

use std::path::PathBuf;

use anyhow::Context;
use lpkg_format::{Action, KeyId, Manifest, Package, RoutineKind, TrustStore};
use serde_json::{json, Value};

/// Arguments of `lpkg inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The package to show.
    #[arg(value_name = "PKG")]
    package: PathBuf,
    /// Trusted public key (.pub) or folder of them [default: $LPKG_TRUST, then /etc/lpkg/trusted/].
    #[arg(long, value_name = "FILE|DIR")]
    trust: Option<PathBuf>,
    /// Print everything as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Show every function's old and new instructions side by side.
    #[arg(long)]
    disasm: bool,
    /// The target binary the package was built for: where `--disasm` reads the old code.
    #[arg(long, value_name = "BIN", requires = "disasm")]
    target: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bytes = super::read_package_file(&args.package)?;
    let package =
        Package::from_bytes(&bytes).with_context(|| args.package.display().to_string())?;
    let verdict = TrustStore::resolve(args.trust.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|trust| {
            package
                .verify(&trust)
                .with_context(|| args.package.display().to_string())
        });
    let listings = if args.disasm {
        let module = package.module()?;
        Some(lpkg_builder::disasm::listings(
            package.manifest(),
            module,
            args.target.as_deref(),
        )?)
    } else {
        None
    };
    if args.json {
        let mut value = to_json(&package, &verdict);
        if let Some(listings) = &listings {
            value["disasm"] = listings
                .iter()
                .map(|l| json!({"name": l.name, "old": l.old, "old_missing": l.old_missing, "new": l.new}))
                .collect();
        }
        println!("{value}");
    } else {
        print_text(&package, &verdict);
        if let Some(listings) = &listings {
            print_disasm(listings);
        }
    }
    verdict.map(|_| ())
}

fn action(action: Action) -> &'static str {
    match action {
        Action::Replace => "replace",
        Action::New => "new",
    }
}

fn kind(kind: RoutineKind) -> &'static str {
    match kind {
        RoutineKind::Check => "check",
        RoutineKind::Init => "init",
        RoutineKind::Exit => "exit",
    }
}

fn to_json(package: &Package, verdict: &anyhow::Result<Vec<KeyId>>) -> Value {
    let m: &Manifest = package.manifest();
    let ids = |keys: &[KeyId]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let signers: Vec<KeyId> = package.signatures().iter().map(|s| s.key_id).collect();
    json!({
        "id": package.id(),
        "format_version": m.format_version,
        "name": m.package.name,
        "version": m.package.version,
        "description": m.package.description,
        "builder_version": m.package.builder_version,
        "target": {
            "file_name": m.target.file_name,
            "build_id": m.target.build_id,
            "sha256": m.target.sha256,
            "machine": m.target.machine,
            "unwinder": m.target.unwinder.map(|u| json!({
                "register_frame_info": u.register_frame_info,
                "deregister_frame_info": u.deregister_frame_info,
            })),
        },
        "requires": m.requires.iter().map(|r| json!({"name": r.name, "id": r.id})).collect::<Vec<_>>(),
        "functions": m.functions.iter().map(|f| json!({
            "name": f.name,
            "action": action(f.action),
            "source": f.source,
            "reason": f.reason,
            "module_symbol": f.module_symbol,
            "old_offset": f.old_offset,
            "old_size": f.old_size,
            "old_sha256": f.old_sha256,
            "old_room": f.old_room,
            "entry": entry(f),
            "call_sites": f.call_sites,
            "new_size": f.new_size,
        })).collect::<Vec<_>>(),
        "data": m.data.iter().map(|d| json!({"name": d.name, "section": d.section, "size": d.size})).collect::<Vec<_>>(),
        "routines": m.routines.iter().map(|r| json!({"kind": kind(r.kind), "module_symbol": r.module_symbol})).collect::<Vec<_>>(),
        "payloads": m.payloads.iter().map(|p| json!({"name": p.name, "size": p.size, "sha256": p.sha256})).collect::<Vec<_>>(),
        "signatures": ids(&signers),
        "verified": verdict.is_ok(),
        "trusted_signers": verdict.as_ref().map(|k| ids(k)).unwrap_or_default(),
        "verification_error": verdict.as_ref().err().map(super::super::exit::one_line),
    })
}

fn print_text(package: &Package, verdict: &anyhow::Result<Vec<KeyId>>) {
    let m = package.manifest();
    println!("package      {} {}", m.package.name, m.package.version);
    println!("id           {}", package.id());
    match verdict {
        Ok(keys) => {
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            println!(
                "verified     yes, signed by trusted key {}",
                keys.join(", ")
            );
        }
        Err(err) => println!("verified     NO: {}", super::host::one_line(err)),
    }
    if !m.package.description.is_empty() {
        println!("description  {}", m.package.description);
    }
    println!("builder      {}", m.package.builder_version);
    println!("format       {}", m.format_version);
    println!("target       {} ({})", m.target.file_name, m.target.machine);
    println!("  build-id   {}", m.target.build_id);
    println!("  sha256     {}", m.target.sha256);
    if let Some(u) = m.target.unwinder {
        println!(
            "  unwinder   libgcc's, linked in: __register_frame_info at {:#x}, __deregister_frame_info at {:#x} (the new code's CFI is registered there)",
            u.register_frame_info, u.deregister_frame_info
        );
    }
    println!("requires     {}", m.requires.len());
    for r in &m.requires {
        println!("  {} {}", r.name, r.id);
    }
    println!("functions    {}", m.functions.len());
    for f in &m.functions {
        println!(
            "  {:<8} {}  [{}]  reason: {}",
            action(f.action),
            f.name,
            f.source.as_deref().unwrap_or("source unknown"),
            f.reason
        );
        if let (Some(offset), Some(size)) = (f.old_offset, f.old_size) {
            let room = match f.old_room {
                Some(room) if room > size => format!(" (+{} bytes of padding)", room - size),
                _ => String::new(),
            };
            println!(
                "           old: offset {offset:#x}, {size} bytes{room}, sha256 {}",
                f.old_sha256.as_deref().unwrap_or("-")
            );
            if let Some(how) = entry(f) {
                // A function may have thousands: the first few here, all in --json.
                const SHOWN: usize = 8;
                let mut sites: Vec<String> = (f.call_sites.iter().take(SHOWN))
                    .map(|o| format!("{o:#x}"))
                    .collect();
                if f.call_sites.len() > SHOWN {
                    sites.push(format!("and {} more", f.call_sites.len() - SHOWN));
                }
                let at = match sites.is_empty() {
                    true => String::new(),
                    false => format!(" (at {})", sites.join(", ")),
                };
                println!("           entry: {how}{at}, or the new code in place where it fits");
            }
        }
        println!(
            "           new: module symbol {}, {} bytes",
            f.module_symbol, f.new_size
        );
    }
    println!("data         {}", m.data.len());
    for d in &m.data {
        println!("  {} in {}, {} bytes", d.name, d.section, d.size);
    }
    println!("routines     {}", m.routines.len());
    for r in &m.routines {
        println!("  {} {}", kind(r.kind), r.module_symbol);
    }
    println!("payloads     {}", m.payloads.len());
    for p in &m.payloads {
        println!("  {:<14} {:>9} bytes  sha256 {}", p.name, p.size, p.sha256);
    }
    println!("signatures   {}", package.signatures().len());
    let trusted: &[KeyId] = verdict.as_ref().map(|k| k.as_slice()).unwrap_or(&[]);
    for s in package.signatures() {
        let status = if trusted.contains(&s.key_id) {
            "trusted, valid"
        } else {
            "not trusted"
        };
        println!("  {}  {status}", s.key_id);
    }
}

/// How calls of a replaced function will reach its new code unless the applier writes that in
/// place: `jump` at its entry, `jump in padding` for a function shorter than the jump (running
/// into the filler after it), `call sites rewritten: N` for one too short with no filler.
fn entry(f: &lpkg_format::Function) -> Option<String> {
    let size = f.old_size?;
    Some(if !f.call_sites.is_empty() {
        format!("call sites rewritten: {}", f.call_sites.len())
    } else if size < 5 {
        "jump in padding".into()
    } else {
        "jump".into()
    })
}

/// Old code on the left, new on the right, one instruction per row.
fn print_disasm(listings: &[lpkg_builder::disasm::FunctionListing]) {
    const WIDTH: usize = 56;
    for listing in listings {
        println!();
        println!("{}", listing.name);
        let old: Vec<String> = match (&listing.old, &listing.old_missing) {
            (Some(old), _) => old.clone(),
            (None, Some(why)) => vec![format!("({why})")],
            (None, None) => Vec::new(),
        };
        println!("  {:<WIDTH$} | new (patch module)", "old (target)");
        for row in 0..old.len().max(listing.new.len()) {
            let left = old.get(row).map(String::as_str).unwrap_or("");
            let right = listing.new.get(row).map(String::as_str).unwrap_or("");
            println!("  {left:<WIDTH$} | {right}");
        }
    }
}
