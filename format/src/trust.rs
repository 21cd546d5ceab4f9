//! The set of public keys whose signatures are accepted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::keys::{KeyId, PublicKey};

/// Environment variable naming the trust store when no `--trust` is given.
pub const TRUST_ENV: &str = "LPKG_TRUST";
/// The trust store used when neither `--trust` nor [`TRUST_ENV`] is given.
pub const DEFAULT_TRUST_DIR: &str = "/etc/lpkg/trusted/";

/// Trusted public keys, by key id. Never empty.
#[derive(Debug, Clone)]
pub struct TrustStore {
    keys: BTreeMap<KeyId, PublicKey>,
}

impl TrustStore {
    /// Reads a trust store: one `.pub` file, or every `*.pub` file directly inside a folder
    /// (other files are ignored, sub-folders are not searched).
    pub fn from_path(path: &Path) -> Result<TrustStore, Error> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let files = if meta.is_dir() {
            crate::file::check_not_world_writable(path, &meta)?;
            let mut files = Vec::new();
            for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
                let file = entry.map_err(|e| Error::io(path, e))?.path();
                if file.extension().is_some_and(|ext| ext == "pub") && file.is_file() {
                    files.push(file);
                }
            }
            files.sort();
            files
        } else {
            vec![path.to_owned()]
        };
        let mut keys = Vec::new();
        for file in &files {
            keys.push(PublicKey::read(file)?);
        }
        TrustStore::from_keys_at(path, keys)
    }

    /// A trust store holding exactly `keys` (at least one).
    pub fn from_keys(keys: impl IntoIterator<Item = PublicKey>) -> Result<TrustStore, Error> {
        TrustStore::from_keys_at(Path::new("<keys>"), keys)
    }

    /// The trust store a command uses: `flag` (the `--trust` value) when given, else
    /// `$LPKG_TRUST` when set and not empty, else `/etc/lpkg/trusted/`.
    pub fn resolve(flag: Option<&Path>) -> Result<TrustStore, Error> {
        if let Some(path) = flag {
            return TrustStore::from_path(path);
        }
        if let Some(env) = std::env::var_os(TRUST_ENV).filter(|v| !v.is_empty()) {
            return TrustStore::from_path(Path::new(&env));
        }
        let default = PathBuf::from(DEFAULT_TRUST_DIR);
        if !default.exists() {
            return Err(Error::NoTrustStore { path: default });
        }
        TrustStore::from_path(&default)
    }

    /// The trusted key with id `key_id`.
    pub fn get(&self, key_id: &KeyId) -> Option<&PublicKey> {
        self.keys.get(key_id)
    }

    /// Every trusted key, ordered by key id.
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }

    fn from_keys_at(
        path: &Path,
        keys: impl IntoIterator<Item = PublicKey>,
    ) -> Result<TrustStore, Error> {
        let mut map = BTreeMap::new();
        for key in keys {
            if let Some(other) = map.insert(key.key_id(), key) {
                if other != key {
                    return Err(Error::KeyIdCollision {
                        path: path.to_owned(),
                        key_id: key.key_id(),
                    });
                }
            }
        }
        if map.is_empty() {
            return Err(Error::NoTrustedKeys {
                path: path.to_owned(),
            });
        }
        Ok(TrustStore { keys: map })
    }
}
