static long __attribute__((noinline)) fresh(long x) { static long n; n += 100 * x; return n; }
long __attribute__((noinline)) tally(long x) { static long n; n += x; return n; }
long case_entry(long x) { return tally(x) + fresh(x); }
