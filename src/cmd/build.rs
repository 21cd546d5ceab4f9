//! `lpkg build --target BIN --old OLD --new NEW --key KEY -o OUT [--name N] [--version V] [--description D] [--requires PKG]... [--debug-file FILE] [--debug-dir DIR]`

use std::path::{Path, PathBuf};

use anyhow::Context;
use lpkg_builder::{BuildOptions, DebugOptions, Required};
use lpkg_format::{Action, Package, SecretKey};

/// Arguments of `lpkg build`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The executable or shared library running in the field (as installed).
    #[arg(long, value_name = "BIN")]
    pub target: PathBuf,
    /// The object file the target was built from, or a folder of them.
    #[arg(long, value_name = "OLD")]
    pub old: PathBuf,
    /// The same object file built from the fixed source, or a folder paired by relative path.
    #[arg(long, value_name = "NEW")]
    pub new: PathBuf,
    #[command(flatten)]
    pub package: PackageArgs,
    #[command(flatten)]
    pub debug: DebugArgs,
    /// A package this one stacks on (built from objects that already carry its fix); the new
    /// package requires it to be applied first. Repeat for several.
    #[arg(long, value_name = "PKG")]
    pub requires: Vec<PathBuf>,
}

/// Where a stripped target's symbols and DWARF come from (`lpkg build` and `build-source`).
#[derive(clap::Args, Debug, Clone)]
pub struct DebugArgs {
    /// The target's separate debug file (e.g. from its -dbgsym package); it must carry the
    /// target's build-id. Without it a stripped target's debug file is looked up by build-id
    /// and .gnu_debuglink, as gdb does.
    #[arg(long, value_name = "FILE")]
    pub debug_file: Option<PathBuf>,
    /// The debug directory to look the debug file up in (gdb's debug-file-directory).
    #[arg(long, value_name = "DIR", default_value = lpkg_builder::DEFAULT_DEBUG_DIR)]
    pub debug_dir: PathBuf,
}

impl DebugArgs {
    fn options(&self) -> DebugOptions {
        DebugOptions {
            file: self.debug_file.clone(),
            dir: Some(self.debug_dir.clone()),
        }
    }
}

/// What `lpkg build` and `lpkg build-source` both ask about the package they write.
#[derive(clap::Args, Debug, Clone)]
pub struct PackageArgs {
    /// Secret key to sign the package with.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Where to write the package.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
    /// Package name [default: derived from the target].
    #[arg(long, value_name = "N", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub name: Option<String>,
    /// Package version [default: 1].
    #[arg(long, value_name = "V", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub version: Option<String>,
    /// Description for auditors.
    #[arg(long, value_name = "D")]
    pub description: Option<String>,
    /// Also patch functions whose only change is a line number they pass on (`__LINE__`).
    #[arg(long)]
    pub allow_line_changes: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let package_args = &args.package;
    let key = SecretKey::read(&package_args.key)
        .with_context(|| format!("reading key {}", package_args.key.display()))?;
    let options = BuildOptions {
        target: args.target.clone(),
        old: args.old.clone(),
        new: args.new.clone(),
        name: package_args
            .name
            .clone()
            .unwrap_or_else(|| default_name(&args.target)),
        version: package_args
            .version
            .clone()
            .unwrap_or_else(|| "1".to_owned()),
        description: package_args.description.clone().unwrap_or_default(),
        allow_line_changes: package_args.allow_line_changes,
        requires: args
            .requires
            .iter()
            .map(|p| required(p))
            .collect::<anyhow::Result<_>>()?,
        debug: args.debug.options(),
    };
    let built = lpkg_builder::build(&options)?;
    // A signed package that changes nothing would pass a release pipeline as a fix.
    if built.manifest.functions.is_empty() {
        anyhow::bail!(
            "no function differs between {} and {}: a package would change nothing; none was written",
            args.old.display(),
            args.new.display()
        );
    }
    for note in &built.notes {
        eprintln!("note: {note}");
    }
    let mut package = Package::new(built.manifest, built.payloads)?;
    package.sign(&key)?;
    write_new(&package_args.output, &package.to_bytes())?;
    let manifest = package.manifest();
    let count = |action| {
        manifest
            .functions
            .iter()
            .filter(|f| f.action == action)
            .count()
    };
    println!(
        "built {} {} (id {}): {} replaced, {} new function(s), {} bytes -> {}",
        manifest.package.name,
        manifest.package.version,
        &package.id()[..16],
        count(Action::Replace),
        count(Action::New),
        package.to_bytes().len(),
        package_args.output.display()
    );
    for function in &manifest.functions {
        println!(
            "  {:?} {} ({})",
            function.action, function.name, function.reason
        );
    }
    Ok(())
}

/// What a package this one stacks on replaces, read from its manifest.
fn required(path: &Path) -> anyhow::Result<Required> {
    let bytes = super::read_package_file(path)?;
    let package = Package::from_bytes(&bytes).with_context(|| path.display().to_string())?;
    Ok(Required {
        name: package.manifest().package.name.clone(),
        id: package.id(),
        replaced: package
            .manifest()
            .functions
            .iter()
            .filter(|f| f.action == Action::Replace)
            .map(|f| f.name.clone())
            .collect(),
    })
}

fn default_name(target: &Path) -> String {
    let file = target
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{file}-fix")
}

/// Writes the package through a temporary file, so a refused or failed build leaves no package.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("lpkg.partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
