static long __attribute__((noinline)) helper_static(long x) { return x * x; }
long __attribute__((noinline)) helper_global(long x) { return x + 1000; }
long case_entry(long x) { return helper_static(x) + helper_global(x); }
