//! The `.lpkg` package format: container, manifest, digests, signatures and trust.
//!
//! The byte layout and every rule are specified in `spec/lpkg-format.md`. Readers check limits
//! before allocating, and [`open_verified`] checks signatures over the raw signed bytes before
//! the manifest they cover is parsed.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod container;
pub mod digest;
mod error;
mod file;
pub mod keys;
pub mod manifest;
mod package;
pub mod store;
pub mod trust;

pub use container::{Signature, MAX_SIGNATURES};
pub use digest::sha256_hex;
pub use error::Error;
pub use file::{read_package_file, MAX_PACKAGE_LEN};
pub use keys::{KeyId, PublicKey, SecretKey};
pub use manifest::*;
pub use package::{open_verified, Package};
pub use store::{Skipped, Store, Stored};
pub use trust::TrustStore;
