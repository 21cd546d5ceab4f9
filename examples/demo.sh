#!/usr/bin/env bash
# The README's demo: fix a running TCP server without restarting it.
exec "$(dirname "$0")/table-server/run.sh"
