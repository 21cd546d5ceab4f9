long __attribute__((noinline, section(".text"))) one(long x) { return x + 1; }
long __attribute__((noinline, section(".text"))) two(long x) { return x + 3; }
long case_entry(long x) { return one(x) + two(x); }
