//! The `lpkg` binary, run as a user would: exit codes, output and every error line.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use lpkg_format::{Package, PublicKey, SecretKey};

fn key_id(public: &std::path::Path) -> String {
    PublicKey::read(public).unwrap().key_id().to_string()
}

#[test]
fn keygen_writes_a_private_secret_key_and_refuses_to_overwrite() {
    let s = Scratch::new();
    let (secret, public) = s.keygen("release");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = SecretKey::read(&secret).unwrap();
    assert_eq!(key.public(), PublicKey::read(&public).unwrap());
    let before = std::fs::read(&secret).unwrap();

    let run = s.run(&["keygen", "-o", s.path("release").to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.error_line(),
        format!(
            "{} already exists (use --force to overwrite)",
            secret.display()
        )
    );
    assert_eq!(std::fs::read(&secret).unwrap(), before, "key was changed");

    // Only the .pub present still refuses, and writes no .key.
    let lone = s.path("lone.pub");
    std::fs::write(&lone, "x").unwrap();
    let run = s.run(&["keygen", "-o", s.path("lone").to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(!s.path("lone.key").exists());

    let run = s.run(&["keygen", "-f", "-o", s.path("release").to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_ne!(std::fs::read(&secret).unwrap(), before);
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // A folder is not a key path (it wrote hidden `keys/.key` and `keys/.pub`).
    std::fs::create_dir(s.path("keys")).unwrap();
    for folder in ["keys", "keys/", "new/"] {
        let run = s.run(&["keygen", "-o", s.path(folder).to_str().unwrap()]);
        assert_eq!(run.code, 2, "{folder}: {}", run.stderr);
        assert!(
            run.error_line().contains("a folder; -o takes"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(std::fs::read_dir(s.path("keys")).unwrap().count(), 0);
}

#[test]
fn sign_adds_a_signature_keeps_the_first_and_never_duplicates() {
    let s = Scratch::new();
    let (a_key, a_pub) = s.keygen("a");
    let (b_key, b_pub) = s.keygen("b");
    let pkg = s.package("fix.lpkg", &a_key);
    let pkg = pkg.to_str().unwrap();
    for _ in 0..2 {
        let run = s.run(&["sign", pkg, "--key", b_key.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let package = Package::from_bytes(&std::fs::read(pkg).unwrap()).unwrap();
    let ids: Vec<String> = package
        .signatures()
        .iter()
        .map(|s| s.key_id.to_string())
        .collect();
    assert_eq!(ids, vec![key_id(&a_pub), key_id(&b_pub)]);
    for trust in [&a_pub, &b_pub] {
        let run = s.run(&["verify", pkg, "--trust", trust.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
}

#[test]
fn verify_accepts_a_trusted_package_from_flag_env_or_folder() {
    let s = Scratch::new();
    let (key, public) = s.keygen("k");
    let pkg = s.package("fix.lpkg", &key);
    let pkg = pkg.to_str().unwrap();
    let run = s.run(&["verify", pkg, "--trust", public.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("OK demo-fix 1.0.0"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&key_id(&public)));

    let run = s.run_env(&["verify", pkg], Some(s.dir.path()));
    assert_eq!(run.code, 0, "{}", run.stderr);

    // --trust wins over $LPKG_TRUST, in both directions.
    let (_, stranger) = s.keygen("stranger");
    let run = s.run_env(
        &["verify", pkg, "--trust", public.to_str().unwrap()],
        Some(&stranger),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = s.run_env(
        &["verify", pkg, "--trust", stranger.to_str().unwrap()],
        Some(&public),
    );
    assert_eq!(run.code, 3, "{}", run.stderr);

    let run = s.run(&[
        "verify",
        pkg,
        "--json",
        "--trust",
        s.dir.path().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["name"], "demo-fix");
    assert_eq!(json["trusted_signers"][0], key_id(&public));
}

#[test]
fn verify_rejects_with_exit_3_and_one_exact_line() {
    let s = Scratch::new();
    let (key, public) = s.keygen("k");
    let (_, stranger) = s.keygen("stranger");
    let pkg_path = s.package("fix.lpkg", &key);
    let pkg = pkg_path.to_str().unwrap();
    let good = std::fs::read(&pkg_path).unwrap();
    let package = Package::from_bytes(&good).unwrap();
    let trust = public.to_str().unwrap();

    // Untrusted signer.
    let run = s.run(&["verify", pkg, "--trust", stranger.to_str().unwrap()]);
    assert_eq!(run.code, 3);
    assert_eq!(
        run.error_line(),
        format!("{pkg}: unknown signer {}", key_id(&public))
    );

    let cases: Vec<(Vec<u8>, String)> = vec![
        (
            {
                let mut b = good.clone();
                b[module_offset(&package)] ^= 1;
                b
            },
            "payload module.o: digest mismatch".into(),
        ),
        (
            good[..good.len() - 10].to_vec(),
            format!("truncated at byte {}", good.len() - 10),
        ),
        (
            {
                let mut b = good.clone();
                b[20] ^= 1; // inside the manifest
                b
            },
            format!("bad signature by {}", key_id(&public)),
        ),
        (
            {
                let mut b = good.clone();
                b[8] = 9;
                b
            },
            "unsupported format version 9".into(),
        ),
        (b"hello".to_vec(), "not an lpkg package (bad magic)".into()),
        (
            Package::new(package.manifest().clone(), payloads())
                .unwrap()
                .to_bytes(),
            "package is not signed".into(),
        ),
    ];
    for (bytes, expected) in cases {
        let bad = s.path("bad.lpkg");
        std::fs::write(&bad, bytes).unwrap();
        let run = s.run(&["verify", bad.to_str().unwrap(), "--trust", trust]);
        assert_eq!(run.code, 3, "{expected}: {}", run.stderr);
        assert_eq!(run.error_line(), format!("{}: {expected}", bad.display()));
        let run = s.run(&["verify", bad.to_str().unwrap(), "--trust", trust, "--json"]);
        assert_eq!(run.code, 3);
        assert_eq!(run.json()["ok"], false);
        assert!(run.json()["error"].as_str().unwrap().ends_with(&expected));
    }
}

#[test]
fn verify_without_usable_trust_store_is_an_operational_failure() {
    let s = Scratch::new();
    let (key, _) = s.keygen("k");
    let pkg = s.package("fix.lpkg", &key);
    let empty = s.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let run = s.run(&[
        "verify",
        pkg.to_str().unwrap(),
        "--trust",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.error_line(),
        format!("{}: no trusted keys (*.pub)", empty.display())
    );
    let run = s.run_env(&["verify", pkg.to_str().unwrap()], Some(&empty));
    assert_eq!(run.code, 1);
    let missing = s.path("missing.lpkg");
    let run = s.run(&[
        "verify",
        missing.to_str().unwrap(),
        "--trust",
        s.dir.path().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1);
    assert!(run
        .error_line()
        .starts_with(&format!("reading {}: ", missing.display())));
}

#[test]
fn inspect_json_shows_everything_and_the_verdict() {
    let s = Scratch::new();
    let (key, public) = s.keygen("k");
    let (_, stranger) = s.keygen("stranger");
    let pkg = s.package("fix.lpkg", &key);
    let pkg = pkg.to_str().unwrap();
    let run = s.run(&[
        "inspect",
        pkg,
        "--json",
        "--trust",
        public.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json = run.json();
    let package = Package::from_bytes(&std::fs::read(pkg).unwrap()).unwrap();
    let m = package.manifest();
    assert_eq!(json["name"], "demo-fix");
    assert_eq!(json["version"], "1.0.0");
    assert_eq!(json["id"], package.id());
    assert_eq!(json["target"]["build_id"], m.target.build_id);
    assert_eq!(json["target"]["sha256"], m.target.sha256);
    let functions = json["functions"].as_array().unwrap();
    assert_eq!(functions.len(), 2);
    assert_eq!(functions[0]["name"], "parse_header");
    assert_eq!(functions[0]["action"], "replace");
    assert_eq!(functions[0]["source"], "server.c:42");
    assert_eq!(functions[0]["old_offset"], 0x1139);
    assert_eq!(functions[1]["action"], "new");
    assert!(functions[1]["source"].is_null());
    assert_eq!(json["signatures"], serde_json::json!([key_id(&public)]));
    assert_eq!(json["verified"], true);

    // Untrusted: still shown, but flagged and exit 3.
    let run = s.run(&[
        "inspect",
        pkg,
        "--json",
        "--trust",
        stranger.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 3);
    let json = run.json();
    assert_eq!(json["verified"], false);
    assert_eq!(json["name"], "demo-fix");
    assert!(json["verification_error"]
        .as_str()
        .unwrap()
        .contains("unknown signer"));

    // Human form.
    let run = s.run(&["inspect", pkg, "--trust", public.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("verified     yes"), "{}", run.stdout);
    assert!(
        run.stdout.contains("replace  parse_header  [server.c:42]"),
        "{}",
        run.stdout
    );
}

#[test]
fn extract_writes_manifest_and_payloads_and_never_overwrites() {
    let s = Scratch::new();
    let (key, _) = s.keygen("k");
    let pkg = s.package("fix.lpkg", &key);
    let out = s.path("out");
    let run = s.run(&[
        "extract",
        pkg.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let package = Package::from_bytes(&std::fs::read(&pkg).unwrap()).unwrap();
    assert_eq!(
        std::fs::read(out.join("manifest.toml")).unwrap(),
        package.manifest_bytes()
    );
    for (name, bytes) in payloads() {
        assert_eq!(std::fs::read(out.join(&name)).unwrap(), bytes, "{name}");
    }
    let run = s.run(&[
        "extract",
        pkg.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.error_line(),
        format!(
            "{} already exists: nothing was extracted",
            out.join("manifest.toml").display()
        )
    );
    // A clash on a later file writes none of the others either.
    let other = s.path("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("symbols.toml"), "mine").unwrap();
    let run = s.run(&[
        "extract",
        pkg.to_str().unwrap(),
        "-o",
        other.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(other.join("symbols.toml")).unwrap(),
        "mine"
    );
}

#[test]
/// Every flag of the command-line contract parses (no usage error); each command then fails
/// on its missing inputs or on a process that does not exist.
fn contract_flags_parse_and_fail_cleanly_on_missing_inputs() {
    let s = Scratch::new();
    let cases: [&[&str]; 4] = [
        &[
            "build",
            "--target",
            "t",
            "--old",
            "o",
            "--new",
            "n",
            "--key",
            "k",
            "-o",
            "out",
            "--name",
            "n",
            "--version",
            "1",
            "--description",
            "d",
        ],
        &[
            "apply",
            "p.lpkg",
            "--pid",
            "2147483647",
            "--trust",
            "t",
            "--timeout",
            "5",
            "--json",
        ],
        &["list", "--pid", "2147483647", "--json"],
        &["revert", "--pid", "2147483647", "--all", "--json"],
    ];
    for args in cases {
        let run = s.run(args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert!(!run.error_line().is_empty());
    }
    let run = s.run(&["revert", "--pid", "2147483647", "--id", "ab"]);
    assert_eq!(run.code, 1);
    assert!(
        run.error_line().contains("2147483647"),
        "{}",
        run.error_line()
    );
}

#[test]
fn usage_errors_exit_2_and_help_lists_exit_codes() {
    let s = Scratch::new();
    assert_eq!(s.run(&["verify"]).code, 2);
    assert_eq!(s.run(&["frobnicate"]).code, 2);
    assert_eq!(
        s.run(&["revert", "--pid", "1", "--id", "x", "--all"]).code,
        2
    );
    let help = s.run(&["--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Exit codes:"));
    assert!(help.stdout.contains("3  package rejected"));
}

#[test]
fn a_closed_output_pipe_ends_quietly_without_a_panic() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let pkg = s.package("fix.lpkg", &key);
    // A reader that has already gone, as with `lpkg inspect PKG | head -0`.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lpkg"))
        .args(["inspect", pkg.to_str().unwrap(), "--trust"])
        .arg(&public)
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    const SIGPIPE: i32 = 13;
    assert_eq!(
        out.status.signal(),
        Some(SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
}

/// Issue 19 (2): a package or key path naming a device, a FIFO or a huge sparse file is refused
/// at once with a clear message, before anything is read (no hang, no unbounded read).
#[test]
fn package_and_key_paths_that_are_not_small_regular_files_are_refused_before_reading() {
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = s.package("fix", &key);
    let fifo = s.path("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let sparse = s.path("sparse.lpkg");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let (pkg, trust) = (package.to_str().unwrap(), public.to_str().unwrap());
    for (args, expected) in [
        (
            vec!["verify", "/dev/zero", "--trust", trust],
            "not a regular file",
        ),
        (
            vec!["verify", fifo.to_str().unwrap(), "--trust", trust],
            "not a regular file",
        ),
        (
            vec!["verify", sparse.to_str().unwrap(), "--trust", trust],
            "larger than any package",
        ),
        (vec!["inspect", "/dev/zero"], "not a regular file"),
        (
            vec!["verify", pkg, "--trust", "/dev/zero"],
            "not a regular file",
        ),
        (
            vec!["verify", pkg, "--trust", fifo.to_str().unwrap()],
            "not a regular file",
        ),
    ] {
        let started = std::time::Instant::now();
        let run = s.run(&args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.stderr);
        assert!(
            run.error_line().contains(expected),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{args:?} took long"
        );
    }
}

/// Issue 19 (11): a secret key others can read, and a trusted key or trust folder every user
/// can write, are refused with the fix in the message (as ssh refuses its keys).
#[test]
fn key_files_others_can_read_or_write_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let (key, public) = s.keygen("release");
    let package = s.package("fix.lpkg", &key);
    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let pkg = package.to_str().unwrap();
    chmod(&key, 0o644);
    let run = s.run(&["sign", pkg, "--key", key.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.error_line().contains("chmod 600"), "{}", run.stderr);
    chmod(&key, 0o600);
    chmod(&public, 0o666);
    let run = s.run(&["verify", pkg, "--trust", public.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.error_line().contains("writable by every user"),
        "{}",
        run.stderr
    );
    chmod(&public, 0o644);
    let folder = s.path("trusted");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(&public, folder.join("release.pub")).unwrap();
    chmod(&folder, 0o777);
    let run = s.run(&["verify", pkg, "--trust", folder.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.error_line().contains("writable by every user"),
        "{}",
        run.stderr
    );
    chmod(&folder, 0o755);
    assert_eq!(
        s.run(&["verify", pkg, "--trust", folder.to_str().unwrap()])
            .code,
        0
    );
}
