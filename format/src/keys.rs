//! Ed25519 keys, key ids and their text files.
//!
//! Files are one line each: `lpkg-secret-key-v1 <key id> <seed>` and
//! `lpkg-public-key-v1 <key id> <public key>`, all values lower-case hex. Blank lines and lines
//! starting with `#` are ignored when reading, so a trusted key can carry a comment.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::digest::{from_hex, sha256, to_hex};
use crate::error::Error;

const SECRET_TAG: &str = "lpkg-secret-key-v1";
const PUBLIC_TAG: &str = "lpkg-public-key-v1";

/// Identifies a public key: the first 8 bytes of the SHA-256 of its 32 raw bytes. Shown as
/// 16 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_hex(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = ();
    /// Parses 16 lower-case hex digits.
    fn from_str(s: &str) -> Result<KeyId, ()> {
        from_hex::<8>(s).map(KeyId).ok_or(())
    }
}

/// A secret signing key.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from the operating system's random generator.
    pub fn generate() -> Result<SecretKey, Error> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| Error::Random {
            reason: e.to_string(),
        })?;
        Ok(SecretKey::from_seed(seed))
    }

    /// The key whose 32-byte Ed25519 seed is `seed` (used by test vectors).
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Reads a secret key file, which only its owner may read (as ssh requires of its keys).
    pub fn read(path: &Path) -> Result<SecretKey, Error> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let mode = meta.permissions().mode() & 0o7777;
        // Read first: a public key given for the secret one is said so, not taken for an
        // exposed secret.
        let (key_id, value) = read_key_line(path, SECRET_TAG)?;
        if mode & 0o077 != 0 {
            return Err(Error::InsecureFile {
                path: path.to_path_buf(),
                reason: format!(
                    "secret key readable or writable by others (mode {mode:04o}): chmod 600 it"
                ),
            });
        }
        let seed = from_hex::<32>(&value).ok_or_else(|| bad(path, "key is not 64 hex digits"))?;
        let key = SecretKey::from_seed(seed);
        check_key_id(path, key_id, &key.public())?;
        Ok(key)
    }

    /// Writes the key to `path` with mode 0600. An existing file is an error unless `force`;
    /// the file is always created anew (`O_EXCL`), never opened for rewriting.
    pub fn write(&self, path: &Path, force: bool) -> Result<(), Error> {
        let line = format!(
            "{SECRET_TAG} {} {}\n",
            self.public().key_id(),
            to_hex(self.0.as_bytes())
        );
        write_new(path, line.as_bytes(), 0o600, force)
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public().key_id())
    }
}

/// A public key that checks signatures.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads a public key file, which no other user may write.
    pub fn read(path: &Path) -> Result<PublicKey, Error> {
        let (key_id, value) = read_key_line(path, PUBLIC_TAG)?;
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        crate::file::check_not_world_writable(path, &meta)?;
        let raw = from_hex::<32>(&value).ok_or_else(|| bad(path, "key is not 64 hex digits"))?;
        let key = VerifyingKey::from_bytes(&raw)
            .map_err(|_| bad(path, "not a valid Ed25519 public key"))?;
        let key = PublicKey(key);
        check_key_id(path, key_id, &key)?;
        Ok(key)
    }

    /// Writes the key to `path` (mode 0644); an existing file is an error unless `force`.
    pub fn write(&self, path: &Path, force: bool) -> Result<(), Error> {
        let line = format!(
            "{PUBLIC_TAG} {} {}\n",
            self.key_id(),
            to_hex(self.as_bytes())
        );
        write_new(path, line.as_bytes(), 0o644, force)
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        let digest = sha256(self.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }

    /// The 32 raw bytes of the key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Strict Ed25519 verification (rejects non-canonical and small-order encodings).
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(message, &signature).is_ok()
    }
}

fn bad(path: &Path, reason: &str) -> Error {
    Error::KeyFormat {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Key files are tiny; anything bigger is not a key file and is not read in full.
const MAX_KEY_FILE: u64 = 4096;

/// What is said of a secret key given where a public one is wanted, and the other way round.
const WRONG_KIND: [&str; 2] = [
    "this is a secret key (.key): a public key (.pub) is wanted here, and the secret key is to stay with whoever signs",
    "this is a public key (.pub): the secret key (.key) from `lpkg keygen` is wanted here",
];

/// Returns the key id and the key value of the single key line of `path`.
fn read_key_line(path: &Path, tag: &str) -> Result<(KeyId, String), Error> {
    let bytes = crate::file::read_bounded(path, MAX_KEY_FILE, "key file")?;
    let text = String::from_utf8(bytes).map_err(|_| bad(path, "key file is not UTF-8"))?;
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let line = lines
        .next()
        .ok_or_else(|| bad(path, &format!("no `{tag}` line")))?;
    if lines.next().is_some() {
        return Err(bad(path, "more than one key line"));
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    if let Some(i) = [SECRET_TAG, PUBLIC_TAG]
        .iter()
        .position(|t| fields[0] == *t && *t != tag)
    {
        return Err(bad(path, WRONG_KIND[i]));
    }
    if fields.len() != 3 || fields[0] != tag {
        return Err(bad(path, &format!("expected `{tag} <key id> <key>`")));
    }
    let key_id = fields[1]
        .parse()
        .map_err(|_| bad(path, "key id is not 16 hex digits"))?;
    Ok((key_id, fields[2].to_owned()))
}

fn check_key_id(path: &Path, stated: KeyId, key: &PublicKey) -> Result<(), Error> {
    if stated == key.key_id() {
        Ok(())
    } else {
        Err(bad(
            path,
            &format!("key id {stated} does not match the key ({})", key.key_id()),
        ))
    }
}

fn write_new(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<(), Error> {
    if force {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::KeyExists {
                path: path.to_owned(),
            },
            _ => Error::io(path, e),
        })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(path, e))
}
