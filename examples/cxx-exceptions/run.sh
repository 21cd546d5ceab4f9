#!/usr/bin/env bash
# A C++ service whose threads throw and catch exceptions all the time. We replace price(), the
# function the exceptions pass through, with a version that rejects a quantity of 0 by
# throwing too: exceptions keep being caught through the new code (lpkg registers its unwind
# information with the process's own unwinders), and no order with quantity 0 is accepted any
# more. Then revert.
#
# CXX picks the compiler and C++ runtime: g++ and libstdc++ by default;
# CXX="clang++-14 -stdlib=libc++" builds it on libc++, whose exceptions LLVM's libunwind raises.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../common.sh"
CXX=${CXX:-g++}

step "build the running release and the fix ($CXX)"
$CXX $CFLAGS_PATCHABLE -fPIE -c -o "$work/old.o" "$here/old.cpp"
$CXX $CFLAGS_PATCHABLE -fPIE -c -o "$work/new.o" "$here/new.cpp"
$CXX -pie -pthread -o "$work/orders" "$work/old.o"
"$work/orders" >"$work/out.log" 2>&1 &
orders=$!
pids+=("$orders")
sleep 1.2
tail -n 2 "$work/out.log"
tail -n 1 "$work/out.log" | grep -Eq '\([1-9][0-9]* with quantity 0 accepted\)' ||
  fail "the buggy service should accept orders of quantity 0"

step "build, sign and apply the package to pid $orders (4 threads running, throwing)"
make_key
run "$LPKG" build --target "$work/orders" --old "$work/old.o" --new "$work/new.o" \
  --key "$work/release.key" -o "$work/fix.lpkg" --name orders-zero-quantity --version 2
run "$LPKG" apply "$work/fix.lpkg" --pid "$orders" --trust "$work/release.pub"
sleep 1.2
tail -n 2 "$work/out.log"
tail -n 1 "$work/out.log" | grep -q '(0 with quantity 0 accepted)' ||
  fail "the patched service should reject orders of quantity 0"
kill -0 "$orders" || fail "the service died: $(tail -n 3 "$work/out.log")"

step "revert"
run "$LPKG" revert --pid "$orders"
sleep 1.2
tail -n 1 "$work/out.log"
tail -n 1 "$work/out.log" | grep -Eq '\([1-9][0-9]* with quantity 0 accepted\)' ||
  fail "after revert the old code should run again"
echo
echo "cxx-exceptions example: OK"
