//! The test vectors of `spec/vectors/`, so a second implementation can check itself.
//!
//! Regenerate (only when the format changes on purpose) with
//! `LPKG_BLESS_VECTORS=1 cargo test -p lpkg-format --test vectors`.

mod common;

use std::path::{Path, PathBuf};

use lpkg_format::*;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Hex in the vector files is wrapped at 64 digits per line.
fn wrap_hex(bytes: &[u8]) -> String {
    let hex = digest::to_hex(bytes);
    let mut out = String::new();
    for line in hex.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out
}

fn unwrap_hex(text: &str) -> Vec<u8> {
    let hex: String = text.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn build(manifest: Manifest, key: &SecretKey) -> Package {
    let payloads = vec![
        (
            MODULE_PAYLOAD.to_string(),
            std::fs::read(dir().join("module.o")).unwrap(),
        ),
        (
            SYMBOLS_PAYLOAD.to_string(),
            std::fs::read(dir().join("symbols.toml")).unwrap(),
        ),
    ];
    let mut package = Package::new(manifest, payloads).unwrap();
    package.sign(key).unwrap();
    package
}

fn expected(package: &Package, key: &SecretKey) -> String {
    let bytes = package.to_bytes();
    format!(
        "# Expected values for the test vector package (see spec/lpkg-format.md).\n\
         key_id = \"{}\"\n\
         package_id = \"{}\"\n\
         package_sha256 = \"{}\"\n\
         package_size = {}\n\
         signed_message_sha256 = \"{}\"\n\
         signature = \"{}\"\n",
        key.public().key_id(),
        package.id(),
        sha256_hex(&bytes),
        bytes.len(),
        sha256_hex(
            &[
                &b"lpkg signature v1\0"[..],
                &bytes[..16 + package.manifest_bytes().len()]
            ]
            .concat()
        ),
        package.signatures()[0].to_hex(),
    )
}

#[test]
fn vectors_match_this_implementation() {
    if std::env::var_os("LPKG_BLESS_VECTORS").is_some() {
        bless();
    }
    // Committed files have the checkout's modes: the test key is read from a private copy.
    let private = tempfile::tempdir().unwrap();
    let copy = private.path().join("test.key");
    std::fs::copy(dir().join("test.key"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let key = SecretKey::read(&copy).unwrap();
    let public = PublicKey::read(&dir().join("test.pub")).unwrap();
    assert_eq!(key.public(), public);
    assert_eq!(
        key.public().key_id(),
        common::key("lpkg test vector key").public().key_id()
    );

    // Writing: manifest.toml parses and re-encodes to itself, and signing gives package.hex.
    let manifest_text = read("manifest.toml");
    let package = build(Manifest::from_toml(&manifest_text).unwrap(), &key);
    assert_eq!(package.manifest_bytes(), manifest_text.as_bytes());
    assert_eq!(wrap_hex(&package.to_bytes()), read("package.hex"));
    assert_eq!(expected(&package, &key), read("expected.toml"));

    // Reading: the stored package verifies against test.pub.
    let bytes = unwrap_hex(&read("package.hex"));
    let trust = TrustStore::from_path(&dir().join("test.pub")).unwrap();
    let (read_back, signers) = open_verified(&bytes, &trust).unwrap();
    assert_eq!(signers, vec![public.key_id()]);
    assert_eq!(read_back, package);
}

fn bless() {
    std::fs::create_dir_all(dir()).unwrap();
    let key = common::key("lpkg test vector key");
    for name in ["test.key", "test.pub"] {
        let _ = std::fs::remove_file(dir().join(name));
    }
    key.write(&dir().join("test.key"), true).unwrap();
    key.public().write(&dir().join("test.pub"), true).unwrap();
    std::fs::write(
        dir().join("module.o"),
        b"\x7fELF tiny made-up patch module for test vectors\n",
    )
    .unwrap();
    std::fs::write(dir().join("symbols.toml"), common::payloads()[1].1.clone()).unwrap();
    let package = build(common::manifest(), &key);
    std::fs::write(dir().join("manifest.toml"), package.manifest_bytes()).unwrap();
    std::fs::write(dir().join("package.hex"), wrap_hex(&package.to_bytes())).unwrap();
    std::fs::write(dir().join("expected.toml"), expected(&package, &key)).unwrap();
}
