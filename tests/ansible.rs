//! The Ansible collection (`ansible/ansible_collections/lpkg/live`) and the rollout playbook,
//! run with `ansible-playbook` against localhost (`connection: local`), driving the lpkg built
//! here on real processes. Each test builds its own library and programs with a token of its
//! own in them, so an apply finds only this test's processes by build-id, and every task
//! narrows `--pid all` further to this test's command names (`comm`): nothing here touches a
//! process it did not start. `ansible-test sanity` runs on the collection as well.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{Program, Scratch};
use serde_json::{json, Value};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn gcc(args: &[&str]) {
    let out = Command::new("gcc").args(args).output().expect("run gcc");
    assert!(
        out.status.success(),
        "gcc {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One test's library (rate = x + 1), its fix (rate = 1000 x + 1), programs using it named
/// `<prefix><token>`, a package of the fix signed by a trusted key, and the same package signed
/// by a key nobody trusts.
struct Fleet {
    s: Scratch,
    token: String,
    package: PathBuf,
    untrusted: PathBuf,
    trust: PathBuf,
}

impl Fleet {
    fn build(programs: &[&str]) -> Fleet {
        let s = Scratch::new();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let token = format!("{:06x}", (nanos ^ std::process::id()) & 0xff_ffff);
        let src = repo().join("tests/targets/host");
        let path = |name: &str| s.path(name).to_str().unwrap().to_owned();
        let define = format!("-DTOKEN=\"{token}\"");
        for (object, rate) in [("rate-old.o", "1"), ("rate-new.o", "1000")] {
            gcc(&[
                "-O2",
                "-ffunction-sections",
                "-fdata-sections",
                "-fPIC",
                &define,
                &format!("-DRATE={rate}"),
                "-c",
                src.join("rate.c").to_str().unwrap(),
                "-o",
                &path(object),
            ]);
        }
        gcc(&["-shared", "-o", &path("librate.so"), &path("rate-old.o")]);
        gcc(&[
            "-O2",
            src.join("user.c").to_str().unwrap(),
            "-o",
            &path("user"),
            "-L",
            s.dir.path().to_str().unwrap(),
            "-lrate",
            &format!("-Wl,-rpath,{}", s.dir.path().display()),
        ]);
        for program in programs {
            std::fs::copy(s.path("user"), s.path(&format!("{program}{token}"))).unwrap();
        }
        let (key, trust) = s.keygen("release");
        let (stranger, _) = s.keygen("stranger");
        let build = |key: &Path, out: &str| {
            s.build(
                &s.path("librate.so"),
                &s.path("rate-old.o"),
                &s.path("rate-new.o"),
                key,
                out,
                ("rate-fix", "1"),
                &[],
            )
        };
        let package = build(&key, "rate.lpkg");
        let untrusted = build(&stranger, "rate-untrusted.lpkg");
        Fleet {
            s,
            token,
            package,
            untrusted,
            trust,
        }
    }

    /// Starts `program` and waits for its first answer: by then the loader has mapped
    /// librate.so, so a task that follows finds it.
    fn start(&self, program: &str) -> Target {
        let mut target = Program::start(&mut Command::new(
            self.s.path(&format!("{program}{}", self.token)),
        ));
        target.ask("0");
        Target(target)
    }

    /// The `comm` regular expression matching this test's program `program` only.
    fn comm(&self, program: &str) -> String {
        format!("^{program}{}$", self.token)
    }

    fn path(&self, name: &str) -> String {
        self.s.path(name).to_str().unwrap().to_owned()
    }

    /// Runs `ansible-playbook` on `playbook` (a file of the scratch folder or the repository)
    /// with `args`; returns (success, stdout).
    fn playbook(&self, playbook: &Path, args: &[&str]) -> (bool, String) {
        let out = Command::new("ansible-playbook")
            .arg(playbook)
            .args(args)
            .current_dir(self.s.dir.path())
            .env("ANSIBLE_COLLECTIONS_PATH", repo().join("ansible"))
            .env("ANSIBLE_LOCAL_TEMP", self.s.path("ansible-tmp"))
            .env("ANSIBLE_REMOTE_TMP", self.s.path("ansible-tmp"))
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
            .env_remove("LPKG_TRUST")
            .env_remove("LPKG_STORE")
            .output()
            .expect("run ansible-playbook (scripts/install-deps.sh installs ansible-core)");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        (out.status.success(), format!("{stdout}\n{stderr}"))
    }

    /// Runs one task of module `module` with `args` (lpkg's path added) on localhost, in check
    /// mode if `check`, and returns what the task registered (`failed` and `msg` if it failed).
    fn task(&self, module: &str, args: Value, check: bool) -> Value {
        let mut args = args;
        args["lpkg"] = env!("CARGO_BIN_EXE_lpkg").into();
        let out = self.s.path("result.json");
        let _ = std::fs::remove_file(&out);
        // JSON is YAML: the playbook is written as JSON.
        let play = json!([{
            "hosts": "localhost",
            "connection": "local",
            "gather_facts": false,
            "tasks": [
                {module: args, "register": "result", "ignore_errors": true},
                {"ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": out},
                 "check_mode": false},
            ],
        }]);
        let playbook = self.s.path("task.yml");
        std::fs::write(&playbook, play.to_string()).unwrap();
        let mut flags = vec!["-i", "localhost,"];
        if check {
            flags.push("--check");
        }
        let (success, output) = self.playbook(&playbook, &flags);
        assert!(success, "ansible-playbook failed:\n{output}");
        let text = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}:\n{output}"));
        serde_json::from_str(&text).unwrap()
    }
}

/// A running program answering rate(N) for each N it reads; killed (by its PID) when dropped.
struct Target(Program);

impl Target {
    fn pid(&self) -> i64 {
        i64::from(self.0.child.id())
    }

    /// rate(2) as the process computes it now: "3" before the fix, "2001" with it.
    fn rate2(&mut self) -> String {
        self.0.ask("2")
    }
}

/// The pids of `result["processes"]` whose `result` is `outcome`, sorted.
fn pids_with(result: &Value, outcome: &str) -> Vec<i64> {
    let mut pids: Vec<i64> = result["processes"]
        .as_array()
        .unwrap_or_else(|| panic!("no processes: {result}"))
        .iter()
        .filter(|p| p["result"] == outcome)
        .map(|p| p["pid"].as_i64().unwrap())
        .collect();
    pids.sort_unstable();
    pids
}

fn succeeded(result: &Value) -> &Value {
    assert_ne!(result["failed"], true, "task failed: {result}");
    result
}

#[test]
fn package_module_applies_reverts_and_is_idempotent() {
    let fleet = Fleet::build(&["ap", "aq"]);
    let mut copies: Vec<Target> = (0..3).map(|_| fleet.start("ap")).collect();
    let mut other = fleet.start("aq");
    let mut pids: Vec<i64> = copies.iter().map(Target::pid).collect();
    pids.sort_unstable();
    let package = fleet.package.to_str().unwrap();
    let trust = fleet.trust.to_str().unwrap();
    let apply =
        json!({"src": package, "state": "applied", "comm": fleet.comm("ap"), "trust": trust});

    // Check mode: every copy would get it, none does.
    let dry = fleet.task("lpkg.live.package", apply.clone(), true);
    assert_eq!(succeeded(&dry)["changed"], true);
    assert_eq!(pids_with(&dry, "would apply"), pids);
    assert_eq!(copies[0].rate2(), "3");

    // Applied to every copy, and to nothing else.
    let applied = fleet.task("lpkg.live.package", apply.clone(), false);
    assert_eq!(succeeded(&applied)["changed"], true);
    assert_eq!(pids_with(&applied, "applied"), pids);
    assert_eq!(applied["name"], "rate-fix");
    for copy in &mut copies {
        assert_eq!(copy.rate2(), "2001");
    }
    assert_eq!(other.rate2(), "3");

    // The same task again changes nothing, in check mode or not.
    let again = fleet.task("lpkg.live.package", apply.clone(), false);
    assert_eq!(succeeded(&again)["changed"], false);
    assert_eq!(pids_with(&again, "already applied"), pids);
    let again = fleet.task("lpkg.live.package", apply.clone(), true);
    assert_eq!(succeeded(&again)["changed"], false);

    // One process by pid: check mode says it would, the task does, a second run does not.
    let one = json!({"src": package, "pid": other.pid().to_string(), "trust": trust});
    let would = fleet.task("lpkg.live.package", one.clone(), true);
    assert_eq!(
        pids_with(succeeded(&would), "would apply"),
        vec![other.pid()]
    );
    assert_eq!(other.rate2(), "3");
    let done = fleet.task("lpkg.live.package", one.clone(), false);
    assert_eq!(pids_with(succeeded(&done), "applied"), vec![other.pid()]);
    assert_eq!(other.rate2(), "2001");
    let again = fleet.task("lpkg.live.package", one, false);
    assert_eq!(succeeded(&again)["changed"], false);

    // Reverted: check mode first (nothing changes), then for real, then again (unchanged).
    let revert = json!({"src": package, "state": "reverted", "comm": fleet.comm("ap")});
    let would = fleet.task("lpkg.live.package", revert.clone(), true);
    assert_eq!(pids_with(succeeded(&would), "would revert"), pids);
    assert_eq!(copies[1].rate2(), "2001");
    let reverted = fleet.task("lpkg.live.package", revert.clone(), false);
    assert_eq!(succeeded(&reverted)["changed"], true);
    assert_eq!(pids_with(&reverted, "reverted"), pids);
    for copy in &mut copies {
        assert_eq!(copy.rate2(), "3");
    }
    assert_eq!(other.rate2(), "2001", "a process outside comm was reverted");
    let again = fleet.task("lpkg.live.package", revert, false);
    assert_eq!(succeeded(&again)["changed"], false);
    let by_pid = json!({"id": applied["id"], "state": "reverted", "pid": other.pid().to_string()});
    let reverted = fleet.task("lpkg.live.package", by_pid, false);
    assert_eq!(
        pids_with(succeeded(&reverted), "reverted"),
        vec![other.pid()]
    );
    assert_eq!(other.rate2(), "3");
}

#[test]
fn package_module_refuses_an_untrusted_package_with_lpkgs_message() {
    let fleet = Fleet::build(&["up"]);
    let mut target = fleet.start("up");
    let trust = fleet.trust.to_str().unwrap();
    for (state, check) in [("applied", false), ("applied", true), ("installed", false)] {
        let args = json!({
            "src": fleet.untrusted, "state": state, "comm": fleet.comm("up"), "trust": trust,
            "store": fleet.path("store"),
        });
        let args = if state == "installed" {
            json!({"src": args["src"], "state": state, "trust": trust, "store": args["store"]})
        } else {
            args
        };
        let result = fleet.task("lpkg.live.package", args, check);
        assert_eq!(result["failed"], true, "{state} check={check}: {result}");
        let msg = result["msg"].as_str().unwrap();
        assert!(msg.contains("unknown signer"), "{msg}");
    }
    assert_eq!(target.rate2(), "3");
    assert!(!fleet.s.path("store").exists());
}

/// A second fix of the library (rate = 7 x + 1) stacked on the first one: it refuses a process
/// that lacks the first.
fn stacked_package(fleet: &Fleet) -> PathBuf {
    let object = fleet.path("rate-next.o");
    gcc(&[
        "-O2",
        "-ffunction-sections",
        "-fdata-sections",
        "-fPIC",
        &format!("-DTOKEN=\"{}\"", fleet.token),
        "-DRATE=7",
        "-c",
        repo().join("tests/targets/host/rate.c").to_str().unwrap(),
        "-o",
        &object,
    ]);
    fleet.s.build(
        &fleet.s.path("librate.so"),
        &fleet.s.path("rate-new.o"),
        Path::new(&object),
        &fleet.s.path("release.key"),
        "rate-next.lpkg",
        ("rate-next", "2"),
        &[&fleet.package],
    )
}

#[test]
fn package_module_fails_listing_the_processes_left_unpatched() {
    let fleet = Fleet::build(&["fp"]);
    let mut fixed = fleet.start("fp");
    let mut unfixed = fleet.start("fp");
    let trust = fleet.trust.to_str().unwrap();
    let first = json!({"src": fleet.package, "pid": fixed.pid().to_string(), "trust": trust});
    succeeded(&fleet.task("lpkg.live.package", first, false));
    let next = stacked_package(&fleet);

    // One process takes the stacked fix, the other refuses it: the task fails, naming it.
    let apply = json!({"src": next, "comm": fleet.comm("fp"), "trust": trust});
    let result = fleet.task("lpkg.live.package", apply, false);
    assert_eq!(result["failed"], true, "{result}");
    assert_eq!(result["changed"], true, "{result}");
    assert_eq!(pids_with(&result, "applied"), vec![fixed.pid()]);
    assert_eq!(pids_with(&result, "refused"), vec![unfixed.pid()]);
    let unpatched = result["unpatched"].as_array().unwrap();
    assert_eq!(unpatched.len(), 1, "{result}");
    assert_eq!(unpatched[0]["pid"], unfixed.pid());
    let msg = result["msg"].as_str().unwrap();
    assert!(
        msg.contains("1 of 2 matching process(es) do not have the package"),
        "{msg}"
    );
    assert!(msg.contains(&format!("{} fp", unfixed.pid())), "{msg}");
    assert!(msg.contains("requires rate-fix"), "{msg}");
    assert_eq!(
        (fixed.rate2(), unfixed.rate2()),
        ("15".to_owned(), "3".to_owned())
    );

    // The same by pid.
    let apply = json!({"src": next, "pid": unfixed.pid().to_string(), "trust": trust});
    let result = fleet.task("lpkg.live.package", apply, false);
    assert_eq!(result["failed"], true, "{result}");
    assert_eq!(pids_with(&result, "refused"), vec![unfixed.pid()]);
    assert!(
        result["msg"]
            .as_str()
            .unwrap()
            .contains("requires rate-fix"),
        "{result}"
    );
    assert_eq!(unfixed.rate2(), "3");
}

#[test]
fn package_module_installs_and_removes_and_status_reports() {
    let fleet = Fleet::build(&["sp"]);
    let mut target = fleet.start("sp");
    let package = fleet.package.to_str().unwrap();
    let trust = fleet.trust.to_str().unwrap();
    let store = fleet.path("store");
    let install = json!({"src": package, "state": "installed", "trust": trust, "store": store});
    let would = fleet.task("lpkg.live.package", install.clone(), true);
    assert_eq!(succeeded(&would)["changed"], true);
    assert!(!Path::new(&store).exists());
    let installed = fleet.task("lpkg.live.package", install.clone(), false);
    assert_eq!(succeeded(&installed)["changed"], true);
    let id = installed["id"].as_str().unwrap().to_owned();
    assert!(Path::new(&store).join(format!("{id}.lpkg")).exists());
    let again = fleet.task("lpkg.live.package", install, false);
    assert_eq!(succeeded(&again)["changed"], false);

    // Installed, not applied: status says the process is exposed, and does not fail.
    let status_args = json!({"store": store, "trust": trust, "comm": fleet.comm("sp")});
    let status = fleet.task("lpkg.live.status", status_args.clone(), false);
    assert_eq!(succeeded(&status)["exposed"], true);
    let facts = &status["ansible_facts"]["lpkg_status"];
    let processes = facts["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 1, "{facts}");
    assert_eq!(processes[0]["pid"], target.pid());
    assert_eq!(target.rate2(), "3");

    let apply = json!({"src": package, "comm": fleet.comm("sp"), "trust": trust});
    succeeded(&fleet.task("lpkg.live.package", apply, false));
    let status = fleet.task("lpkg.live.status", status_args.clone(), false);
    assert_eq!(succeeded(&status)["exposed"], false, "{status}");
    assert_eq!(status["ansible_facts"]["lpkg_status_exposed"], false);

    // Absent: out of the store and out of the process; check mode first.
    let absent =
        json!({"src": package, "state": "absent", "comm": fleet.comm("sp"), "store": store});
    let would = fleet.task("lpkg.live.package", absent.clone(), true);
    assert_eq!(succeeded(&would)["changed"], true);
    assert_eq!(target.rate2(), "2001");
    assert!(Path::new(&store).join(format!("{id}.lpkg")).exists());
    let removed = fleet.task("lpkg.live.package", absent.clone(), false);
    assert_eq!(succeeded(&removed)["changed"], true);
    assert_eq!(pids_with(&removed, "reverted"), vec![target.pid()]);
    assert!(!Path::new(&store).join(format!("{id}.lpkg")).exists());
    assert_eq!(target.rate2(), "3");
    let again = fleet.task("lpkg.live.package", absent, false);
    assert_eq!(succeeded(&again)["changed"], false);
}

/// An HTTP server on a free local port that answers 200 to everything, for a health URL:
/// (its URL, how many requests it answered). It ends with the test process.
fn healthy_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let answered = count.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
            answered.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, count)
}

#[test]
fn rollout_reverts_the_host_whose_health_check_fails_and_stops() {
    let fleet = Fleet::build(&["rg", "rb", "rn"]);
    let mut good = fleet.start("rg");
    let mut bad = fleet.start("rb");
    let mut never = fleet.start("rn");
    // Three "hosts", all this machine, each patching its own program with its own store: the
    // first one's health check is a URL that answers 200, the second one's a command that
    // fails. One host per batch (in the order of their names: the inventory's keys are
    // sorted), no failure allowed: the third is never reached.
    let (url, health_requests) = healthy_server();
    let host = |program: &str, check: &str, health: &str| {
        json!({
            "ansible_connection": "local",
            "lpkg_comm": fleet.comm(program),
            "lpkg_store": fleet.path(&format!("store-{program}")),
            "lpkg_remote_dir": fleet.path(&format!("remote-{program}")),
            check: health,
        })
    };
    let inventory = json!({"all": {
        "hosts": {
            "h1-good": host("rg", "lpkg_health_url", &url),
            "h2-bad": host("rb", "lpkg_health_command", "echo unhealthy >&2; exit 1"),
            "h3-never": host("rn", "lpkg_health_command", "true"),
        },
        "vars": {
            "lpkg_trust": fleet.trust,
            "lpkg_bin": env!("CARGO_BIN_EXE_lpkg"),
            "lpkg_health_retries": 1,
            "lpkg_health_delay": 0,
        },
    }});
    let inventory_path = fleet.s.path("inventory.yml");
    std::fs::write(&inventory_path, inventory.to_string()).unwrap();
    let package = format!("lpkg_package={}", fleet.package.display());
    let (success, output) = fleet.playbook(
        &repo().join("ansible/playbooks/rollout.yml"),
        &[
            "-i",
            inventory_path.to_str().unwrap(),
            "-e",
            &package,
            "-e",
            "lpkg_serial=1",
        ],
    );
    assert!(!success, "the rollout should fail:\n{output}");
    assert_eq!(health_requests.load(Ordering::SeqCst), 1, "{output}");
    assert_eq!(good.rate2(), "2001", "{output}");
    assert_eq!(
        bad.rate2(),
        "3",
        "the failing host was not reverted:\n{output}"
    );
    assert_eq!(
        never.rate2(),
        "3",
        "the rollout went on after a failure:\n{output}"
    );
    let stored = |program: &str| {
        std::fs::read_dir(fleet.s.path(&format!("store-{program}")))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!((stored("rg"), stored("rb"), stored("rn")), (1, 0, 0));
    assert!(
        output.contains("lpkg rollout h1-good: applied to 1 process(es)"),
        "{output}"
    );
    assert!(
        output.contains("lpkg rollout h2-bad: REVERTED from 1 process(es)"),
        "{output}"
    );
}

/// The sanity tests that need a virtual environment with packages from the network (pip is
/// bootstrapped from outside any package registry): skipped by ansible-test. Of them, `pep8`,
/// `yamllint`, `validate-modules` and `runtime-metadata` run below as ansible-test runs them,
/// with Debian's pycodestyle, yamllint and voluptuous, and `ansible-doc` with the installed
/// ansible-doc; `import` and `pylint` do not run (the integration tests import the modules).
const SANITY_NEEDING_NETWORK: &[&str] = &[
    "ansible-doc",
    "import",
    "pep8",
    "pylint",
    "runtime-metadata",
    "validate-modules",
    "yamllint",
];

/// Debian's Python, which ansible-core, pycodestyle and yamllint are installed for.
const PYTHON: &str = "/usr/bin/python3";

/// ansible-test's `pep8`, `yamllint`, `validate-modules` and `runtime-metadata` sanity tests,
/// with its own settings and tools, run with Debian's packages instead of a virtual environment.
fn pep8_yamllint_validate_modules(collection: &Path) {
    let out = Command::new(PYTHON)
        .args([
            "-c",
            "import ansible_test, os; print(os.path.dirname(ansible_test.__file__))",
        ])
        .output()
        .unwrap();
    let sanity =
        Path::new(String::from_utf8(out.stdout).unwrap().trim()).join("_util/controller/sanity");
    let ignore = std::fs::read_to_string(sanity.join("pep8/current-ignore.txt")).unwrap();
    let ignore: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let python_files = [
        "plugins/modules/package.py",
        "plugins/modules/status.py",
        "plugins/module_utils/lpkg.py",
    ];
    let ignore = ignore.join(",");
    let mut pep8 = vec![
        "-m",
        "pycodestyle",
        "--max-line-length",
        "160",
        "--config",
        "/dev/null",
        "--ignore",
        &ignore,
    ];
    pep8.extend(python_files);
    let out = Command::new(PYTHON)
        .args(&pep8)
        .current_dir(collection)
        .output()
        .expect("run pycodestyle");
    assert!(
        out.status.success(),
        "pep8: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let linter = sanity.join("yamllint/yamllinter.py");
    let mut yaml = vec![linter.to_str().unwrap(), "galaxy.yml", "meta/runtime.yml"];
    yaml.extend(python_files);
    let playbook = repo().join("ansible/playbooks/rollout.yml");
    yaml.push(playbook.to_str().unwrap());
    let out = Command::new(PYTHON)
        .args(&yaml)
        .current_dir(collection)
        .output()
        .expect("run yamllinter");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("yamllint: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["messages"], json!([]), "yamllint");

    // runtime-metadata: meta/runtime.yml against its schema; it prints what is wrong.
    let checker = sanity.join("code-smell/runtime-metadata.py");
    let out = Command::new(PYTHON)
        .args([checker.to_str().unwrap(), "meta/runtime.yml"])
        .current_dir(collection)
        .output()
        .expect("run runtime-metadata");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "runtime-metadata: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // validate-modules: DOCUMENTATION, EXAMPLES and RETURN against the argument spec.
    let validate = sanity.join("validate-modules/validate.py");
    let modules = ["plugins/modules/package.py", "plugins/modules/status.py"];
    let mut args = vec![validate.to_str().unwrap(), "--format", "json", "--arg-spec"];
    args.extend(modules);
    args.extend([
        "--collection",
        "ansible_collections/lpkg/live",
        "--collection-version",
        "0.1.0",
    ]);
    let out = Command::new(PYTHON)
        .args(&args)
        .current_dir(collection)
        .env("ANSIBLE_COLLECTIONS_PATH", repo().join("ansible"))
        .output()
        .expect("run validate-modules");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "validate-modules: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // What the collection's ignore file allows (its GPLv3 check: lpkg is MIT OR Apache-2.0).
    let ignored = std::fs::read_to_string(collection.join("tests/sanity/ignore-2.14.txt")).unwrap();
    for module in modules {
        for error in report[module]["errors"].as_array().into_iter().flatten() {
            let entry = format!(
                "{module} validate-modules:{}",
                error["code"].as_str().unwrap()
            );
            assert!(
                ignored.lines().any(|l| l.starts_with(&format!("{entry} "))),
                "validate-modules {module}: {error}"
            );
        }
    }
}

#[test]
fn collection_passes_ansible_test_sanity_and_its_docs_parse() {
    let collection = repo().join("ansible/ansible_collections/lpkg/live");
    let python = Command::new(PYTHON)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("run python3");
    let python = String::from_utf8(python.stdout).unwrap();
    let mut args = vec!["sanity", "--python", python.trim()];
    for test in SANITY_NEEDING_NETWORK {
        args.extend(["--skip-test", test]);
    }
    let out = Command::new("ansible-test")
        .args(&args)
        .current_dir(&collection)
        .output()
        .expect("run ansible-test (scripts/install-deps.sh installs ansible-core)");
    assert!(
        out.status.success(),
        "ansible-test sanity:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    pep8_yamllint_validate_modules(&collection);
    for module in ["lpkg.live.package", "lpkg.live.status"] {
        let out = Command::new("ansible-doc")
            .args(["--json", module])
            .env("ANSIBLE_COLLECTIONS_PATH", repo().join("ansible"))
            .output()
            .expect("run ansible-doc");
        assert!(
            out.status.success(),
            "ansible-doc {module}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let docs: Value = serde_json::from_slice(&out.stdout).unwrap();
        let doc = &docs[module];
        assert!(doc["doc"]["options"].is_object(), "{module}: {doc}");
        assert!(doc["return"].is_object(), "{module}: no RETURN");
        // EXAMPLES must be YAML that parses to a list of tasks.
        let examples = doc["examples"].as_str().unwrap();
        let parsed = Command::new(PYTHON)
            .args([
                "-c",
                "import sys, yaml; t = yaml.safe_load(sys.argv[1]); assert isinstance(t, list) and t",
                examples,
            ])
            .output()
            .unwrap();
        assert!(
            parsed.status.success(),
            "{module} EXAMPLES: {}",
            String::from_utf8_lossy(&parsed.stderr)
        );
    }
}

/// Purges lpkg's Debian package when dropped, so that a failing test leaves nothing installed.
struct DebInstalled;

impl Drop for DebInstalled {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "lpkg"]).output();
    }
}

#[test]
fn rollout_installs_lpkg_from_its_deb_first() {
    // Held while the .deb is installed: tests/deb.rs, or this test in another work tree, would
    // install and remove the same package.
    let lock = std::fs::File::create("/run/lock/lpkg-tests-deb.lock").unwrap();
    lock.lock().unwrap();
    let known = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "lpkg"])
        .output()
        .unwrap();
    if String::from_utf8_lossy(&known.stdout).contains("installed")
        || Path::new("/usr/bin/lpkg").exists()
    {
        eprintln!("skipped: lpkg is installed on this machine already; not touching it");
        return;
    }
    let fleet = Fleet::build(&["dp"]);
    let mut target = fleet.start("dp");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_lpkg")).parent().unwrap();
    let built = Command::new(repo().join("scripts/build-deb.sh"))
        .args([
            "-o",
            &fleet.path("deb"),
            "--bin-dir",
            bin_dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = String::from_utf8(built.stdout).unwrap().trim().to_owned();
    // No lpkg_bin: the modules run the lpkg the .deb put in /usr/bin.
    let inventory = json!({"all": {"hosts": {"h1": {
        "ansible_connection": "local",
        "lpkg_comm": fleet.comm("dp"),
        "lpkg_store": fleet.path("store"),
        "lpkg_remote_dir": fleet.path("remote"),
        "lpkg_trust": fleet.trust,
        "lpkg_health_command": "true",
    }}}});
    let inventory_path = fleet.s.path("inventory.yml");
    std::fs::write(&inventory_path, inventory.to_string()).unwrap();
    let _installed = DebInstalled;
    let (success, output) = fleet.playbook(
        &repo().join("ansible/playbooks/rollout.yml"),
        &[
            "-i",
            inventory_path.to_str().unwrap(),
            "-e",
            &format!("lpkg_package={}", fleet.package.display()),
            "-e",
            &format!("lpkg_deb={deb}"),
        ],
    );
    assert!(success, "{output}");
    assert!(Path::new("/usr/bin/lpkg").exists(), "{output}");
    assert_eq!(target.rate2(), "2001", "{output}");
    assert!(
        output.contains("\"h1: applied to 1 process(es)"),
        "no summary of every host:\n{output}"
    );
}
