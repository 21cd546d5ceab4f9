static long __attribute__((noinline)) a(long x) { static long n; n += x; return n; }
static long __attribute__((noinline)) b(long x) { static long n; n += 2 * x; return n; }
long case_entry(long x) { return a(x) * 1000 + b(x); }
