#include <stdio.h>
void __attribute__((noinline)) log_at(int line, long v) {
    if (v == 31337)
        fprintf(stderr, "line %d: %ld\n", line, v);
}
long __attribute__((noinline)) first(long x) {
    log_at(__LINE__, x);
    return x + 1;
}
/* second moved down by two lines: its __LINE__ changes, its code does not. */

long __attribute__((noinline)) second(long x) {
    log_at(__LINE__, x);
    return x * 2;
}
long case_entry(long x) { return first(x) + second(x); }
