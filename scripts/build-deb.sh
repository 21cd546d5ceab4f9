#!/usr/bin/env bash
# Builds lpkg's Debian package with dpkg-deb:
#   scripts/build-deb.sh [-o OUT_DIR] [--bin-dir DIR]
# writes OUT_DIR/lpkg_VERSION_ARCH.deb (default OUT_DIR: target/debian) and prints its path.
# The binaries come from `cargo build --release` (lpkg, and lpkg-docgen, which generates the man
# pages and shell completions from lpkg's clap definitions), or, with --bin-dir, from a folder
# that already holds both (the tests use their debug build).
#
# The package holds /usr/bin/lpkg, lpkg(1) and one man page per command, completions for bash,
# zsh and fish, the daemon's systemd unit (installed, not enabled), /usr/include/lpkg.h (the
# header live patches include) with the patch author's guide, /etc/lpkg/trusted/ (0755:
# lpkg's default trust store, empty) and /var/lib/lpkg (0755: the store, which lpkg refuses
# when group or others may write it), all owned by root.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/debian
bin_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    *) echo "usage: $0 [-o OUT_DIR] [--bin-dir DIR]" >&2; exit 2 ;;
  esac
done
if [ -z "$bin_dir" ]; then
  cargo build --release --quiet -p lpkg --bin lpkg --bin lpkg-docgen
  bin_dir=${CARGO_TARGET_DIR:-target}/release
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root

install -D -m 0755 "$bin_dir/lpkg" "$root/usr/bin/lpkg"
strip --strip-unneeded "$root/usr/bin/lpkg" # Debian ships binaries without debug symbols
"$bin_dir/lpkg-docgen" "$stage/generated"
install -d -m 0755 "$root/usr/share/man/man1"
for page in "$stage"/generated/man/*.1; do
  gzip -9n <"$page" >"$root/usr/share/man/man1/$(basename "$page").gz"
done
install -D -m 0644 "$stage/generated/completions/lpkg.bash" "$root/usr/share/bash-completion/completions/lpkg"
install -D -m 0644 "$stage/generated/completions/_lpkg" "$root/usr/share/zsh/vendor-completions/_lpkg"
install -D -m 0644 "$stage/generated/completions/lpkg.fish" "$root/usr/share/fish/vendor_completions.d/lpkg.fish"
install -D -m 0644 packaging/lpkg.service "$root/lib/systemd/system/lpkg.service"
install -d -m 0755 "$root/etc/lpkg/trusted" "$root/var/lib/lpkg"
doc=$root/usr/share/doc/lpkg
install -D -m 0644 packaging/debian/copyright "$doc/copyright"
install -m 0644 spec/host.md "$doc/host.md"
install -m 0644 docs/patch-author-guide.md "$doc/patch-author-guide.md"
install -D -m 0644 builder/include/lpkg.h "$root/usr/include/lpkg.h"
gzip -9n <README.md >"$doc/README.md.gz"
chmod 0644 "$doc/README.md.gz"

install -d -m 0755 "$root/DEBIAN"
for script in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$script" "$root/DEBIAN/$script"
done
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: lpkg
Version: $version
Architecture: $arch
Maintainer: lpkg developers <lpkg@localhost>
Installed-Size: $size
Depends: libc6
Recommends: man-db
Section: admin
Priority: optional
Description: live patches for running Linux processes
 lpkg builds signed live-patch packages from the old and new object files of a
 fix, and applies them to running processes without restarting them: the
 process keeps its sockets, memory and clients. It verifies each package
 against /etc/lpkg/trusted/, can list and revert what it applied, keeps
 installed packages in /var/lib/lpkg, and its daemon (lpkg.service, not
 enabled by default) applies them to processes as they start.
CONTROL

deb="$out/lpkg_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz -z6 --build "$root" "$deb" >/dev/null
echo "$deb"
