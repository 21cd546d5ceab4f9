//! Key files and trust stores on disk.

mod common;

use std::os::unix::fs::PermissionsExt;

use lpkg_format::*;

#[test]
fn key_files_round_trip_with_mode_0600_for_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    let (secret, public) = (dir.path().join("k.key"), dir.path().join("k.pub"));
    key.write(&secret, false).unwrap();
    key.public().write(&public, false).unwrap();
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(SecretKey::read(&secret).unwrap().public(), key.public());
    assert_eq!(PublicKey::read(&public).unwrap(), key.public());
    let text = std::fs::read_to_string(&public).unwrap();
    assert!(text.starts_with(&format!("lpkg-public-key-v1 {} ", key.public().key_id())));
}

#[test]
fn existing_key_is_never_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.key");
    let first = SecretKey::generate().unwrap();
    first.write(&path, false).unwrap();
    let second = SecretKey::generate().unwrap();
    let err = second.write(&path, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} already exists (use --force to overwrite)",
            path.display()
        )
    );
    assert_eq!(SecretKey::read(&path).unwrap().public(), first.public());
    second.write(&path, true).unwrap();
    assert_eq!(SecretKey::read(&path).unwrap().public(), second.public());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn malformed_key_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::key("signer");
    let path = dir.path().join("k.pub");
    let good = format!(
        "lpkg-public-key-v1 {} {}",
        key.public().key_id(),
        digest::to_hex(key.public().as_bytes())
    );
    let wrong_id = format!(
        "lpkg-public-key-v1 0000000000000000 {}",
        digest::to_hex(key.public().as_bytes())
    );
    let cases = [
        (
            good.replace("public", "secret"),
            "this is a secret key (.key): a public key (.pub) is wanted here",
        ),
        (
            good.replace("public-key-v1", "public-key-v2"),
            "expected `lpkg-public-key-v1 <key id> <key>`",
        ),
        (wrong_id, "key id 0000000000000000 does not match the key"),
        (format!("{good}\n{good}\n"), "more than one key line"),
        (
            "# only a comment\n".to_string(),
            "no `lpkg-public-key-v1` line",
        ),
        (
            good[..good.len() - 2].to_string(),
            "key is not 64 hex digits",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        let err = PublicKey::read(&path).unwrap_err().to_string();
        assert!(err.contains(expected), "{err} does not contain {expected}");
        assert!(err.starts_with(&path.display().to_string()));
    }
    // Comments and blank lines around the key are fine.
    std::fs::write(&path, format!("# release key\n\n{good}\n")).unwrap();
    assert_eq!(PublicKey::read(&path).unwrap(), key.public());
    // A public key where the secret one is wanted is said so, whatever its mode (0644, as
    // keygen writes it), not taken for an exposed secret key.
    key.public()
        .write(&dir.path().join("release.pub"), false)
        .unwrap();
    let err = SecretKey::read(&dir.path().join("release.pub"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "this is a public key (.pub): the secret key (.key) from `lpkg keygen` is wanted here"
        ),
        "{err}"
    );
}

#[test]
fn trust_store_reads_a_file_or_every_pub_file_of_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (common::key("a"), common::key("b"));
    a.public().write(&dir.path().join("a.pub"), false).unwrap();
    b.public().write(&dir.path().join("b.pub"), false).unwrap();
    a.write(&dir.path().join("a.key"), false).unwrap(); // ignored: not .pub
    let store = TrustStore::from_path(dir.path()).unwrap();
    assert_eq!(store.keys().count(), 2);
    assert!(store.get(&b.public().key_id()).is_some());
    let one = TrustStore::from_path(&dir.path().join("a.pub")).unwrap();
    assert_eq!(one.keys().count(), 1);
    assert!(one.get(&b.public().key_id()).is_none());
    let flag = TrustStore::resolve(Some(&dir.path().join("b.pub"))).unwrap();
    assert!(flag.get(&b.public().key_id()).is_some());
}

#[test]
fn empty_or_missing_trust_store_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = TrustStore::from_path(dir.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: no trusted keys (*.pub)", dir.path().display())
    );
    assert!(!err.is_rejection());
    let missing = dir.path().join("missing");
    let err = TrustStore::from_path(&missing).unwrap_err();
    assert!(err.to_string().starts_with(&missing.display().to_string()));
}
