//! Shared fixtures: a small made-up package and fixed keys.
#![allow(dead_code)]

use lpkg_format::*;

/// A fixed key made from a label, so tests are reproducible.
pub fn key(label: &str) -> SecretKey {
    let digest = lpkg_format::digest::sha256(label.as_bytes());
    SecretKey::from_seed(digest)
}

pub fn manifest() -> Manifest {
    Manifest {
        format_version: 1,
        package: PackageInfo {
            name: "demo-fix".into(),
            version: "1.0.0".into(),
            description: "Fixes the off-by-one in parse_header.".into(),
            builder_version: "lpkg-builder 0.1.0".into(),
        },
        target: Target {
            file_name: "server".into(),
            build_id: "0123456789abcdef0123456789abcdef01234567".into(),
            sha256: sha256_hex(b"the target file"),
            machine: "x86_64".into(),
            unwinder: None,
        },
        requires: vec![],
        functions: vec![
            Function {
                name: "parse_header".into(),
                action: Action::Replace,
                source: Some("server.c:42".into()),
                reason: "changed bytes".into(),
                module_symbol: "parse_header".into(),
                old_offset: Some(0x1139),
                old_size: Some(57),
                old_sha256: Some(sha256_hex(b"old parse_header")),
                old_room: Some(64),
                call_sites: Vec::new(),
                new_size: 61,
            },
            Function {
                name: "check_len".into(),
                action: Action::New,
                source: None,
                reason: "new function".into(),
                module_symbol: "check_len".into(),
                old_offset: None,
                old_size: None,
                old_sha256: None,
                old_room: None,
                call_sites: Vec::new(),
                new_size: 16,
            },
        ],
        data: vec![],
        routines: vec![],
        payloads: vec![],
    }
}

pub fn payloads() -> Vec<(String, Vec<u8>)> {
    let symbols = SymbolMap {
        symbols: vec![SymbolBinding::External {
            name: "memcpy".into(),
            symbol: "memcpy".into(),
            version: Some("GLIBC_2.14".into()),
        }],
    };
    vec![
        (MODULE_PAYLOAD.into(), b"\x7fELF made-up module".to_vec()),
        (
            SYMBOLS_PAYLOAD.into(),
            symbols.to_toml().unwrap().into_bytes(),
        ),
    ]
}

/// The sample package signed by `key("signer")`.
pub fn signed() -> Package {
    let mut package = Package::new(manifest(), payloads()).unwrap();
    package.sign(&key("signer")).unwrap();
    package
}

pub fn trust(keys: &[&SecretKey]) -> TrustStore {
    TrustStore::from_keys(keys.iter().map(|k| k.public())).unwrap()
}

/// Tiny deterministic PRNG (xorshift64*), so random tests are reproducible without a crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
