#!/usr/bin/env bash
# Four worker threads compute wrong checksums. We patch batch_sum() while they run; the tally
# printed every half second turns from all-wrong to all-right, with no thread restarted.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../common.sh"

step "build the running release and the fix"
$CC $CFLAGS_PATCHABLE -fPIE -c -o "$work/old.o" "$here/old.c"
$CC $CFLAGS_PATCHABLE -fPIE -c -o "$work/new.o" "$here/new.c"
$CC -pie -pthread -o "$work/worker-pool" "$work/old.o"
"$work/worker-pool" >"$work/out.log" &
pool=$!
pids+=("$pool")
sleep 1.2
tail -n 2 "$work/out.log"
tail -n 1 "$work/out.log" | grep -q ' 0 batches right' || fail "the buggy pool should get every batch wrong"

step "build, sign and apply the package to pid $pool (5 threads running)"
make_key
run "$LPKG" build --target "$work/worker-pool" --old "$work/old.o" --new "$work/new.o" \
  --key "$work/release.key" -o "$work/fix.lpkg" --name worker-pool-sum --version 2
run "$LPKG" apply "$work/fix.lpkg" --pid "$pool" --trust "$work/release.pub"
sleep 1.2
tail -n 2 "$work/out.log"
tail -n 1 "$work/out.log" | grep -q ', 0 wrong' || fail "the patched pool should get every batch right"

step "revert"
run "$LPKG" revert --pid "$pool"
sleep 1.2
tail -n 1 "$work/out.log"
tail -n 1 "$work/out.log" | grep -q ' 0 batches right' || fail "after revert the old code should run again"
echo
echo "worker-pool example: OK"
