static long __attribute__((noinline)) ident(long x) { return x + 7; }
long case_entry(long x) { return ident(x) + ident(x + 2); }
