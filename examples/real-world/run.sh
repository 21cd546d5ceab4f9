#!/usr/bin/env bash
# Real software, real security fixes: for each CVE patch in Debian's memcached and libxml2
# source packages, build the release without it and with it through `lpkg build-source`, run
# the unpatched release under load, apply the package, check the load saw no error and the fix
# is live, revert. One line per fix goes to $RW_RESULTS (default: a scratch file printed at the end).
#
#   examples/real-world/run.sh             every CVE patch of both packages, then --deployed (long)
#   examples/real-world/run.sh --ci        one memcached fix and one libxml2 fix
#   examples/real-world/run.sh --deployed  Debian's installed, stripped libxml2 (deb12u5) patched
#                                          with each fix of deb12u6, built with dpkg-buildpackage
#
# Needs scripts/install-deps.sh run first (deb-src lines, build dependencies). Sources are cached in
# $RW_CACHE (default /var/tmp/lpkg-real-world). RW_ONLY=memcached|libxml2|deployed runs one part;
# RW_FIXES=REGEX (extended, on the patch name) runs the matching fixes only. Load talks only to
# 127.0.0.1 and is bounded.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../common.sh"
mode=${1:-all}
cache=${RW_CACHE:-/var/tmp/lpkg-real-world}
mkdir -p "$cache"
# Written as each fix finishes, so a long run that is stopped keeps what it measured.
results="${RW_RESULTS:-$work/results.tsv}"
printf 'package\tfix\toutcome\tfunctions\tsize\tpause_us\treproducer\tdetail\n' >"$results"
make_key

# Debian source packages through `apt-get source` (scripts/install-deps.sh adds the deb-src lines).
fetch() {
  local pkg=$1
  if ! ls "$cache/$pkg"_*.dsc >/dev/null 2>&1; then
    (cd "$cache" && apt-get source -qq --download-only "$pkg") ||
      fail "apt-get source $pkg failed: run scripts/install-deps.sh (deb-src lines, build tools)"
  fi
  ls "$cache/$pkg"_*.dsc | tail -n 1
}

# The series of a package, one patch name a line (comments and options dropped).
series() { sed -e 's/#.*//' -e 's/[[:space:]].*//' -e '/^$/d' "$1/debian/patches/series"; }

# A fix's name without `.patch`, folders flattened (CVE-2026-0992/01-x.patch: CVE-2026-0992-01-x).
# With $adapted set (the path of a variant of the fix in adapted/), `-adapted` is appended.
fix_id() {
  local id=${1%.patch}
  echo "${id//\//-}${adapted:+-adapted}"
}

# `base_tree DSC PATCH DEST`: the release as shipped before PATCH (pristine source plus every
# patch of the series that comes before it).
base_tree() {
  local dsc=$1 fix=$2 dest=$3
  dpkg-source -x --skip-patches "$dsc" "$dest" >/dev/null
  local p
  for p in $(series "$dest"); do
    [ "$p" = "$fix" ] && return 0
    patch -s -p1 -d "$dest" -i "debian/patches/$p" >/dev/null
  done
  fail "$fix is not in the series of $dsc"
}

# `package NAME FIX TARGET BUILD...`: runs build-source; sets $pkg_file, $functions, $outcome.
package() {
  local name=$1 fix=$2 target=$3
  shift 3
  local dir="$work/$name/$(fix_id "$fix")"
  mkdir -p "$dir"
  base_tree "$dsc" "$fix" "$dir/src"
  pkg_file="$dir/fix.lpkg"
  functions=""
  if "$LPKG" build-source --src "$dir/src" --patch "${adapted:-$dir/src/debian/patches/$fix}" \
    --target "$target" --key "$work/release.key" -o "$pkg_file" --work "$dir/build" \
    --jobs 2 --name "$name-$(fix_id "$fix")" -- "$@" >"$dir/build.out" 2>"$dir/build.err"; then
    functions=$(awk '$1 == "Replace" || $1 == "New" {printf "%s%s %s", sep, $1, $2; sep=", "}' "$dir/build.out")
    local inspected
    inspected=$("$LPKG" inspect "$pkg_file" --json --trust "$work/release.pub")
    if grep -q '"kind": *"init"' <<<"$inspected"; then
      outcome="applied, with init routine"
    elif grep -q 'lpkg runtime: shadow variables' <<<"$inspected"; then
      outcome="applied, with shadow variables"
    else
      outcome="applied automatically"
    fi
    return 0
  fi
  detail=$(grep -v '^\[lpkg\]' "$dir/build.err" | head -n 1 || true)
  case $detail in
  *"no object file differs"*) outcome="nothing to patch" ;; # the fix is not in this build
  "error: build of"*)
    outcome="build failed"
    detail="$detail: $(grep -v '^\[lpkg\]' "$dir/build.err" | grep -v '^[[:space:]]*$' | tail -n 1)"
    ;;
  *) outcome="refused" ;;
  esac
  echo "build-source refused $fix: $detail"
  printf '%s\t%s\t%s\t\t\t\t\t%s\n' "$name" "$fix${adapted:+ (adapted)}" "$outcome" "$detail" >>"$results"
  return 1
}

record() { # NAME FIX PAUSE DETAIL (and $repro: what the fix's reproducer showed)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2${adapted:+ (adapted)}" "$outcome" "$functions" \
    "$(stat -c %s "$pkg_file")" "$3" "$repro" "$4" >>"$results"
}

# `expect_repro WANT LINE`: a reproducer's answer (`... bug ...` or `... fixed ...`) is WANT.
expect_repro() {
  echo "$2"
  case $2 in *": $1"*) ;; *) fail "reproducer: expected $1, got '${2:-no answer}'" ;; esac
}
repro_summary="bug before apply, fixed after apply, bug after revert"

# In the full run one fix that fails to apply is recorded and the run goes on; the subshell
# stops the processes it started.
isolated() {
  (
    pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
    "$@"
  ) || printf '%s\t%s\tFAILED (see log above)\t\t\t\t\t\n' "${1%_fix}" "$2" >>"$results"
}

# --- memcached ---------------------------------------------------------------------------
# The reproducers need a server configured apart from the one under load (SASL turns the text
# protocol of the load off; the proxy needs a route): a second server of the release answers
# them before apply, after apply and after revert.

# `repro_around_apply SERVER REPRO...`: REPRO shows the bug, the package applied to SERVER fixes
# it, revert brings it back; then SERVER is stopped.
repro_around_apply() {
  local server=$1
  shift
  expect_repro bug "$("$@")"
  "$LPKG" apply "$pkg_file" --pid "$server" --trust "$work/release.pub" >/dev/null
  expect_repro fixed "$("$@")"
  "$LPKG" revert --pid "$server" >/dev/null
  expect_repro bug "$("$@")"
  kill "$server"
  wait "$server" 2>/dev/null || true
  repro=$repro_summary
}

# CVE-2026-47783/47784 (memcached-sasl-repro.py): a password database naming the user twice.
memcached_sasl_repro() { # BIN
  local bin=$1 port=$((20000 + RANDOM % 20000)) sasl="$work/sasl"
  mkdir -p "$sasl"
  chmod 711 "$work" # memcached reads the database as nobody
  printf 'mech_list: plain\n' >"$sasl/memcached.conf"
  # SASL names users user@realm, the realm being the host name.
  printf 'lpkg@%s:old-password\nlpkg@%s:s3cret\n' "$(uname -n)" "$(uname -n)" >"$sasl/pwdb"
  chmod -R a+rX "$sasl"
  MEMCACHED_SASL_PWDB="$sasl/pwdb" SASL_CONF_PATH="$sasl" \
    "$bin" -S -u nobody -l 127.0.0.1 -p "$port" -U 0 -t 1 -m 8 &
  local server=$!
  pids+=("$server")
  sleep 0.5
  repro_around_apply "$server" python3 "$here/memcached-sasl-repro.py" "$port" lpkg s3cret
}

# CVE-2023-46852 (memcached-proxy-repro.py) and CVE-2023-46853
# (memcached-proxy-newline-repro.py): a proxy routing every get to a fixed answer.
memcached_proxy_repro() { # BIN REPRO
  local bin=$1 repro_script=$2 port=$((20000 + RANDOM % 20000)) proxy="$work/proxy"
  mkdir -p "$proxy"
  chmod 711 "$work" # memcached reads the configuration as nobody
  cp "$here/memcached-proxy-route.lua" "$proxy/route.lua"
  chmod -R a+rX "$proxy"
  "$bin" -u nobody -l 127.0.0.1 -p "$port" -U 0 -t 1 -m 8 -o "proxy_config=$proxy/route.lua" &
  local server=$!
  pids+=("$server")
  sleep 1
  repro_around_apply "$server" python3 "$here/$repro_script" "$port"
}

memcached_fix() {
  local fix=$1 repro=-
  step "memcached: $fix"
  # The proxy CVEs are in code only --enable-proxy compiles (Debian does not enable it; the
  # tarball vendors Lua); the SASL one needs --enable-sasl-pwdb (Debian: --enable-sasl only).
  local configure='./configure -q --enable-sasl --enable-sasl-pwdb'
  case $fix in
  *46852* | *46853*) configure='make -s -C vendor && ./configure -q --enable-proxy' ;;
  esac
  package memcached "$fix" memcached \
    sh -c "test -f config.status || { $configure; } >/dev/null; make -s memcached" ||
    return 0
  local bin="$work/memcached/$(fix_id "$fix")/build/original/memcached"
  local port=$((20000 + RANDOM % 20000))
  "$bin" -u nobody -l 127.0.0.1 -p "$port" -U 0 -t 2 -m 64 &
  local server=$!
  pids+=("$server")
  sleep 0.5
  python3 "$here/memcached-load.py" "$port" 6 8 >"$work/load.out" 2>&1 &
  local load=$!
  sleep 1.5
  local json
  json=$("$LPKG" apply "$pkg_file" --pid "$server" --trust "$work/release.pub" --json)
  local pause
  pause=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pause_us"])')
  grep -q "memcached-$(fix_id "$fix")" <<<"$("$LPKG" list --pid "$server")" ||
    fail "package not listed after apply"
  sleep 1.5
  "$LPKG" revert --pid "$server" >/dev/null
  wait "$load" || { cat "$work/load.out"; fail "load saw errors across apply/revert of $fix"; }
  cat "$work/load.out"
  kill "$server"
  wait "$server" 2>/dev/null || true
  case $fix in
  *47783*) memcached_sasl_repro "$bin" ;;
  *46852*) memcached_proxy_repro "$bin" memcached-proxy-repro.py ;;
  *46853*) memcached_proxy_repro "$bin" memcached-proxy-newline-repro.py ;;
  esac
  record memcached "$fix" "$pause" "$(head -n 1 "$work/load.out")"
}

# --- libxml2 ------------------------------------------------------------------------------
# `worker_repro PID LOG WANT`: asks the worker for its reproducer's answer (SIGUSR1).
worker_repro() {
  local pid=$1 log=$2 want=$3 asked line=""
  asked=$(grep -c '^repro ' "$log" || true)
  kill -USR1 "$pid"
  for _ in $(seq 100); do
    # `|| true`: before the answer grep finds nothing, and under pipefail + errexit that
    # assignment would end the script without a word.
    line=$(grep '^repro ' "$log" | sed -n "$((asked + 1))p" || true)
    [ -n "$line" ] && break
    sleep 0.1
  done
  expect_repro "$want" "$line"
}

# Configured as Debian's main flavour (--without-python) minus ICU, shared library only. Like
# Debian's build (dh_autoreconf), the build system is regenerated when a patch of the series
# changed it (0034-testcatalog adds a test program to Makefile.am).
libxml2_build='test -f config.status || {
  if [ Makefile.am -nt Makefile.in ] || [ configure.ac -nt configure ]; then autoreconf -fi; fi
  ./configure -q --without-python --disable-static
} >/dev/null 2>&1; make -s libxml2.la'

libxml2_fix() {
  local fix=$1 repro=- name=""
  step "libxml2: $fix"
  # The fixes with a reproducer in xml-worker.c.
  case $fix in
  *28484*) name=CVE-2023-28484 ;;
  *29469*) name=CVE-2023-29469 ;;
  *27113*) name=CVE-2025-27113 ;;
  *49796*) name=CVE-2025-49796 ;;
  *8732*) name=CVE-2025-8732 ;;
  *0989*) name=CVE-2026-0989 ;;
  esac
  package libxml2 "$fix" .libs/libxml2.so.2.9.14 \
    sh -c "$libxml2_build" ||
    return 0
  local lib="$work/libxml2/$(fix_id "$fix")/build/original"
  local prog="$work/libxml2/$(fix_id "$fix")/xml-worker"
  gcc -O2 -I"$lib/include" -o "$prog" "$here/xml-worker.c" -L"$lib/.libs" -lxml2 \
    -Wl,-rpath,"$lib/.libs"
  "$prog" 7 $name >"$work/load.out" 2>&1 &
  local worker=$!
  pids+=("$worker")
  sleep 1.5
  [ -z "$name" ] || worker_repro "$worker" "$work/load.out" bug
  local json
  json=$("$LPKG" apply "$pkg_file" --pid "$worker" --trust "$work/release.pub" --json)
  local pause
  pause=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pause_us"])')
  grep -q "libxml2-$(fix_id "$fix")" <<<"$("$LPKG" list --pid "$worker")" ||
    fail "package not listed after apply"
  [ -z "$name" ] || worker_repro "$worker" "$work/load.out" fixed
  sleep 1.5
  "$LPKG" revert --pid "$worker" >/dev/null
  if [ -n "$name" ]; then
    worker_repro "$worker" "$work/load.out" bug
    repro=$repro_summary
  fi
  wait "$worker" || { cat "$work/load.out"; fail "parsing failed across apply/revert of $fix"; }
  grep -v '^repro ' "$work/load.out"
  record libxml2 "$fix" "$pause" "$(grep -v '^repro ' "$work/load.out" | head -n 1)"
}


# --- Debian's installed libxml2 ----------------------------------------------------------------
# The library the system's programs use, as Debian shipped it (stripped), patched with the
# fixes of the next security update. The package is built by `build-source` with Debian's own
# build (`dpkg-buildpackage`), so the original build has Debian's configuration and flags; the
# symbols and DWARF of the installed file come from its debug file (libxml2-dbgsym, or a
# reproducible rebuild of the installed version when no archive has it).
deployed_version=2.9.14+dfsg-1.3~deb12u5
deployed_lib=/usr/lib/x86_64-linux-gnu/libxml2.so.2.9.14
# Debian's build of the library only: no Python bindings (their build compiles the library's
# sources again), no test suite. Neither changes libxml2.so.
deb_env=(env DEB_BUILD_PROFILES=nopython DEB_BUILD_OPTIONS="nocheck parallel=2")

# The installed libxml2 must be the release the fixes are built against.
ensure_deployed_version() {
  local have
  have=$(dpkg-query -W -f='${Version}' libxml2 2>/dev/null || echo none)
  if [ "$have" = "$deployed_version" ]; then
    echo "installed libxml2 is $deployed_version, the release the fixes are built against"
    return 0
  fi
  echo "installed libxml2 is $have: installing $deployed_version, the release the fixes are built against"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades "libxml2=$deployed_version" ||
    fail "libxml2 $deployed_version cannot be installed from the configured archives (see apt-cache policy libxml2)"
}

# `deployed_tree DEST`: the installed release's source: deb12u6's source package with its series
# and changelog cut back to deb12u5 (whose last patch is CVE-2025-9714.patch), the series applied
# as dpkg-source applies it and left applied after a build.
deployed_tree() {
  local dest=$1
  dpkg-source -x --skip-patches "$dsc" "$dest" >/dev/null 2>&1
  sed -i '/^CVE-2025-9714.patch$/q' "$dest/debian/patches/series"
  sed -i -n '/^libxml2 (2.9.14+dfsg-1.3~deb12u5)/,$p' "$dest/debian/changelog"
  (cd "$dest" && dpkg-source --before-build . >/dev/null)
  rm -f "$dest/.pc/.dpkg-source-unapply"
}

# Prints the installed library's debug file (messages on stderr): from libxml2-dbgsym when an
# archive has it, else from a rebuild of the installed release, which Debian's reproducible
# builds make bit-identical to it. Cached in $cache/debug.
deployed_debug_file() {
  local id dbg deb
  id=$(readelf -n "$deployed_lib" | awk '/Build ID/ {print $3}')
  dbg="$cache/debug/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug"
  if [ ! -f "$dbg" ]; then
    deb="$cache/libxml2-dbgsym_${deployed_version}_amd64.deb"
    if [ ! -f "$deb" ] && (cd "$cache" && apt-get download -qq "libxml2-dbgsym=$deployed_version") >/dev/null 2>&1; then
      echo "debug file: libxml2-dbgsym $deployed_version from the archive" >&2
    fi
    if [ ! -f "$deb" ]; then
      echo "libxml2-dbgsym $deployed_version cannot be fetched: rebuilding $deployed_version with dpkg-buildpackage for its debug file (5-10 min)" >&2
      mkdir -p "$work/rebuild"
      deployed_tree "$work/rebuild/libxml2"
      (cd "$work/rebuild/libxml2" && "${deb_env[@]}" dpkg-buildpackage -B -uc -us >"$work/rebuild/build.log" 2>&1) ||
        { tail -n 20 "$work/rebuild/build.log" >&2; fail "rebuild of libxml2 $deployed_version failed"; }
      local rebuilt="$work/rebuild/libxml2/debian/libxml2$deployed_lib"
      if cmp -s "$rebuilt" "$deployed_lib"; then
        echo "the rebuilt libxml2.so.2.9.14 is bit-identical to the installed one" >&2
      fi
      cp "$work/rebuild/$(basename "$deb")" "$deb"
    fi
    dpkg-deb -x "$deb" "$cache/debug"
  fi
  [ -f "$dbg" ] || fail "no debug file with the installed library's build-id $id (the rebuild is not bit-identical to it)"
  echo "$dbg"
}

# deb12u6's fixes that need an earlier one of deb12u6 to apply.
declare -A deployed_needs=(
  [CVE-2026-0992/02-096402c94.patch]=CVE-2026-0992/01-4af23b523.patch
  [0039-catalog-fix-stack-overflow-from-self-referencing-SGM.patch]=CVE-2025-8732.patch
)

# The first original build (the installed release built by dpkg-buildpackage with lpkg's
# compiler wrapper) is kept for the next fixes (`--reuse-original`).
keep_original() {
  if [ ! -d "$deployed_original" ] && grep -q 'build original: done' "$1/build.err"; then
    mv "$1/build/original" "$deployed_original"
  fi
}

# `deployed_fix FIX`: the package of FIX (with what it needs; `$adapted`: a variant of it) for
# the installed library, applied to a program using the system's libxml2 under load, with
# the fix's reproducer where xml-worker.c has one, and reverted.
deployed_fix() {
  local fix=$1 repro=- name="" dir patches=()
  step "installed libxml2 $deployed_version: $fix${adapted:+ (adapted)}"
  case $fix in
  *8732*) name=CVE-2025-8732 ;;
  *0989*) name=CVE-2026-0989 ;;
  esac
  dir="$work/deployed/$(fix_id "$fix")"
  mkdir -p "$dir"
  [ -z "${deployed_needs[$fix]:-}" ] || patches+=(--patch "$deployed_src/debian/patches/${deployed_needs[$fix]}")
  patches+=(--patch "${adapted:-$deployed_src/debian/patches/$fix}")
  local reuse=()
  [ -d "$deployed_original" ] && reuse=(--reuse-original "$deployed_original")
  pkg_file="$dir/fix.lpkg"
  functions=""
  if ! "${deb_env[@]}" "$LPKG" build-source --src "$deployed_src" "${patches[@]}" \
    --target builddir/main/.libs/libxml2.so.2.9.14 --objects builddir/main/.libs \
    --deployed "$deployed_lib" --debug-file "$deployed_debug" "${reuse[@]}" \
    --key "$work/release.key" -o "$pkg_file" --work "$dir/build" --jobs 2 \
    --name "libxml2-deb12u5-$(fix_id "$fix")" -- dpkg-buildpackage -B -uc -us \
    >"$dir/build.out" 2>"$dir/build.err"; then
    keep_original "$dir"
    detail=$(grep -v '^\[lpkg\]' "$dir/build.err" | grep -v '^note:' | head -n 1 || true)
    case $detail in
    *"no object file differs"*) outcome="nothing to patch" ;;
    *) outcome="refused" ;;
    esac
    echo "build-source: $detail"
    printf '%s\t%s\t%s\t\t\t\t\t%s\n' "libxml2 (installed)" "$fix${adapted:+ (adapted)}" "$outcome" "$detail" >>"$results"
    return 0
  fi
  keep_original "$dir"
  grep '^note: symbols' "$dir/build.err" || true
  functions=$(awk '$1 == "Replace" || $1 == "New" {printf "%s%s %s", sep, $1, $2; sep=", "}' "$dir/build.out")
  outcome="applied automatically"
  local prog="$work/deployed/xml-worker"
  [ -x "$prog" ] || gcc -O2 -I"$deployed_src/include" -I"$deployed_original/builddir/main/include" \
    -o "$prog" "$here/xml-worker.c" "$deployed_lib"
  "$prog" 7 $name >"$work/load.out" 2>&1 &
  local worker=$!
  pids+=("$worker")
  sleep 1.5
  grep -q "$deployed_lib" "/proc/$worker/maps" || fail "the worker does not use $deployed_lib"
  [ -z "$name" ] || worker_repro "$worker" "$work/load.out" bug
  local json pause
  json=$("$LPKG" apply "$pkg_file" --pid "$worker" --trust "$work/release.pub" --json)
  pause=$(echo "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pause_us"])')
  [ -z "$name" ] || worker_repro "$worker" "$work/load.out" fixed
  sleep 1.5
  "$LPKG" revert --pid "$worker" >/dev/null
  if [ -n "$name" ]; then
    worker_repro "$worker" "$work/load.out" bug
    repro=$repro_summary
  fi
  wait "$worker" || { cat "$work/load.out"; fail "parsing failed across apply/revert of $fix"; }
  grep -v '^repro ' "$work/load.out"
  record "libxml2 (installed)" "$fix" "$pause" "$(grep -v '^repro ' "$work/load.out" | head -n 1)"
}

deployed_libxml2() {
  step "installed libxml2: release, debug file, source"
  ensure_deployed_version
  deployed_debug=$(deployed_debug_file)
  echo "debug file of $deployed_lib: $deployed_debug"
  deployed_src="$work/deployed/src"
  deployed_original="$work/deployed/original"
  mkdir -p "$work/deployed"
  deployed_tree "$deployed_src"
  local tmp="$work/series-deb12u6" fix
  dpkg-source -x --skip-patches "$dsc" "$tmp" >/dev/null 2>&1
  # deb12u6's patches (after deb12u5's last), but for the test suite's (no library code).
  for fix in $(series "$tmp" | sed '1,/^CVE-2025-9714.patch$/d' | grep -v testcatalog |
    grep -E "${RW_FIXES:-.}"); do
    isolated deployed_fix "$fix"
    if [ -f "$here/adapted/$(fix_id "$fix").patch" ]; then
      adapted="$here/adapted/$(fix_id "$fix").patch" isolated deployed_fix "$fix"
    fi
  done
}

dsc=$(fetch memcached)
if [ "${RW_ONLY:-memcached}" != memcached ] || [ "$mode" = --deployed ]; then
  :
elif [ "$mode" = --ci ]; then
  memcached_fix 0008-CVE-2026-47783-CVE-2026-47784.patch
else
  tmp="$work/series-memcached"
  dpkg-source -x --skip-patches "$dsc" "$tmp" >/dev/null
  for fix in $(series "$tmp" | grep -i cve | grep -E "${RW_FIXES:-.}"); do
    isolated memcached_fix "$fix"
    # A fix Debian's way refuses may have a live-patchable variant (adapted/, see its header).
    if [ -f "$here/adapted/$(fix_id "$fix").patch" ]; then
      adapted="$here/adapted/$(fix_id "$fix").patch" isolated memcached_fix "$fix"
    fi
  done
fi

dsc=$(fetch libxml2)
if [ "$mode" = --deployed ] || { [ "$mode" = all ] && [ "${RW_ONLY:-deployed}" = deployed ]; }; then
  deployed_libxml2
fi
if [ "${RW_ONLY:-libxml2}" != libxml2 ] || [ "$mode" = --deployed ]; then
  :
elif [ "$mode" = --ci ]; then
  libxml2_fix CVE-2023-29469-Hashing-of-empty-dict-strings-isn-t-d.patch
else
  tmp="$work/series-libxml2"
  dpkg-source -x --skip-patches "$dsc" "$tmp" >/dev/null
  for fix in $(series "$tmp" | grep -i cve | grep -E "${RW_FIXES:-.}"); do
    isolated libxml2_fix "$fix"
    # A fix Debian's way refuses may have a live-patchable variant (adapted/, see its header).
    if [ -f "$here/adapted/$(fix_id "$fix").patch" ]; then
      adapted="$here/adapted/$(fix_id "$fix").patch" isolated libxml2_fix "$fix"
    fi
  done
fi

step "results"
column -t -s $'\t' "$results"
if [ "$mode" = --ci ]; then
  # A refusal is a finding in the full run, but the two CI fixes are known to apply.
  awk -F'\t' 'NR > 1 { n++; if ($3 !~ /^applied/) bad = 1 } END { exit bad || n != 2 }' "$results" ||
    fail "the CI fixes did not both apply (see the results above)"
fi
