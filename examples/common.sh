# Shared by the example scripts: finds or builds lpkg, and gives each run a scratch folder.
# The caller sets `here` to its own folder before sourcing this file.
set -euo pipefail
root=$(cd "$here/../.." && pwd)
CFLAGS_PATCHABLE="-O2 -g -ffunction-sections -fdata-sections"
# LPKG_EXAMPLE_M=-m32 builds the programs for i386 (gcc-multilib) instead of the machine's own.
M=${LPKG_EXAMPLE_M:-}
CC="gcc $M"
if [ -z "${LPKG:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  LPKG="$root/target/release/lpkg"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/lpkg-example.XXXXXX")
pids=()
cleanup() {
  local status=$? last=$BASH_COMMAND
  # Where errexit ended the script, say after what: a bare exit 1 in CI tells nothing.
  if [ "$status" -ne 0 ] && [[ $last != exit* ]]; then
    echo "FAILED (exit $status) after: $last" >&2
  fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
# A release key for this run (a real pipeline keeps one in its vault).
make_key() { "$LPKG" keygen -o "$work/release" >/dev/null; }
