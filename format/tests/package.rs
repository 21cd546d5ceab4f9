//! Reading, writing, signing and verifying packages, including every corruption.

mod common;

use common::*;
use lpkg_format::container::{MAGIC, SIGNATURE_ENTRY_LEN};
use lpkg_format::*;

/// Reads `bytes` the way the applier does and the way the auditor does; both must agree.
fn open(bytes: &[u8], trust: &TrustStore) -> Result<Package, Error> {
    let verified = open_verified(bytes, trust).map(|(p, _)| p);
    let audited = Package::from_bytes(bytes).and_then(|p| p.verify(trust).map(|_| p));
    assert_eq!(verified.is_ok(), audited.is_ok(), "readers disagree");
    verified
}

#[test]
fn round_trip_keeps_manifest_payloads_and_signature() {
    let package = signed();
    let bytes = package.to_bytes();
    let signer = key("signer");
    let (read, signers) = open_verified(&bytes, &trust(&[&signer])).unwrap();
    assert_eq!(read, package);
    assert_eq!(signers, vec![signer.public().key_id()]);
    assert_eq!(read.manifest().package.name, "demo-fix");
    assert_eq!(read.manifest().payloads.len(), 2);
    assert_eq!(read.manifest().payloads[0].name, "module.o");
    assert_eq!(
        read.manifest().payloads[0].sha256,
        sha256_hex(&payloads()[0].1)
    );
    assert_eq!(read.payload("module.o"), Some(&payloads()[0].1[..]));
    assert_eq!(read.payload("nope"), None);
    assert_eq!(read.payloads().count(), 2);
    assert_eq!(read.id(), sha256_hex(read.manifest_bytes()));
    let symbols = std::str::from_utf8(read.payload(SYMBOLS_PAYLOAD).unwrap()).unwrap();
    assert_eq!(
        SymbolMap::from_toml(symbols).unwrap().symbols[0].name(),
        "memcpy"
    );
}

#[test]
fn encoding_is_deterministic() {
    assert_eq!(signed().to_bytes(), signed().to_bytes());
    assert_eq!(signed().id(), signed().id());
}

#[test]
fn signing_adds_keeps_and_does_not_duplicate() {
    let (a, b) = (key("signer"), key("second"));
    let mut package = signed();
    let id_before = package.id();
    package.sign(&b).unwrap();
    package.sign(&a).unwrap();
    package.sign(&b).unwrap();
    let ids: Vec<KeyId> = package.signatures().iter().map(|s| s.key_id).collect();
    assert_eq!(ids, vec![a.public().key_id(), b.public().key_id()]);
    assert_eq!(package.id(), id_before, "signatures do not change the id");
    // Each key alone is enough; both together report both.
    let bytes = package.to_bytes();
    assert_eq!(
        open_verified(&bytes, &trust(&[&b])).unwrap().1,
        vec![b.public().key_id()]
    );
    assert_eq!(open_verified(&bytes, &trust(&[&a, &b])).unwrap().1.len(), 2);
}

#[test]
fn adding_a_signature_does_not_change_the_signed_bytes() {
    let one = signed().to_bytes();
    let mut package = signed();
    package.sign(&key("second")).unwrap();
    let two = package.to_bytes();
    // Only the signature count and the appended entry differ.
    assert_eq!(two.len(), one.len() + SIGNATURE_ENTRY_LEN);
    let count_at = one.len() - 4 - SIGNATURE_ENTRY_LEN;
    assert_eq!(one[..count_at], two[..count_at]);
    assert_eq!(two[count_at], 2);
}

#[test]
fn untrusted_signer_is_rejected() {
    let stranger = key("stranger");
    let err = open(&signed().to_bytes(), &trust(&[&stranger])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("unknown signer {}", key("signer").public().key_id())
    );
    assert!(err.is_rejection());
}

#[test]
fn unsigned_package_is_rejected() {
    let package = Package::new(manifest(), payloads()).unwrap();
    let bytes = package.to_bytes();
    assert!(Package::from_bytes(&bytes).is_ok(), "structurally valid");
    let err = open(&bytes, &trust(&[&key("signer")])).unwrap_err();
    assert_eq!(err.to_string(), "package is not signed");
}

#[test]
fn a_bad_trusted_signature_is_fatal_even_next_to_a_good_one() {
    let (a, b) = (key("signer"), key("second"));
    let mut package = signed();
    package.sign(&b).unwrap();
    let mut bytes = package.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // inside b's signature
    let err = open(&bytes, &trust(&[&a, &b])).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("bad signature by {}", b.public().key_id())
    );
    // Trusting only `a`, the broken signature by an unknown key is not looked at.
    assert!(open(&bytes, &trust(&[&a])).is_ok());
}

/// Offsets of the regions of the sample package, computed from the layout.
struct Layout {
    manifest: std::ops::Range<usize>,
    module: std::ops::Range<usize>,
    key_id: std::ops::Range<usize>,
    signature: std::ops::Range<usize>,
}

fn layout(package: &Package) -> Layout {
    let manifest = 16..16 + package.manifest_bytes().len();
    let module_len = package.payload(MODULE_PAYLOAD).unwrap().len();
    let module_start = manifest.end + 4 + 2 + MODULE_PAYLOAD.len() + 8;
    let total = package.to_bytes().len();
    Layout {
        manifest,
        module: module_start..module_start + module_len,
        key_id: total - 72..total - 64,
        signature: total - 64..total,
    }
}

#[test]
fn every_single_byte_change_is_rejected_with_a_clear_message() {
    let package = signed();
    let good = package.to_bytes();
    let signer = key("signer");
    let trust = trust(&[&signer]);
    let regions = layout(&package);
    let id = signer.public().key_id().to_string();
    for offset in 0..good.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[offset] ^= mask;
            let err = match open(&bad, &trust) {
                Ok(_) => panic!("flip {mask:#x} at byte {offset} accepted"),
                Err(e) => e,
            };
            let message = err.to_string();
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "{message:?}"
            );
            assert!(err.is_rejection(), "offset {offset}: {message}");
            let expected = if offset < 8 {
                Some("not an lpkg package (bad magic)".to_string())
            } else if regions.manifest.contains(&offset) {
                // Verify-then-parse: a changed manifest fails on the signature first.
                Some(format!("bad signature by {id}"))
            } else if regions.module.contains(&offset) {
                Some("payload module.o: digest mismatch".into())
            } else if regions.key_id.contains(&offset) {
                Some(format!(
                    "unknown signer {}",
                    KeyId(bad[regions.key_id.clone()].try_into().unwrap())
                ))
            } else if regions.signature.contains(&offset) {
                Some(format!("bad signature by {id}"))
            } else {
                None
            };
            if let Some(expected) = expected {
                assert_eq!(message, expected, "flip {mask:#x} at byte {offset}");
            }
        }
    }
}

#[test]
fn every_truncation_is_rejected() {
    let good = signed().to_bytes();
    let trust = trust(&[&key("signer")]);
    for len in 0..good.len() {
        let err = open(&good[..len], &trust).unwrap_err();
        assert_eq!(err.to_string(), format!("truncated at byte {len}"));
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = signed().to_bytes();
    let end = bytes.len();
    bytes.push(0);
    let err = Package::from_bytes(&bytes).unwrap_err();
    assert_eq!(err.to_string(), format!("trailing bytes at byte {end}"));
}

#[test]
fn other_versions_and_non_packages_are_rejected() {
    let mut bytes = signed().to_bytes();
    bytes[8] = 2;
    assert_eq!(
        Package::from_bytes(&bytes).unwrap_err().to_string(),
        "unsupported format version 2"
    );
    assert_eq!(
        Package::from_bytes(b"#!/bin/sh\necho hi\n")
            .unwrap_err()
            .to_string(),
        "not an lpkg package (bad magic)"
    );
}

#[test]
fn limits_are_checked_before_allocating() {
    // A header announcing a 4 GiB manifest in a 16-byte file.
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        Package::from_bytes(&bytes).unwrap_err().to_string(),
        "manifest length 4294967295 exceeds the limit of 1048576 (at byte 12)"
    );
    // A payload announcing 2^64-1 bytes.
    let package = signed();
    let mut bytes = package.to_bytes();
    let size_at = 16 + package.manifest_bytes().len() + 4 + 2 + MODULE_PAYLOAD.len();
    bytes[size_at..size_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_eq!(
        Package::from_bytes(&bytes).unwrap_err().to_string(),
        format!(
            "payload size 18446744073709551615 exceeds the limit of 268435456 (at byte {size_at})"
        )
    );
}

#[test]
fn unsafe_payload_names_are_refused_by_writer() {
    for name in ["../x", "a/b", ".hidden", "", "manifest.toml", "sp ace"] {
        let err = Package::new(manifest(), vec![(name.into(), vec![1])]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid payload name"),
            "{name}: {err}"
        );
    }
    let err =
        Package::new(manifest(), vec![("a".into(), vec![]), ("a".into(), vec![])]).unwrap_err();
    assert_eq!(err.to_string(), "duplicate payload a");
}

#[test]
fn payload_list_must_match_the_manifest() {
    // Swap the two payloads in the container: the manifest lists them in the other order.
    let package = signed();
    let mut swapped = payloads();
    swapped.reverse();
    let reordered =
        lpkg_format::container::encode(package.manifest_bytes(), &swapped, package.signatures());
    let err = Package::from_bytes(&reordered).unwrap_err();
    assert_eq!(
        err.to_string(),
        "payload list mismatch: payload 0 is symbols.toml in the container but module.o in the manifest"
    );
}

#[test]
fn manifest_toml_round_trips_and_rejects_unknown_fields() {
    let m = manifest();
    let text = m.to_toml().unwrap();
    assert_eq!(Manifest::from_toml(&text).unwrap(), m);
    let err = Manifest::from_toml(&format!("{text}\nsurprise = 1\n")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("manifest: unknown field `surprise`"),
        "{err}"
    );
    assert!(!err.to_string().contains('\n'));
}

#[test]
fn random_and_mutated_inputs_never_panic_and_never_smuggle_content() {
    let package = signed();
    let good = package.to_bytes();
    let trust = trust(&[&key("signer")]);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..4000 {
        let mut bytes = if round % 10 == 0 {
            (0..rng.below(200)).map(|_| rng.next() as u8).collect()
        } else {
            good.clone()
        };
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(bytes.len());
            match rng.below(4) {
                0 if !bytes.is_empty() => bytes[at] = rng.next() as u8,
                1 => bytes.insert(at, rng.next() as u8),
                2 if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => {
                    let len = rng.below(16).min(bytes.len() - at);
                    let from = rng.below(good.len() - len);
                    bytes.splice(at..at + len, good[from..from + len].iter().copied());
                }
            }
        }
        let _ = Package::from_bytes(&bytes);
        if let Ok((read, _)) = open_verified(&bytes, &trust) {
            assert_eq!(read.manifest_bytes(), package.manifest_bytes());
            assert!(read.payloads().eq(package.payloads()));
            assert_eq!(read.to_bytes(), bytes, "one encoding per package");
        }
    }
}

#[test]
fn malformed_manifests_are_refused_with_the_field_named() {
    type Breakage = fn(&mut Manifest);
    let cases: Vec<(Breakage, &str)> = vec![
        (
            |m| m.target.sha256 = "ABC".into(),
            "manifest: target.sha256: not 64 lower-case hex digits",
        ),
        (
            |m| m.target.build_id = String::new(),
            "manifest: target.build_id: not 1 to 64 bytes of lower-case hex",
        ),
        (
            |m| m.target.build_id = "abc".into(),
            "manifest: target.build_id: not 1 to 64 bytes of lower-case hex",
        ),
        (
            |m| m.functions[0].old_sha256 = None,
            "manifest: function parse_header: replace needs old_offset, old_size and old_sha256",
        ),
        (
            |m| m.functions[1].old_offset = Some(1),
            "manifest: function check_len: new must not have old_offset, old_size or old_sha256",
        ),
        (
            |m| m.functions[0].old_room = Some(56),
            "manifest: function parse_header: old_room is smaller than old_size",
        ),
        (
            |m| m.functions[1].old_room = Some(64),
            "manifest: function check_len: new must not have old_room",
        ),
        (
            |m| m.functions[1].call_sites = vec![0x1000],
            "manifest: function check_len: new must not have call_sites",
        ),
        (
            |m| m.functions[0].old_sha256 = Some("00".into()),
            "manifest: function parse_header: old_sha256: not 64 lower-case hex digits",
        ),
        (
            |m| {
                m.requires.push(Requirement {
                    name: "base".into(),
                    id: "x".into(),
                })
            },
            "manifest: requires base: id: not 64 lower-case hex digits",
        ),
    ];
    for (break_it, expected) in cases {
        let mut m = manifest();
        break_it(&mut m);
        // The writer refuses it...
        assert_eq!(
            Package::new(m.clone(), payloads()).unwrap_err().to_string(),
            expected
        );
        // ...and so does the reader.
        m.payloads = signed().manifest().payloads.clone();
        let text = m.to_toml().unwrap();
        let bytes = lpkg_format::container::encode(text.as_bytes(), &payloads(), &[]);
        assert_eq!(
            Package::from_bytes(&bytes).unwrap_err().to_string(),
            expected
        );
    }
}

/// The error reading a package of `manifest` (its payload digests as written) claiming
/// `version`.
fn read_as_version(mut manifest: Manifest, version: u32) -> String {
    manifest.format_version = version;
    let text = manifest.to_toml().unwrap();
    let bytes = lpkg_format::container::encode(text.as_bytes(), &payloads(), &[]);
    Package::from_bytes(&bytes).unwrap_err().to_string()
}

/// A package's strings are printed to auditors (`inspect`, `verify`, `apply`): one carrying a
/// control character (an escape sequence, a newline, a bidirectional override) could forge a
/// line such as "verified yes". Writers and readers refuse it, naming the field.
#[test]
fn control_characters_in_manifest_strings_are_refused() {
    let forged = "harmless\nverified     yes, signed by trusted key 1e61d963a9446cd1";
    type Set = fn(&mut Manifest, &str);
    let cases: [(&str, Set); 5] = [
        ("package.description", |m, t| {
            m.package.description = t.into()
        }),
        ("package.name", |m, t| m.package.name = t.into()),
        ("package.version", |m, t| m.package.version = t.into()),
        ("target.file_name", |m, t| m.target.file_name = t.into()),
        ("function check_len: reason", |m, t| {
            m.functions[1].reason = t.into()
        }),
    ];
    for (what, set) in cases {
        for text in [forged, "fix\u{1b}[2K\r", "fix\u{202e}txt.exe", "\u{9b}31m"] {
            let mut m = manifest();
            set(&mut m, text);
            let error = Package::new(m.clone(), payloads()).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!(
                    "manifest: {what}: contains the control character U+"
                )),
                "{what} {text:?}: {error}"
            );
            // Written by hand, it is refused on reading too.
            m.payloads = signed().manifest().payloads.clone();
            let text = m.to_toml().unwrap();
            let bytes = lpkg_format::container::encode(text.as_bytes(), &payloads(), &[]);
            let error = Package::from_bytes(&bytes).unwrap_err().to_string();
            assert!(error.contains("contains the control character"), "{error}");
        }
    }
    // Other text is anyone's to write.
    let mut m = manifest();
    m.package.description = "Corrige l'erreur « hors limites » — 修正".into();
    Package::new(m, payloads()).unwrap();
}

#[test]
fn call_sites_make_a_version_2_manifest_and_version_1_stays_readable() {
    let key = SecretKey::generate().unwrap();
    let mut m = manifest();
    m.functions[0].call_sites = vec![0x1234, 0x1301];
    let mut package = Package::new(m, payloads()).unwrap();
    assert_eq!(package.manifest().format_version, 2);
    package.sign(&key).unwrap();
    let read = Package::from_bytes(&package.to_bytes()).unwrap();
    assert_eq!(read.manifest().functions[0].call_sites, [0x1234, 0x1301]);
    // Written as version 1, which has no call sites, it is refused; so is version 2 without.
    for (version, sites) in [(1, vec![0x1234]), (2, vec![])] {
        let mut m = package.manifest().clone();
        m.functions[0].call_sites = sites;
        assert_eq!(
            read_as_version(m, version),
            "manifest: format_version: must be 4 exactly with target.unwinder, else 3 exactly with a check routine or shadow variables, else 2 exactly when a function has call_sites, else 1"
        );
    }
    // A package without call sites is still version 1, as older readers expect.
    assert_eq!(signed().manifest().format_version, 1);
}

#[test]
fn a_linked_in_unwinder_makes_a_version_4_manifest_written_as_a_table_of_the_target() {
    let mut m = manifest();
    m.target.unwinder = Some(LinkedUnwinder {
        register_frame_info: 0x1a2b0,
        deregister_frame_info: 0x1a3c0,
    });
    let package = Package::new(m, payloads()).unwrap();
    assert_eq!(package.manifest().format_version, 4);
    let text = package.manifest().to_toml().unwrap();
    assert!(
        text.contains(
            "[target.unwinder]\nregister_frame_info = 107184\nderegister_frame_info = 107456\n"
        ),
        "{text}"
    );
    let read = Package::from_bytes(&package.to_bytes()).unwrap();
    assert_eq!(read.manifest(), package.manifest());
    // Claimed as version 3, which an applier that cannot register there reads, it is refused.
    for version in [1, 3] {
        assert!(read_as_version(package.manifest().clone(), version)
            .starts_with("manifest: format_version: must be 4 exactly"));
    }
    // Both offsets or none.
    let half = package
        .manifest()
        .to_toml()
        .unwrap()
        .replace("deregister_frame_info = 107456\n", "");
    let bytes = lpkg_format::container::encode(half.as_bytes(), &payloads(), &[]);
    assert!(Package::from_bytes(&bytes)
        .unwrap_err()
        .to_string()
        .contains("deregister_frame_info"));
}

#[test]
fn check_routines_and_shadow_variables_make_a_version_3_manifest() {
    let shadow_table = Data {
        name: lpkg_format::SHADOW_TABLE_SYMBOL.into(),
        section: ".bss.__lpkg_shadow_table".into(),
        size: 8,
    };
    let check = Routine {
        kind: RoutineKind::Check,
        module_symbol: "idle".into(),
    };
    for (data, routines) in [(vec![shadow_table.clone()], vec![]), (vec![], vec![check])] {
        let mut m = manifest();
        m.data = data;
        m.routines = routines;
        let package = Package::new(m, payloads()).unwrap();
        assert_eq!(package.manifest().format_version, 3);
        let read = Package::from_bytes(&package.to_bytes()).unwrap();
        assert_eq!(read.manifest(), package.manifest());
        // Claimed as an older version, it is refused rather than misread.
        assert!(read_as_version(package.manifest().clone(), 2)
            .starts_with("manifest: format_version: must be 4 exactly"));
    }
    // Other data, and init and exit routines, stay version 1.
    let mut m = manifest();
    m.routines = vec![Routine {
        kind: RoutineKind::Init,
        module_symbol: "migrate".into(),
    }];
    assert_eq!(
        Package::new(m, payloads())
            .unwrap()
            .manifest()
            .format_version,
        1
    );
}

/// A package a reader would refuse as a file (over 64 MiB, signatures included) is never
/// made.
#[test]
fn a_package_over_the_file_limit_is_never_made() {
    let mut payloads = payloads();
    payloads[0].1 = vec![0; lpkg_format::MAX_PACKAGE_LEN as usize];
    let error = Package::new(manifest(), payloads).unwrap_err().to_string();
    assert!(
        error.contains("package length with its signatures"),
        "{error}"
    );
}

/// A manifest of a later version is refused as such ("unsupported format version 5"), even
/// when it carries the keys that version added, which this reader does not know: the user
/// learns to upgrade lpkg, not that the package is malformed.
#[test]
fn a_later_manifest_version_is_refused_as_such_whatever_keys_it_adds() {
    let package = signed();
    let text = std::str::from_utf8(package.manifest_bytes())
        .unwrap()
        .replace("format_version = 1", "format_version = 5")
        .replace("[target]\n", "[target]\nsomething_new = true\n");
    let bytes = lpkg_format::container::encode(text.as_bytes(), &payloads(), &[]);
    assert_eq!(
        Package::from_bytes(&bytes).unwrap_err().to_string(),
        "unsupported format version 5"
    );
    // A known version with an unknown key is malformed.
    let text = text.replace("format_version = 5", "format_version = 1");
    let bytes = lpkg_format::container::encode(text.as_bytes(), &payloads(), &[]);
    let error = Package::from_bytes(&bytes).unwrap_err().to_string();
    assert!(error.contains("unknown field `something_new`"), "{error}");
}
