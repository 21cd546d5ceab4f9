# -*- coding: utf-8 -*-
# Copyright: lpkg developers
# MIT OR Apache-2.0
"""What the lpkg.live modules share: running the lpkg binary and reading its --json output."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

# The store lpkg uses when neither --store nor $LPKG_STORE says otherwise (spec/host.md).
DEFAULT_STORE = "/var/lib/lpkg"

# lpkg's exit codes (lpkg --help).
REJECTED = 3  # the package: untrusted, badly signed or corrupt
MISMATCH = 4  # the package does not fit the process
EXPOSED = 5  # status: a process is exposed, drifted or unreadable


class Lpkg(object):
    """The lpkg binary on the managed host, with the options every command shares."""

    def __init__(self, module):
        self.module = module
        path = module.params.get("lpkg")
        self.binary = path if path else module.get_bin_path("lpkg", required=True)

    def run(self, args):
        """Runs lpkg with args; returns (exit code, parsed JSON stdout or None, error message)."""
        rc, out, err = self.module.run_command([self.binary] + args)
        data = None
        if out.strip():
            try:
                data = json.loads(out)
            except ValueError:
                data = None
        return rc, data, error_message(err, rc)

    def fail(self, msg, **result):
        self.module.fail_json(msg=msg, **result)

    def trust_args(self):
        trust = self.module.params.get("trust")
        return ["--trust", trust] if trust else []

    def store_args(self):
        store = self.module.params.get("store")
        return ["--store", store] if store else []

    def selection_args(self):
        """--comm and --exclude-pid, which narrow --pid all."""
        args = []
        comm = self.module.params.get("comm")
        if comm:
            args += ["--comm", comm]
        for pid in self.module.params.get("exclude_pid") or []:
            args += ["--exclude-pid", str(pid)]
        return args

    def store_dir(self):
        """The store folder lpkg uses, resolved as lpkg resolves it."""
        return self.module.params.get("store") or os.environ.get("LPKG_STORE") or DEFAULT_STORE


def error_message(stderr, rc):
    """lpkg's own message: its `error:` line(s), else all of stderr, else the exit code."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line[len("error: "):] for line in lines if line.startswith("error: ")]
    if errors:
        return "; ".join(errors)
    if lines:
        return "; ".join(lines)
    return "lpkg exited with code %d" % rc
