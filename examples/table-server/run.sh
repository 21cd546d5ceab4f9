#!/usr/bin/env bash
# A TCP server leaks an admin token through an out-of-bounds read. We connect a client, build a
# signed package from the fix, apply it to the running server, and the same connection (never
# closed) now gets the fixed answer. Then we revert, and the bug is back.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../common.sh"

step "build the running release and the fix (objects with -ffunction-sections -fdata-sections)"
$CC $CFLAGS_PATCHABLE -fPIE -c -o "$work/old.o" "$here/old.c"
$CC $CFLAGS_PATCHABLE -fPIE -c -o "$work/new.o" "$here/new.c"
$CC -pie -pthread -o "$work/table-server" "$work/old.o"
port=$((20000 + RANDOM % 20000))
"$work/table-server" "$port" >"$work/server.log" &
server=$!
pids+=("$server")
for _ in $(seq 50); do exec 3<>"/dev/tcp/127.0.0.1/$port" 2>/dev/null && break; sleep 0.1; done
ask() { echo "$1" >&3; read -r reply <&3; printf '  client> %-6s server> %s\n' "$1" "$reply"; }

step "a client connects to server pid $server and asks for entries 1 and 4"
ask "GET 1"
ask "GET 4"
[[ $reply == *ADMIN-TOKEN* ]] || fail "the buggy server should leak entry 4"

step "release engineer: build and sign a package from the fix"
make_key
run "$LPKG" build --target "$work/table-server" --old "$work/old.o" --new "$work/new.o" \
  --key "$work/release.key" -o "$work/fix.lpkg" --name table-server-bounds --version 1.0.1 \
  --description "lookup(): refuse index == TABLE_SIZE"

step "auditor: verify and inspect the package"
run "$LPKG" verify "$work/fix.lpkg" --trust "$work/release.pub"
run "$LPKG" inspect "$work/fix.lpkg" --trust "$work/release.pub"

step "field engineer: apply it to the running server"
run "$LPKG" apply "$work/fix.lpkg" --pid "$server" --trust "$work/release.pub"
run "$LPKG" list --pid "$server"

step "the same connection, without a restart"
ask "GET 1"
ask "GET 4"
[[ $reply == ERR* ]] || fail "the patched server should refuse entry 4"

step "revert: the original code is back"
run "$LPKG" revert --pid "$server"
ask "GET 4"
[[ $reply == *ADMIN-TOKEN* ]] || fail "after revert the original code should run again"
ask "QUIT" 2>/dev/null || true
echo
echo "table-server example: OK (server pid $server served one connection through apply and revert)"
