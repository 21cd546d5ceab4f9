//! Feeds arbitrary bytes to the package reader, both ways it is used: the auditor's
//! (`from_bytes` then `verify`) and the applier's (`open_verified`). Neither may panic, and
//! the two must agree.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lpkg_format::{open_verified, Package, SecretKey, TrustStore};

fn trust() -> &'static TrustStore {
    static TRUST: OnceLock<TrustStore> = OnceLock::new();
    TRUST.get_or_init(|| {
        // The test-vector key (spec/vectors/test.pub), so corpus seeds can carry valid signatures.
        let seed = lpkg_format::digest::sha256(b"lpkg test vector key");
        TrustStore::from_keys([SecretKey::from_seed(seed).public()]).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let audited = Package::from_bytes(data).and_then(|p| p.verify(trust()).map(|_| p));
    let applied = open_verified(data, trust()).map(|(p, _)| p);
    assert_eq!(audited.is_ok(), applied.is_ok());
    if let (Ok(a), Ok(b)) = (audited, applied) {
        assert_eq!(a, b);
        // Anything accepted re-encodes to the same bytes: one encoding per package.
        assert_eq!(a.to_bytes(), data);
    }
});
