//! One file per command.

pub mod apply;
pub mod build;
pub mod build_source;
pub mod daemon;
pub mod extract;
pub mod host;
pub mod inspect;
pub mod install;
pub mod installed;
pub mod keygen;
pub mod list;
pub mod revert;
pub mod sign;
pub mod status;
pub mod uninstall;
pub mod verify;

use std::path::{Path, PathBuf};

/// Where the installed packages are, and who may sign them: `install`, `installed`, `status`
/// and `daemon` take both.
#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    /// Trusted public key (.pub) or folder of them [default: $LPKG_TRUST, then /etc/lpkg/trusted/].
    #[arg(long, value_name = "FILE|DIR")]
    pub trust: Option<PathBuf>,
    /// The package store [default: $LPKG_STORE, then /var/lib/lpkg].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
}

impl StoreArgs {
    /// The trust store and the package store they name.
    pub fn resolve(&self) -> anyhow::Result<(lpkg_format::TrustStore, lpkg_format::Store)> {
        Ok((
            lpkg_format::TrustStore::resolve(self.trust.as_deref())?,
            lpkg_format::Store::resolve(self.store.as_deref()),
        ))
    }
}

/// Reads a whole package file.
pub fn read_package_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    lpkg_format::read_package_file(path).map_err(|error| match error {
        lpkg_format::Error::Io { source, .. } => {
            anyhow::Error::new(source).context(format!("reading {}", path.display()))
        }
        other => other.into(),
    })
}

/// Text that comes from a target process (record fields, mapping names) or from a package,
/// fit to print on a terminal: control characters (newlines, escape sequences, bidirectional
/// overrides) are shown escaped.
pub fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if lpkg_format::is_terminal_control(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The first 16 characters of a package id as the target holds it (not necessarily hex, not
/// necessarily 16 characters long), shown.
pub fn short_id(id: &str) -> String {
    shown(&id.chars().take(16).collect::<String>())
}

/// Parses a package id given on the command line, or a prefix of one: hex digits, at least
/// one (an empty prefix would match every package), at most 64.
pub fn parse_id(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{:?} is not a package id: 1 to 64 hex digits (a prefix of the id `lpkg inspect` shows)",
            shown(text)
        ));
    }
    Ok(text.to_ascii_lowercase())
}

/// `YYYY-MM-DD HH:MM:SS` in UTC for seconds since the Unix epoch.
pub fn utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rem = seconds % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
