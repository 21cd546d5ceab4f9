long __attribute__((noinline)) tally(long x) { static long n; n += x; return n; }
long case_entry(long x) { return tally(x); }
