//! The one error type of this crate.

use std::path::PathBuf;

use crate::keys::KeyId;

/// Everything that can go wrong while reading, writing, signing or verifying a package, a key or
/// a trust store. Messages are single lines meant to be shown to a person as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The first 8 bytes are not the `.lpkg` magic: this is not a package at all.
    #[error("not an lpkg package (bad magic)")]
    BadMagic,
    /// The container (or the manifest's `format_version`) has a version this crate cannot read.
    #[error("unsupported format version {version}")]
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// The input ends before a field it announces; `at` is the input length.
    #[error("truncated at byte {at}")]
    Truncated {
        /// Offset at which more bytes were needed (the length of the input).
        at: usize,
    },
    /// Bytes follow the signature block.
    #[error("trailing bytes at byte {at}")]
    TrailingBytes {
        /// Offset of the first unexpected byte.
        at: usize,
    },
    /// A count or length is above the limit the format sets (checked before allocating).
    #[error("{what} {value} exceeds the limit of {limit} (at byte {at})")]
    LimitExceeded {
        /// Which count or length.
        what: &'static str,
        /// The value found.
        value: u64,
        /// The largest accepted value.
        limit: u64,
        /// Offset of the field in the input (0 when not reading a container).
        at: usize,
    },
    /// A payload name breaks the naming rules (it would be unsafe as a file name).
    #[error("invalid payload name {name:?} (at byte {at}): {reason}")]
    InvalidPayloadName {
        /// The name as found (lossily decoded).
        name: String,
        /// Why it is rejected.
        reason: &'static str,
        /// Offset of the name in the input (0 when not reading a container).
        at: usize,
    },
    /// Two payloads share a name.
    #[error("duplicate payload {name}")]
    DuplicatePayload {
        /// The repeated name.
        name: String,
    },
    /// Two signatures were made by the same key.
    #[error("duplicate signature by {key_id}")]
    DuplicateSignature {
        /// The signer.
        key_id: KeyId,
    },
    /// The manifest is not valid UTF-8 TOML matching the manifest schema.
    #[error("manifest: {reason}")]
    Manifest {
        /// Parser message, flattened to one line.
        reason: String,
    },
    /// A symbol map is not valid TOML matching its schema.
    #[error("symbol map: {reason}")]
    SymbolMap {
        /// Parser message, flattened to one line.
        reason: String,
    },
    /// The manifest's payload list and the container's payloads differ (names, order, count or sizes).
    #[error("payload list mismatch: {reason}")]
    PayloadListMismatch {
        /// What differs.
        reason: String,
    },
    /// A payload's SHA-256 is not the one the manifest records.
    #[error("payload {name}: digest mismatch")]
    DigestMismatch {
        /// The payload's name.
        name: String,
    },
    /// A payload the caller needs is not in the package.
    #[error("payload {name} is missing")]
    MissingPayload {
        /// The payload's name.
        name: String,
    },
    /// The package carries no signature at all.
    #[error("package is not signed")]
    Unsigned,
    /// None of the package's signers is in the trust store.
    #[error("unknown signer {}", join_ids(key_ids))]
    UnknownSigner {
        /// Key ids of every signature in the package.
        key_ids: Vec<KeyId>,
    },
    /// A signature by a trusted key does not verify: the signed bytes were changed.
    #[error("bad signature by {key_id}")]
    BadSignature {
        /// The signer.
        key_id: KeyId,
    },
    /// A package cannot hold more signatures.
    #[error("too many signatures (limit {limit})")]
    TooManySignatures {
        /// [`crate::MAX_SIGNATURES`].
        limit: usize,
    },
    /// A key file is malformed.
    #[error("{}: {reason}", path.display())]
    KeyFormat {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A key file already exists and overwriting was not requested.
    #[error("{} already exists (use --force to overwrite)", path.display())]
    KeyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// Two different trusted keys have the same key id.
    #[error("{}: key id {key_id} is used by two different keys", path.display())]
    KeyIdCollision {
        /// The trust store.
        path: PathBuf,
        /// The shared id.
        key_id: KeyId,
    },
    /// The trust store holds no `.pub` file.
    #[error("{}: no trusted keys (*.pub)", path.display())]
    NoTrustedKeys {
        /// The file or folder given as trust store.
        path: PathBuf,
    },
    /// No trust store was given and the default one does not exist.
    #[error("no trust store: pass --trust FILE|DIR, set LPKG_TRUST, or install keys in {}", path.display())]
    NoTrustStore {
        /// The default folder that was looked for.
        path: PathBuf,
    },
    /// A key file or trust folder others could read (a secret key) or write (what is trusted).
    #[error("{}: {reason}", path.display())]
    InsecureFile {
        /// The file or folder.
        path: PathBuf,
        /// Who has what access, and the fix.
        reason: String,
    },
    /// A file to read is not a regular file (a FIFO, a device, a directory).
    #[error("{}: not a regular file: not a {what}", path.display())]
    NotAFile {
        /// The path given.
        path: PathBuf,
        /// What it was to be.
        what: &'static str,
    },
    /// A file to read is larger than any file of its kind.
    #[error("{}: {size} bytes, larger than any {what} ({max} bytes at most)", path.display())]
    FileTooLarge {
        /// The path given.
        path: PathBuf,
        /// What it was to be.
        what: &'static str,
        /// Its size (or what was read of it).
        size: u64,
        /// The most a file of its kind has.
        max: u64,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// No package of the store has this id.
    #[error("no package with id {id} is installed in {}", store.display())]
    NotInstalled {
        /// The id (prefix) asked for.
        id: String,
        /// The store folder.
        store: PathBuf,
    },
    /// More than one stored package has an id starting with this prefix.
    #[error("id {id} is ambiguous: give more digits")]
    AmbiguousId {
        /// The prefix given.
        id: String,
    },
    /// A store file that does not bear its package's id as its name (not written by lpkg).
    #[error("{}: holds package {id}, not the one its name says", path.display())]
    MisnamedStoreFile {
        /// The file.
        path: PathBuf,
        /// The id of the package it holds.
        id: String,
    },
    /// The operating system's random generator failed.
    #[error("cannot get random bytes: {reason}")]
    Random {
        /// The generator's message.
        reason: String,
    },
}

impl Error {
    /// True when the error means the package itself must be refused (corrupt, tampered, unsigned
    /// or signed by nobody trusted), as opposed to an operational problem (I/O, keys, trust store).
    pub fn is_rejection(&self) -> bool {
        !matches!(
            self,
            Error::KeyFormat { .. }
                | Error::KeyExists { .. }
                | Error::KeyIdCollision { .. }
                | Error::NoTrustedKeys { .. }
                | Error::NoTrustStore { .. }
                | Error::Io { .. }
                | Error::NotAFile { .. }
                | Error::InsecureFile { .. }
                | Error::FileTooLarge { .. }
                | Error::Random { .. }
                | Error::TooManySignatures { .. }
                | Error::NotInstalled { .. }
                | Error::AmbiguousId { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

fn join_ids(ids: &[KeyId]) -> String {
    ids.iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Collapses a parser message (which may span several lines with a source excerpt) into one line.
pub(crate) fn one_line(message: impl std::fmt::Display) -> String {
    message
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
