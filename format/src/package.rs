//! A package in memory: manifest, payloads, signatures; reading, writing, signing, verifying.

use crate::container::{self, Signature, MAX_SIGNATURES};
use crate::digest::{sha256_hex, to_hex};
use crate::error::Error;
use crate::keys::{KeyId, SecretKey};
use crate::manifest::{Manifest, Payload, SymbolMap, MODULE_PAYLOAD, SYMBOLS_PAYLOAD};
use crate::trust::TrustStore;

/// A structurally valid package whose payloads match the manifest's digests. Whether its
/// signatures are trusted is a separate question: see [`Package::verify`] and [`open_verified`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    payloads: Vec<(String, Vec<u8>)>,
    signatures: Vec<Signature>,
}

impl Package {
    /// Fills `manifest.payloads` with name/size/sha256 of each payload (in the given order) and
    /// encodes the manifest canonically. The package has no signature yet.
    pub fn new(mut manifest: Manifest, payloads: Vec<(String, Vec<u8>)>) -> Result<Package, Error> {
        if payloads.len() > container::MAX_PAYLOADS as usize {
            return Err(Error::LimitExceeded {
                what: "payload count",
                value: payloads.len() as u64,
                limit: container::MAX_PAYLOADS.into(),
                at: 0,
            });
        }
        for (i, (name, bytes)) in payloads.iter().enumerate() {
            container::check_payload(name, bytes)?;
            if payloads[..i].iter().any(|(other, _)| other == name) {
                return Err(Error::DuplicatePayload { name: name.clone() });
            }
        }
        manifest.format_version = manifest.needed_version();
        manifest.payloads = payloads
            .iter()
            .map(|(name, bytes)| Payload {
                name: name.clone(),
                size: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            })
            .collect();
        manifest.validate()?;
        let manifest_bytes = manifest.to_toml()?.into_bytes();
        if manifest_bytes.len() > container::MAX_MANIFEST_LEN as usize {
            return Err(Error::LimitExceeded {
                what: "manifest length",
                value: manifest_bytes.len() as u64,
                limit: container::MAX_MANIFEST_LEN.into(),
                at: 0,
            });
        }
        // Room for every signature: a package no reader reads (over the file limit) is never
        // written.
        let signed = container::encode(&manifest_bytes, &payloads, &[]).len()
            + container::MAX_SIGNATURES as usize * container::SIGNATURE_ENTRY_LEN;
        if signed as u64 > crate::MAX_PACKAGE_LEN {
            return Err(Error::LimitExceeded {
                what: "package length with its signatures",
                value: signed as u64,
                limit: crate::MAX_PACKAGE_LEN,
                at: 0,
            });
        }
        Ok(Package {
            manifest,
            manifest_bytes,
            payloads,
            signatures: Vec::new(),
        })
    }

    /// Adds a signature by `key`, keeping the existing ones. Signing again with a key that already
    /// signed replaces its signature (Ed25519 is deterministic, so it is the same bytes).
    pub fn sign(&mut self, key: &SecretKey) -> Result<(), Error> {
        let signature = Signature {
            key_id: key.public().key_id(),
            bytes: key.sign(&container::signed_message(&self.manifest_bytes)),
        };
        let full = self.signatures.len() >= MAX_SIGNATURES as usize;
        match self
            .signatures
            .iter_mut()
            .find(|s| s.key_id == signature.key_id)
        {
            Some(existing) => *existing = signature,
            None if full => {
                return Err(Error::TooManySignatures {
                    limit: MAX_SIGNATURES as usize,
                })
            }
            None => self.signatures.push(signature),
        }
        Ok(())
    }

    /// The package file's bytes. Same package, same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        container::encode(&self.manifest_bytes, &self.payloads, &self.signatures)
    }

    /// Reads a package: structure, limits, manifest and payload digests. Signatures are NOT
    /// checked; call [`Package::verify`], or use [`open_verified`] which checks them before
    /// parsing the manifest.
    pub fn from_bytes(bytes: &[u8]) -> Result<Package, Error> {
        let raw = container::decode(bytes)?;
        Package::from_raw(raw)
    }

    /// Checks the signatures against `trust`. Returns the ids of the trusted keys whose
    /// signatures are valid (at least one). A trusted key with an invalid signature is an error
    /// even if another trusted signature is valid; signatures by unknown keys are ignored when a
    /// trusted one is valid.
    pub fn verify(&self, trust: &TrustStore) -> Result<Vec<KeyId>, Error> {
        verify_signatures(&self.manifest_bytes, &self.signatures, trust)
    }

    /// The parsed manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest exactly as stored (and signed).
    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest_bytes
    }

    /// The payload named `name`.
    pub fn payload(&self, name: &str) -> Option<&[u8]> {
        self.payloads
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// Every payload, in container order, as (name, bytes).
    pub fn payloads(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.payloads
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
    }

    /// The patch module (`module.o`), an ELF relocatable object.
    pub fn module(&self) -> Result<&[u8], Error> {
        self.payload(MODULE_PAYLOAD)
            .ok_or_else(|| Error::MissingPayload {
                name: MODULE_PAYLOAD.into(),
            })
    }

    /// The parsed symbol map (`symbols.toml`).
    pub fn symbol_map(&self) -> Result<SymbolMap, Error> {
        let bytes = self
            .payload(SYMBOLS_PAYLOAD)
            .ok_or_else(|| Error::MissingPayload {
                name: SYMBOLS_PAYLOAD.into(),
            })?;
        let text = std::str::from_utf8(bytes).map_err(|_| Error::SymbolMap {
            reason: "not UTF-8".into(),
        })?;
        SymbolMap::from_toml(text)
    }

    /// The signatures, in container order.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// The package id: lower-case hex SHA-256 of the manifest bytes. Signatures do not change it.
    pub fn id(&self) -> String {
        sha256_hex(&self.manifest_bytes)
    }

    fn from_raw(raw: container::RawPackage<'_>) -> Result<Package, Error> {
        let text = std::str::from_utf8(raw.manifest).map_err(|_| Error::Manifest {
            reason: "not UTF-8".into(),
        })?;
        let manifest = Manifest::from_toml(text)?;
        manifest.validate()?;
        check_payloads(&manifest.payloads, &raw.payloads)?;
        Ok(Package {
            manifest,
            manifest_bytes: raw.manifest.to_vec(),
            payloads: raw
                .payloads
                .iter()
                .map(|(n, b)| (n.to_string(), b.to_vec()))
                .collect(),
            signatures: raw.signatures,
        })
    }
}

/// Reads a package the way the applier must: split the container, check the signatures over
/// the raw signed bytes, and only then parse the manifest and check the payload digests.
/// Returns the package and the ids of the trusted keys that signed it.
pub fn open_verified(bytes: &[u8], trust: &TrustStore) -> Result<(Package, Vec<KeyId>), Error> {
    let raw = container::decode(bytes)?;
    let signers = verify_signatures(raw.manifest, &raw.signatures, trust)?;
    Ok((Package::from_raw(raw)?, signers))
}

fn verify_signatures(
    manifest: &[u8],
    signatures: &[Signature],
    trust: &TrustStore,
) -> Result<Vec<KeyId>, Error> {
    if signatures.is_empty() {
        return Err(Error::Unsigned);
    }
    let message = container::signed_message(manifest);
    let mut trusted = Vec::new();
    for signature in signatures {
        if let Some(key) = trust.get(&signature.key_id) {
            if !key.verifies(&message, &signature.bytes) {
                return Err(Error::BadSignature {
                    key_id: signature.key_id,
                });
            }
            trusted.push(signature.key_id);
        }
    }
    if trusted.is_empty() {
        return Err(Error::UnknownSigner {
            key_ids: signatures.iter().map(|s| s.key_id).collect(),
        });
    }
    Ok(trusted)
}

/// The container's payloads must be exactly the manifest's list: same names, order and sizes,
/// and the recorded digests.
fn check_payloads(listed: &[Payload], found: &[(&str, &[u8])]) -> Result<(), Error> {
    if listed.len() != found.len() {
        return Err(Error::PayloadListMismatch {
            reason: format!(
                "manifest lists {} payloads, container holds {}",
                listed.len(),
                found.len()
            ),
        });
    }
    for (i, (entry, (name, bytes))) in listed.iter().zip(found).enumerate() {
        if entry.name != *name {
            return Err(Error::PayloadListMismatch {
                reason: format!(
                    "payload {i} is {name} in the container but {} in the manifest",
                    entry.name
                ),
            });
        }
        if entry.size != bytes.len() as u64 {
            return Err(Error::PayloadListMismatch {
                reason: format!(
                    "payload {name} has {} bytes but the manifest says {}",
                    bytes.len(),
                    entry.size
                ),
            });
        }
        if entry.sha256 != sha256_hex(bytes) {
            return Err(Error::DigestMismatch {
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

impl Signature {
    /// The signature bytes as lower-case hex.
    pub fn to_hex(&self) -> String {
        to_hex(&self.bytes)
    }
}
