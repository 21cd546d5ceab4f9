#include <string.h>
static const char *const names[] = { "zero", "one", "three" };
static long __attribute__((noinline)) square(long x) { return x * x; }
long __attribute__((noinline)) negate(long x) { return -x; }
static long (*const ops[])(long) = { square, negate };
long case_entry(long x) { return ops[x & 1](x) + (long)strlen(names[x % 3]); }
