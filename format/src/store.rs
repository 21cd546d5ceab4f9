//! The install store: verified packages kept on the host, so that `lpkg status` knows what
//! every process should have and `lpkg daemon` applies them to processes as they start.
//!
//! One file per package, `<package id>.lpkg`, in a folder only its owner may write
//! (`--store`, else `$LPKG_STORE`, else `/var/lib/lpkg`). A package is verified before it is
//! stored, and again whenever it is read: the store is a cache of signed packages, never
//! trusted for what it holds.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::file::read_package_file;
use crate::keys::KeyId;
use crate::package::{open_verified, Package};
use crate::trust::TrustStore;

/// Environment variable naming the store when no `--store` is given.
pub const STORE_ENV: &str = "LPKG_STORE";
/// The store used when neither `--store` nor [`STORE_ENV`] is given.
pub const DEFAULT_STORE_DIR: &str = "/var/lib/lpkg";

/// The extension of package files in the store.
const EXTENSION: &str = "lpkg";

/// A store folder.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// A package read back from the store, verified.
#[derive(Debug)]
pub struct Stored {
    /// Its file.
    pub path: PathBuf,
    /// The package.
    pub package: Package,
    /// Its trusted signers.
    pub signers: Vec<KeyId>,
    /// The file's bytes, as verified.
    pub bytes: Vec<u8>,
}

/// A file of the store that is not a package the trust store accepts.
#[derive(Debug)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped.
    pub error: Error,
}

impl Store {
    /// The store a command uses: `flag` (the `--store` value) when given, else `$LPKG_STORE`
    /// when set and not empty, else `/var/lib/lpkg`. Nothing is created.
    pub fn resolve(flag: Option<&Path>) -> Store {
        let dir = match flag {
            Some(dir) => dir.to_path_buf(),
            None => std::env::var_os(STORE_ENV)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_STORE_DIR), PathBuf::from),
        };
        Store { dir }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Verifies `bytes` against `trust` and stores them (a package already stored is left as
    /// it is). Returns the package and whether it was new. A package that does not verify is
    /// never stored.
    pub fn install(&self, bytes: &[u8], trust: &TrustStore) -> Result<(Package, bool), Error> {
        let (package, _) = open_verified(bytes, trust)?;
        self.create_dir()?;
        let path = self.path_of(&package.id());
        if path.exists() {
            return Ok((package, false));
        }
        // Written whole under a temporary name, then renamed: a reader sees all or nothing.
        let temporary = self.dir.join(format!(".{}.tmp", package.id()));
        let written = (|| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(Error::io(&path, e));
        }
        Ok((package, true))
    }

    /// Removes the stored package whose id starts with `prefix` (unique); returns its id.
    pub fn uninstall(&self, prefix: &str) -> Result<String, Error> {
        let matching: Vec<PathBuf> = self
            .files()?
            .into_iter()
            .filter(|path| {
                // An empty prefix names no package (every id starts with it).
                !prefix.is_empty() && id_of(path).is_some_and(|id| id.starts_with(prefix))
            })
            .collect();
        match matching.as_slice() {
            [path] => {
                std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
                Ok(id_of(path).unwrap_or_default().to_owned())
            }
            [] => Err(Error::NotInstalled {
                id: prefix.to_owned(),
                store: self.dir.clone(),
            }),
            _ => Err(Error::AmbiguousId {
                id: prefix.to_owned(),
            }),
        }
    }

    /// Every package of the store that `trust` verifies, by file name, and every file that is
    /// not one (corrupt, foreign, untrusted, or not named by its package's id).
    pub fn packages(&self, trust: &TrustStore) -> Result<(Vec<Stored>, Vec<Skipped>), Error> {
        let mut stored = Vec::new();
        let mut skipped = Vec::new();
        for path in self.files()? {
            match read_stored(&path, trust) {
                Ok(package) => stored.push(package),
                Err(error) => skipped.push(Skipped { path, error }),
            }
        }
        Ok((stored, skipped))
    }

    /// The package files of the store, sorted (none when the store does not exist).
    fn files(&self) -> Result<Vec<PathBuf>, Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        self.check_dir()?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|e| e == EXTENSION))
            .collect();
        files.sort();
        Ok(files)
    }

    fn path_of(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{EXTENSION}"))
    }

    fn create_dir(&self) -> Result<(), Error> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        self.check_dir()
    }

    /// Refuses a store others may write: what is stored there is applied to processes.
    fn check_dir(&self) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(Error::InsecureFile {
                path: self.dir.clone(),
                reason: format!(
                    "package store writable by others (mode {mode:04o}): chmod go-w it"
                ),
            });
        }
        Ok(())
    }
}

/// The package id a store file is named by.
fn id_of(path: &Path) -> Option<&str> {
    path.file_stem()?.to_str()
}

fn read_stored(path: &Path, trust: &TrustStore) -> Result<Stored, Error> {
    let bytes = read_package_file(path)?;
    let (package, signers) = open_verified(&bytes, trust)?;
    if id_of(path) != Some(package.id().as_str()) {
        return Err(Error::MisnamedStoreFile {
            path: path.to_path_buf(),
            id: package.id(),
        });
    }
    Ok(Stored {
        path: path.to_path_buf(),
        package,
        signers,
        bytes,
    })
}
