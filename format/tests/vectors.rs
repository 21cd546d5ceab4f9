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

/// The manifest of the full vector (`full/`): every optional key and table of version 4,
/// strings in each of the writer's forms.
fn full_manifest() -> Manifest {
    let mut m = common::manifest();
    m.package.description = r#"Fixes the "off-by-one" in parse_header (C:\src).'"#.into();
    m.target.unwinder = Some(LinkedUnwinder {
        register_frame_info: 0x2a3b0,
        deregister_frame_info: 0x2a4c0,
    });
    m.requires = vec![Requirement {
        name: "demo-base".into(),
        id: sha256_hex(b"the package it stacks on"),
    }];
    m.functions.push(Function {
        name: "is_ws".into(),
        action: Action::Replace,
        source: Some("lex.c:7".into()),
        reason: "changed bytes".into(),
        module_symbol: "is_ws".into(),
        old_offset: Some(0x1200),
        old_size: Some(4),
        old_sha256: Some(sha256_hex(b"old is_ws")),
        old_room: Some(4),
        call_sites: vec![0x1161, 0x11a9],
        new_size: 12,
    });
    m.data = vec![
        Data {
            name: "limits".into(),
            section: ".rodata.limits".into(),
            size: 32,
        },
        Data {
            name: SHADOW_TABLE_SYMBOL.into(),
            section: ".bss.__lpkg_shadow_table".into(),
            size: 8,
        },
    ];
    m.routines = vec![
        Routine {
            kind: RoutineKind::Check,
            module_symbol: "no_request_in_flight".into(),
        },
        Routine {
            kind: RoutineKind::Init,
            module_symbol: "migrate".into(),
        },
        Routine {
            kind: RoutineKind::Exit,
            module_symbol: "unmigrate".into(),
        },
    ];
    m
}

/// Packages every reader refuses (`invalid.toml`), each made from the v1 package `good`, with
/// the message this implementation gives (spec/lpkg-format.md, section 2.3).
fn invalid_cases(good: &[u8], key: &SecretKey) -> Vec<(&'static str, Vec<u8>)> {
    let mut tampered = good.to_vec();
    let last_payload_byte = good.len() - 4 - 72 - 1;
    tampered[last_payload_byte] ^= 1;
    let mut trailing = good.to_vec();
    trailing.push(0);
    let mut version = good.to_vec();
    version[8] = 2;
    let mut control = common::manifest();
    control.package.name = "demo\u{1b}[2Kfix".into();
    control.payloads = build(common::manifest(), key).manifest().payloads.clone();
    let control_text = control.to_toml().unwrap();
    let payloads = vector_payloads();
    vec![
        ("bad magic", b"\x89LPKX\r\n\x1a".to_vec()),
        ("truncated", good[..good.len() - 10].to_vec()),
        ("unsupported container version", version),
        ("trailing bytes", trailing),
        ("payload digest", tampered),
        (
            "control character",
            container::encode(control_text.as_bytes(), &payloads, &[]),
        ),
    ]
}

/// The payloads of the vector packages, as committed.
fn vector_payloads() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            MODULE_PAYLOAD.to_string(),
            std::fs::read(dir().join("module.o")).unwrap(),
        ),
        (
            SYMBOLS_PAYLOAD.to_string(),
            std::fs::read(dir().join("symbols.toml")).unwrap(),
        ),
    ]
}

fn build(manifest: Manifest, key: &SecretKey) -> Package {
    let mut package = Package::new(manifest, vector_payloads()).unwrap();
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

    // The full vector: version 4, every optional key, written and read the same way.
    let full_text = read("full/manifest.toml");
    let full = build(Manifest::from_toml(&full_text).unwrap(), &key);
    assert_eq!(full.manifest().format_version, 4);
    assert_eq!(full.manifest(), build(full_manifest(), &key).manifest());
    assert_eq!(full.manifest_bytes(), full_text.as_bytes());
    assert_eq!(wrap_hex(&full.to_bytes()), read("full/package.hex"));
    assert_eq!(expected(&full, &key), read("full/expected.toml"));
    let (read_back, _) = open_verified(&unwrap_hex(&read("full/package.hex")), &trust).unwrap();
    assert_eq!(read_back, full);

    // Invalid packages: each refused, with the message the file gives.
    let invalid: toml::Value = toml::from_str(&read("invalid.toml")).unwrap();
    let cases = invalid["case"].as_array().unwrap();
    assert_eq!(cases.len(), invalid_cases(&bytes, &key).len());
    for case in cases {
        let bytes = unwrap_hex(case["package"].as_str().unwrap());
        let error = Package::from_bytes(&bytes).unwrap_err().to_string();
        assert_eq!(error, case["error"].as_str().unwrap(), "{}", case["name"]);
    }
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
    // The version 1 vector keeps its manifest once made: other implementations check it.
    let manifest = match std::fs::read_to_string(dir().join("manifest.toml")) {
        Ok(text) => Manifest::from_toml(&text).unwrap(),
        Err(_) => common::manifest(),
    };
    let package = build(manifest, &key);
    std::fs::write(dir().join("manifest.toml"), package.manifest_bytes()).unwrap();
    std::fs::write(dir().join("package.hex"), wrap_hex(&package.to_bytes())).unwrap();
    std::fs::write(dir().join("expected.toml"), expected(&package, &key)).unwrap();
    let full = build(full_manifest(), &key);
    std::fs::create_dir_all(dir().join("full")).unwrap();
    std::fs::write(dir().join("full/manifest.toml"), full.manifest_bytes()).unwrap();
    std::fs::write(dir().join("full/package.hex"), wrap_hex(&full.to_bytes())).unwrap();
    std::fs::write(dir().join("full/expected.toml"), expected(&full, &key)).unwrap();
    let mut invalid = String::from(
        "# Packages every reader refuses, and the message lpkg gives (spec/lpkg-format.md, 2.3).\n",
    );
    for (name, bytes) in invalid_cases(&package.to_bytes(), &key) {
        let error = Package::from_bytes(&bytes).unwrap_err().to_string();
        invalid.push_str(&format!(
            "\n[[case]]\nname = {:?}\nerror = {}\npackage = \"\"\"\n{}\"\"\"\n",
            name,
            toml::Value::String(error),
            wrap_hex(&bytes)
        ));
    }
    std::fs::write(dir().join("invalid.toml"), invalid).unwrap();
}
