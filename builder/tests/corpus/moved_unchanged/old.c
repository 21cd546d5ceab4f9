long __attribute__((noinline)) first(long x) { return x * 7; }
long __attribute__((noinline)) second(long x) { return x ^ 5; }
long case_entry(long x) { return first(x) + second(x); }
