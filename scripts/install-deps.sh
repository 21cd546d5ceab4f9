#!/usr/bin/env bash
# Installs what lpkg's demo and tests need on a fresh Debian 12 machine (run as root or with
# sudo), including the real-world run (tests/real_world.rs, examples/real-world/run.sh): Debian
# source packages (deb-src lines), memcached's and libxml2's build dependencies, the SASL PLAIN
# mechanism for memcached's SASL reproducer, python3 for the load client, ansible-core and man-db
# for the Ansible collection's and the .deb's tests.
#
# Idempotent and quiet: apt runs only when something is missing (its output is shown only if it
# fails), `apt-get update` only when a package must be installed or deb-src lines were added.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

pkgs=(
  gcc g++ make binutils libc6-dev gdb             # tests compile and inspect C and C++ targets
  clang-14 libc++-14-dev libc++abi-14-dev libunwind-14-dev # C++ on libc++ and LLVM's libunwind
  gcc-multilib g++-multilib                       # i386 targets (gcc -m32): corpus, linker, machine tests
  patch dpkg-dev xz-utils                         # apt-get source, dpkg-source -x, build-source
  autoconf automake libtool                       # libxml2: a patch of the series changes Makefile.am
  libevent-dev libsasl2-dev libsasl2-modules pkg-config # memcached --enable-sasl(-pwdb), PLAIN
  python3                                         # memcached load client and reproducers
  time                                            # GNU time: peak memory of lpkg in tests/adversary.rs
  ansible-core python3-apt                        # tests/ansible.rs: lpkg.live, its apt of the .deb
  yamllint python3-pycodestyle python3-voluptuous # ansible-test sanity: yamllint, pep8, validate-modules
  man-db                                          # tests/deb.rs: man -w lpkg after dpkg -i
  debhelper fakeroot dwz                          # build-source -- dpkg-buildpackage; dwz-compressed DWARF
  libicu-dev liblzma-dev zlib1g-dev rename        # libxml2 built as Debian does (real-world --full)
)

quiet() { # runs a command, showing its output only when it fails
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

# deb-src lines next to the binary ones (deb822 debian.sources, or a classic sources.list).
has_deb_src() {
  grep -qsE '^Types:.*deb-src' /etc/apt/sources.list.d/*.sources ||
    grep -qsE '^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list
}
updated=false
if ! has_deb_src; then
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources |
      $SUDO tee /etc/apt/sources.list.d/lpkg-deb-src.sources >/dev/null
  else
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list |
      $SUDO tee /etc/apt/sources.list.d/lpkg-deb-src.list >/dev/null
  fi
  quiet $SUDO apt-get update -qq
  updated=true
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $updated || quiet $SUDO apt-get update -qq
  quiet $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
