//! The byte layout of a `.lpkg` file (specified in `spec/lpkg-format.md`).
//!
//! ```text
//! magic "\x89LPKG\r\n\x1a" | u32 version | u32 manifest length | manifest
//! | u32 payload count | { u16 name length | name | u64 size | bytes } *
//! | u32 signature count | { 8-byte key id | 64-byte Ed25519 signature } *
//! ```
//! Integers are little-endian. The signed message is [`SIGNATURE_DOMAIN`] followed by the bytes
//! from the magic to the end of the manifest.

use crate::error::Error;
use crate::keys::KeyId;

/// First 8 bytes of every package. The non-ASCII first byte and the CR LF catch transfers that
/// mangle binary files, as in PNG.
pub const MAGIC: [u8; 8] = *b"\x89LPKG\r\n\x1a";
/// The container version this crate writes and reads: the layout's, which manifest format
/// version 2 did not change.
pub const CONTAINER_VERSION: u32 = 1;
/// Prefix of every signed message, so an lpkg signature can never be valid for anything else.
pub const SIGNATURE_DOMAIN: &[u8] = b"lpkg signature v1\0";

/// Largest manifest, in bytes.
pub const MAX_MANIFEST_LEN: u32 = 1 << 20;
/// Most payloads in one package.
pub const MAX_PAYLOADS: u32 = 16;
/// Longest payload name, in bytes.
pub const MAX_PAYLOAD_NAME_LEN: u16 = 64;
/// Largest payload, in bytes.
pub const MAX_PAYLOAD_SIZE: u64 = 256 << 20;
/// Most signatures in one package.
pub const MAX_SIGNATURES: u32 = 16;
/// Size of one entry of the signature block.
pub const SIGNATURE_ENTRY_LEN: usize = 8 + 64;
/// Name `lpkg extract` gives the manifest, hence not allowed as a payload name.
pub const MANIFEST_FILE_NAME: &str = "manifest.toml";

/// One signature of a package.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Signature {
    /// Id of the key that made it.
    pub key_id: KeyId,
    /// The 64-byte Ed25519 signature of the signed message.
    pub bytes: [u8; 64],
}

/// A container split into its parts, nothing interpreted yet.
pub(crate) struct RawPackage<'a> {
    pub manifest: &'a [u8],
    pub payloads: Vec<(&'a str, &'a [u8])>,
    pub signatures: Vec<Signature>,
}

/// The message a signature covers: domain, header and manifest.
pub(crate) fn signed_message(manifest: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 16 + manifest.len());
    message.extend_from_slice(SIGNATURE_DOMAIN);
    write_header(&mut message, manifest);
    message
}

fn write_header(out: &mut Vec<u8>, manifest: &[u8]) {
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&CONTAINER_VERSION.to_le_bytes());
    out.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    out.extend_from_slice(manifest);
}

/// Encodes the parts of a package as they are, in the given order. This is the low-level layout
/// only: nothing is checked (use [`crate::Package`] to build valid packages).
pub fn encode(
    manifest: &[u8],
    payloads: &[(String, Vec<u8>)],
    signatures: &[Signature],
) -> Vec<u8> {
    let size = 16
        + manifest.len()
        + 4
        + payloads
            .iter()
            .map(|(n, b)| 2 + n.len() + 8 + b.len())
            .sum::<usize>()
        + 4
        + signatures.len() * SIGNATURE_ENTRY_LEN;
    let mut out = Vec::with_capacity(size);
    write_header(&mut out, manifest);
    out.extend_from_slice(&(payloads.len() as u32).to_le_bytes());
    for (name, bytes) in payloads {
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(&(signatures.len() as u32).to_le_bytes());
    for signature in signatures {
        out.extend_from_slice(&signature.key_id.0);
        out.extend_from_slice(&signature.bytes);
    }
    out
}

/// Splits `bytes` into its parts, checking every count and length against its limit and
/// against the bytes left before using it.
pub(crate) fn decode(bytes: &[u8]) -> Result<RawPackage<'_>, Error> {
    let prefix = bytes.len().min(MAGIC.len());
    if bytes[..prefix] != MAGIC[..prefix] {
        return Err(Error::BadMagic);
    }
    let mut r = Reader { bytes, pos: 0 };
    r.take(MAGIC.len())?;
    let version = r.u32()?;
    if version != CONTAINER_VERSION {
        return Err(Error::UnsupportedVersion { version });
    }
    let at = r.pos;
    let manifest_len = r.u32()?;
    limit(
        "manifest length",
        manifest_len.into(),
        MAX_MANIFEST_LEN.into(),
        at,
    )?;
    let manifest = r.take(manifest_len as usize)?;

    let at = r.pos;
    let count = r.u32()?;
    limit("payload count", count.into(), MAX_PAYLOADS.into(), at)?;
    let mut payloads: Vec<(&str, &[u8])> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let at = r.pos;
        let name_len = r.u16()?;
        limit(
            "payload name length",
            name_len.into(),
            MAX_PAYLOAD_NAME_LEN.into(),
            at,
        )?;
        let at = r.pos;
        let raw_name = r.take(name_len.into())?;
        let name = std::str::from_utf8(raw_name).map_err(|_| Error::InvalidPayloadName {
            name: String::from_utf8_lossy(raw_name).into_owned(),
            reason: "not UTF-8",
            at,
        })?;
        check_payload_name(name, at)?;
        if payloads.iter().any(|(other, _)| *other == name) {
            return Err(Error::DuplicatePayload { name: name.into() });
        }
        let at = r.pos;
        let size = r.u64()?;
        limit("payload size", size, MAX_PAYLOAD_SIZE, at)?;
        payloads.push((name, r.take(size as usize)?));
    }

    let at = r.pos;
    let count = r.u32()?;
    limit("signature count", count.into(), MAX_SIGNATURES.into(), at)?;
    let mut signatures: Vec<Signature> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let key_id = KeyId(r.take(8)?.try_into().expect("took 8 bytes"));
        let bytes = r.take(64)?.try_into().expect("took 64 bytes");
        if signatures.iter().any(|s| s.key_id == key_id) {
            return Err(Error::DuplicateSignature { key_id });
        }
        signatures.push(Signature { key_id, bytes });
    }
    if r.pos != bytes.len() {
        return Err(Error::TrailingBytes { at: r.pos });
    }
    Ok(RawPackage {
        manifest,
        payloads,
        signatures,
    })
}

/// Checks a payload about to be written against the same rules the reader applies.
pub(crate) fn check_payload(name: &str, bytes: &[u8]) -> Result<(), Error> {
    limit(
        "payload name length",
        name.len() as u64,
        MAX_PAYLOAD_NAME_LEN.into(),
        0,
    )?;
    check_payload_name(name, 0)?;
    limit("payload size", bytes.len() as u64, MAX_PAYLOAD_SIZE, 0)
}

/// Payload names become file names on `lpkg extract`, so they are restricted to a safe alphabet.
fn check_payload_name(name: &str, at: usize) -> Result<(), Error> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.starts_with('.') {
        Some("starts with '.'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        Some("only ASCII letters, digits, '.', '_' and '-' are allowed")
    } else if name == MANIFEST_FILE_NAME {
        Some("reserved for the manifest")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidPayloadName {
            name: name.into(),
            reason,
            at,
        }),
        None => Ok(()),
    }
}

fn limit(what: &'static str, value: u64, limit: u64, at: usize) -> Result<(), Error> {
    if value > limit {
        Err(Error::LimitExceeded {
            what,
            value,
            limit,
            at,
        })
    } else {
        Ok(())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.bytes.len() - self.pos < n {
            return Err(Error::Truncated {
                at: self.bytes.len(),
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}
