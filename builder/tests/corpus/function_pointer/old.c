long __attribute__((noinline)) twice(long x) { return 2 * x; }
long __attribute__((noinline)) thrice(long x) { return 3 * x; }
long (*volatile pick)(long);
long case_entry(long x) { pick = twice; return pick(x); }
