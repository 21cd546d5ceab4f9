long __attribute__((noinline)) ident(long x) { return x; }
long case_entry(long x) { return ident(x) + 1; }
