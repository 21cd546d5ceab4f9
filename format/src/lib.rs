//! The `.lpkg` package format: container, manifest, digests, signatures and trust.
pub mod manifest;
pub use manifest::*;
