#!/usr/bin/env bash
# Installs what lpkg's demo and tests need on a fresh Debian machine (run as root or with sudo).
set -euo pipefail
need=()
for tool in gcc make objdump gdb; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=(gcc make binutils libc6-dev gdb)
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
