#!/usr/bin/env bash
# A program prints amounts formatted by libprice.so, which mangles negative amounts. The package
# is built for the library (bound to libprice.so's build-id) and applied inside the program
# that has it mapped.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../common.sh"

step "build libprice.so (running release), the fix, and the program that uses the library"
$CC $CFLAGS_PATCHABLE -fPIC -c -o "$work/price-old.o" "$here/price-old.c"
$CC $CFLAGS_PATCHABLE -fPIC -c -o "$work/price-new.o" "$here/price-new.c"
$CC -shared -o "$work/libprice.so" "$work/price-old.o"
$CC -O2 -o "$work/shop" "$here/shop.c" -L"$work" -lprice -Wl,-rpath,"$work"
"$work/shop" >"$work/out.log" &
shop=$!
pids+=("$shop")
sleep 0.8
tail -n 1 "$work/out.log"
tail -n 1 "$work/out.log" | grep -q -- '-1.-50' || fail "the buggy library should print -1.-50"

step "build a package for libprice.so and apply it to pid $shop"
make_key
run "$LPKG" build --target "$work/libprice.so" --old "$work/price-old.o" --new "$work/price-new.o" \
  --key "$work/release.key" -o "$work/fix.lpkg" --name libprice-sign --version 1.1
run "$LPKG" apply "$work/fix.lpkg" --pid "$shop" --trust "$work/release.pub"
sleep 0.8
tail -n 1 "$work/out.log"
tail -n 1 "$work/out.log" | grep -q 'ledger: 19.99 -1.50 -0.05' || fail "the patched library should print -1.50 -0.05"

step "revert"
run "$LPKG" revert --pid "$shop"
sleep 0.8
tail -n 1 "$work/out.log" | grep -q -- '-1.-50' || fail "after revert the old code should run again"
echo
echo "shared-library example: OK"
