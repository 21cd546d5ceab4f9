#include <stdio.h>
#include <stdlib.h>
void __attribute__((cold, noinline)) report(long x) { fprintf(stderr, "bad %ld\n", x); }
long __attribute__((noinline)) checked(long x) {
    if (x == 987654) {
        report(x);
        fprintf(stderr, "bad value %ld\n", x);
        abort();
    }
    return x * 2;
}
long case_entry(long x) { return checked(x); }
