#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: lpkg developers
# MIT OR Apache-2.0

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: status
short_description: The host's lpkg status as facts
version_added: "0.1.0"
description:
  - Runs C(lpkg status --json) on the managed host and returns it as the fact C(lpkg_status).
  - It lists every process that runs the target of an installed package or holds an lpkg
    package, what is applied to it (and whether its live code is intact or drifted), and what it
    is exposed to.
  - Reads only; never changes anything, so it runs in check mode as well.
  - A host with exposed, drifted or unreadable processes (lpkg's exit code 5) does not fail the
    task; C(exposed) says so, for reports across the fleet.
author:
  - lpkg developers (@lpkg)
options:
  trust:
    description:
      - Trusted public key (C(.pub)) or folder of them, to verify the store's packages.
      - Default C($LPKG_TRUST), then C(/etc/lpkg/trusted/).
    type: path
  store:
    description:
      - The package store folder. Default C($LPKG_STORE), then C(/var/lib/lpkg).
    type: path
  comm:
    description:
      - Only processes whose command name matches this regular expression (C(lpkg --comm)).
    type: str
  exclude_pid:
    description:
      - Processes to leave out (C(lpkg --exclude-pid)).
    type: list
    elements: int
    default: []
  lpkg:
    description:
      - Path of the lpkg binary. Default C(lpkg) from C(PATH).
    type: path
seealso:
  - module: lpkg.live.package
"""

EXAMPLES = r"""
- name: Gather lpkg status
  lpkg.live.status:

- name: Hosts with processes still exposed
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }}: {{ ansible_facts.lpkg_status.summary }}"
  when: ansible_facts.lpkg_status_exposed
"""

RETURN = r"""
ansible_facts:
  description: Facts set on the host.
  returned: always
  type: complex
  contains:
    lpkg_status:
      description:
        - lpkg status --json as lpkg prints it (spec/host.md, "Status"), with C(processes) (each
          with C(pid), C(command), C(start_time), C(cgroup), C(unit), C(objects), C(applied),
          C(exposed), C(error)), C(installed), C(skipped), C(summary) and C(daemons).
      type: dict
    lpkg_status_exposed:
      description: Whether a process is exposed, drifted or unreadable (lpkg's exit code 5).
      type: bool
exposed:
  description: Whether a process is exposed, drifted or unreadable (lpkg's exit code 5).
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.lpkg.live.plugins.module_utils.lpkg import EXPOSED, Lpkg


def main():
    module = AnsibleModule(
        argument_spec=dict(
            trust=dict(type="path"),
            store=dict(type="path"),
            comm=dict(type="str"),
            exclude_pid=dict(type="list", elements="int", default=[]),
            lpkg=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    lpkg = Lpkg(module)
    args = ["status", "--json"] + lpkg.trust_args() + lpkg.store_args() + lpkg.selection_args()
    rc, data, msg = lpkg.run(args)
    if rc not in (0, EXPOSED) or not isinstance(data, dict):
        lpkg.fail(msg)
    exposed = rc == EXPOSED
    module.exit_json(
        changed=False,
        exposed=exposed,
        ansible_facts=dict(lpkg_status=data, lpkg_status_exposed=exposed),
    )


if __name__ == "__main__":
    main()
