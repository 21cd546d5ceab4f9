#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lpkg developers
# MIT OR Apache-2.0

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: package
short_description: Install, apply, revert or remove a signed lpkg live patch
version_added: "0.1.0"
description:
  - Drives the C(lpkg) binary on the managed host through its C(--json) output to put a signed
    live-patch package (C(.lpkg)) in the host's store, apply it to running processes, revert it
    from them, or take it off the host.
  - Idempotent; a second run with the same arguments reports C(changed=false).
  - In check mode it reports what would change (C(lpkg apply --dry-run), C(lpkg list)) and
    changes nothing; the package is still verified against the trust store.
  - A package that does not verify fails the task with lpkg's own message, and so does any
    process left unpatched or unreverted (listed in C(unpatched)).
author:
  - lpkg developers (@lpkg)
options:
  src:
    description:
      - Path of the package file on the managed host.
      - Required for I(state=installed) and I(state=applied); for I(state=reverted) and
        I(state=absent) give I(src) or I(id).
    type: path
  id:
    description:
      - The package id (or a unique prefix of it), instead of I(src), for I(state=reverted) and
        I(state=absent).
    type: str
  state:
    description:
      - C(installed) verifies the package and keeps it in the store (C(lpkg install)), where
        C(lpkg status) and C(lpkg daemon) find it; running processes are not touched.
      - C(applied) applies it to the running processes chosen by I(pid) (C(lpkg apply)); the
        store is not touched.
      - C(reverted) takes it out of the processes chosen by I(pid) that have it (C(lpkg revert));
        the store is not touched.
      - C(absent) removes it from the store (C(lpkg uninstall)), so that a running daemon does not
        apply it again, then reverts it as C(reverted) does.
    type: str
    choices: [installed, applied, reverted, absent]
    default: applied
  pid:
    description:
      - C(all) (every process that maps the package's target object, found by build-id, for
        C(applied); every process that holds it, for C(reverted) and C(absent)), or one process id.
    type: str
    default: all
  comm:
    description:
      - With I(pid=all), only processes whose command name (as C(ps -o comm) shows it) matches
        this regular expression (C(lpkg --comm)).
    type: str
  exclude_pid:
    description:
      - With I(pid=all), processes to leave alone (C(lpkg --exclude-pid)).
    type: list
    elements: int
    default: []
  trust:
    description:
      - Trusted public key (C(.pub)) or folder of them.
      - Default C($LPKG_TRUST), then C(/etc/lpkg/trusted/).
    type: path
  store:
    description:
      - The package store folder. Default C($LPKG_STORE), then C(/var/lib/lpkg).
    type: path
  timeout:
    description:
      - Seconds lpkg may wait for a process's threads to leave the functions being replaced
        (or restored) before it gives up on that process and leaves it unchanged.
    type: int
  lpkg:
    description:
      - Path of the lpkg binary. Default C(lpkg) from C(PATH).
    type: path
notes:
  - lpkg needs root (or C(CAP_SYS_PTRACE)) to patch other users' processes; use C(become).
seealso:
  - module: lpkg.live.status
"""

EXAMPLES = r"""
- name: Keep the fix in the store (the lpkg daemon applies it to processes as they start)
  lpkg.live.package:
    src: /var/tmp/libfoo-fix.lpkg
    state: installed

- name: Apply it to every running process that maps libfoo
  lpkg.live.package:
    src: /var/tmp/libfoo-fix.lpkg
    state: applied
  register: applied

- name: Apply it to the workers of one service only, with a longer wait for busy threads
  lpkg.live.package:
    src: /var/tmp/libfoo-fix.lpkg
    comm: "^worker$"
    timeout: 30

- name: Take it out of the processes again
  lpkg.live.package:
    src: /var/tmp/libfoo-fix.lpkg
    state: reverted

- name: Take it off the host entirely (store and processes)
  lpkg.live.package:
    id: 3f1c2b9a
    state: absent
"""

RETURN = r"""
changed:
  description: Whether the store or any process was (or, in check mode, would be) changed.
  returned: always
  type: bool
id:
  description: The package id.
  returned: always
  type: str
  sample: 3f1c2b9a0e6d4c1f8a7b5e2d9c0f1a3b4c5d6e7f8091a2b3c4d5e6f708192a3b
name:
  description: The package name (when I(src) is given).
  returned: when src is given
  type: str
  sample: libfoo-fix
version:
  description: The package version (when I(src) is given).
  returned: when src is given
  type: str
  sample: 1.0.1
processes:
  description:
    - One entry per process acted on (or, in check mode, that would be).
    - For I(pid=all) and C(reverted)/C(absent), processes that do not hold the package are left out.
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: The process id.
      type: int
    command:
      description: The process's command name.
      type: str
    result:
      description:
        - C(applied), C(already applied), C(would apply), C(reverted), C(would revert),
          C(nothing to revert), C(refused) (the package does not fit the process),
          C(failed), or C(gone) (the process exited).
      type: str
    error:
      description: Why the process was refused or failed.
      type: str
      returned: when refused or failed
  sample: [{"pid": 4242, "command": "nginx", "result": "applied"}]
unpatched:
  description: The processes left without the change (refused or failed), when the task fails.
  returned: failure
  type: list
  elements: dict
installed:
  description: Whether the package is in the store after the task (for C(installed) and C(absent)).
  returned: when state is installed or absent
  type: bool
summary:
  description: lpkg's counts for I(pid=all) (C(applied), C(already), C(would_apply), C(refused),
    C(failed), C(gone); or C(reverted), C(nothing), C(failed), C(gone)).
  returned: when pid is all and state is applied, reverted or absent
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lpkg.live.plugins.module_utils.lpkg import MISMATCH, REJECTED, Lpkg

# Results of a process that does not have what the task asked for.
UNDONE = ("refused", "failed")


def entry(process):
    """A process as the module returns it."""
    value = dict(pid=process["pid"], command=process["command"], result=process["result"])
    if process.get("error"):
        value["error"] = process["error"]
    return value


def command_of(pid):
    try:
        with open("/proc/%d/comm" % pid) as comm:
            return comm.read().rstrip("\n")
    except (IOError, OSError):
        return ""


def fail_undone(lpkg, msg, result):
    undone = [p for p in result["processes"] if p["result"] in UNDONE]
    details = "; ".join("%d %s: %s" % (p["pid"], p["command"], p.get("error", p["result"])) for p in undone)
    lpkg.fail("%s: %s" % (msg, details) if details else msg, unpatched=undone, **result)


def package_meta(lpkg, src):
    """id, name and version of the package file (read, not verified: lpkg verifies it where it matters)."""
    rc, data, msg = lpkg.run(["inspect", src, "--json"] + lpkg.trust_args())
    if not isinstance(data, dict) or "id" not in data:
        lpkg.fail("reading %s: %s" % (src, msg))
    return dict(id=data["id"], name=data["name"], version=data["version"])


def verify(lpkg, src):
    rc, data, msg = lpkg.run(["verify", src] + lpkg.trust_args())
    if rc != 0:
        lpkg.fail(msg)


def records(lpkg, pid):
    """The lpkg records of one process (`lpkg list --pid PID --json`)."""
    rc, data, msg = lpkg.run(["list", "--pid", str(pid), "--json"])
    if rc != 0 or not isinstance(data, list):
        lpkg.fail(msg)
    return data


def timeout_args(lpkg):
    timeout = lpkg.module.params["timeout"]
    return ["--timeout", str(timeout)] if timeout is not None else []


def stored_ids(lpkg, ident):
    """Ids of the store's package files (<store>/<id>.lpkg, spec/host.md) that start with ident."""
    try:
        names = os.listdir(lpkg.store_dir())
    except (IOError, OSError):
        return []
    return [n[:-len(".lpkg")] for n in names if n.endswith(".lpkg") and not n.startswith(".") and n.startswith(ident)]


def installed(lpkg, src, check):
    meta = package_meta(lpkg, src)
    if check:
        verify(lpkg, src)
        present = bool(stored_ids(lpkg, meta["id"]))
        return dict(meta, changed=not present, installed=True, processes=[])
    rc, data, msg = lpkg.run(["install", src, "--json"] + lpkg.trust_args() + lpkg.store_args())
    if rc != 0 or not isinstance(data, dict):
        lpkg.fail(msg, **meta)
    return dict(meta, changed=bool(data["installed"]), installed=True, processes=[])


def applied_all(lpkg, src, check):
    args = ["apply", src, "--pid", "all", "--json"] + lpkg.trust_args() + timeout_args(lpkg)
    args += lpkg.selection_args() + (["--dry-run"] if check else [])
    rc, data, msg = lpkg.run(args)
    if not isinstance(data, dict):
        lpkg.fail(msg)
    summary = data["summary"]
    result = dict(
        changed=summary["applied"] + summary["would_apply"] > 0,
        id=data["id"], name=data["name"], version=data["version"],
        processes=[entry(p) for p in data["processes"]], summary=summary,
    )
    if rc != 0:
        fail_undone(lpkg, msg, result)
    return result


def applied_one(lpkg, src, pid, check):
    meta = package_meta(lpkg, src)
    process = dict(pid=pid, command=command_of(pid))
    live = [r for r in records(lpkg, pid) if r.get("id") == meta["id"] and r.get("state") == "applied" and r.get("live") != "drifted"]
    if live:
        return dict(meta, changed=False, processes=[dict(process, result="already applied")])
    if check:
        verify(lpkg, src)
        return dict(meta, changed=True, processes=[dict(process, result="would apply")])
    args = ["apply", src, "--pid", str(pid), "--json"] + lpkg.trust_args() + timeout_args(lpkg)
    rc, data, msg = lpkg.run(args)
    if rc == 0:
        return dict(meta, changed=True, processes=[dict(process, result="applied")])
    if rc == REJECTED:  # the package itself: no process is at fault
        lpkg.fail(msg, **meta)
    result = dict(meta, changed=False, processes=[dict(process, result="refused" if rc == MISMATCH else "failed", error=msg)])
    fail_undone(lpkg, "process %d does not have the package" % pid, result)


def reverted_all(lpkg, ident, check):
    if check:
        rc, data, msg = lpkg.run(["list", "--pid", "all", "--json"] + lpkg.selection_args())
        if not isinstance(data, list):
            lpkg.fail(msg)
        holding = [p for p in data if any(r.get("id", "").startswith(ident) for r in p.get("packages") or [])]
        processes = [dict(pid=p["pid"], command=p["command"], result="would revert") for p in holding]
        return dict(changed=bool(processes), processes=processes)
    args = ["revert", "--pid", "all", "--id", ident, "--json"] + timeout_args(lpkg) + lpkg.selection_args()
    rc, data, msg = lpkg.run(args)
    if not isinstance(data, dict):
        lpkg.fail(msg)
    processes = [entry(p) for p in data["processes"] if p["result"] != "nothing to revert"]
    result = dict(changed=data["summary"]["reverted"] > 0, processes=processes, summary=data["summary"])
    if rc != 0:
        fail_undone(lpkg, msg, result)
    return result


def reverted_one(lpkg, ident, pid, check):
    process = dict(pid=pid, command=command_of(pid))
    if not any(r.get("id", "").startswith(ident) for r in records(lpkg, pid)):
        return dict(changed=False, processes=[dict(process, result="nothing to revert")])
    if check:
        return dict(changed=True, processes=[dict(process, result="would revert")])
    rc, data, msg = lpkg.run(["revert", "--pid", str(pid), "--id", ident, "--json"] + timeout_args(lpkg))
    if rc != 0:
        fail_undone(lpkg, "process %d still has the package" % pid,
                    dict(changed=False, processes=[dict(process, result="failed", error=msg)]))
    return dict(changed=True, processes=[dict(process, result="reverted")])


def uninstalled(lpkg, ident, check):
    """Removes the package from the store; whether it was there."""
    ids = stored_ids(lpkg, ident)
    if len(ids) > 1:
        lpkg.fail("package id %s is ambiguous in the store: %s" % (ident, ", ".join(sorted(ids))))
    if not ids or check:
        return bool(ids)
    rc, data, msg = lpkg.run(["uninstall", ids[0]] + lpkg.store_args())
    if rc != 0:
        lpkg.fail(msg)
    return True


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path"),
            id=dict(type="str"),
            state=dict(type="str", default="applied", choices=["installed", "applied", "reverted", "absent"]),
            pid=dict(type="str", default="all"),
            comm=dict(type="str"),
            exclude_pid=dict(type="list", elements="int", default=[]),
            trust=dict(type="path"),
            store=dict(type="path"),
            timeout=dict(type="int"),
            lpkg=dict(type="path"),
        ),
        required_if=[
            ("state", "installed", ["src"]),
            ("state", "applied", ["src"]),
            ("state", "reverted", ["src", "id"], True),
            ("state", "absent", ["src", "id"], True),
        ],
        mutually_exclusive=[("src", "id")],
        supports_check_mode=True,
    )
    params = module.params
    pid = params["pid"]
    if pid != "all" and not (pid.isdigit() and int(pid) > 0):
        module.fail_json(msg="pid must be `all` or a process id, not %r" % pid)
    if pid != "all" and (params["comm"] or params["exclude_pid"]):
        module.fail_json(msg="comm and exclude_pid choose among processes: they need pid=all")
    lpkg = Lpkg(module)
    check = module.check_mode
    state = params["state"]
    src = params["src"]
    if state == "installed":
        module.exit_json(**installed(lpkg, src, check))
    if state == "applied":
        if pid == "all":
            module.exit_json(**applied_all(lpkg, src, check))
        module.exit_json(**applied_one(lpkg, src, int(pid), check))
    meta = package_meta(lpkg, src) if src else dict(id=params["id"])
    was_stored = uninstalled(lpkg, meta["id"], check) if state == "absent" else False
    if pid == "all":
        result = reverted_all(lpkg, meta["id"], check)
    else:
        result = reverted_one(lpkg, meta["id"], int(pid), check)
    result.update(meta)
    if state == "absent":
        result.update(changed=result["changed"] or was_stored, installed=False)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
