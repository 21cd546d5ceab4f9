long b_api(long x);
static long count;
static long __attribute__((noinline)) helper(long x) { count += x; return count; }
long case_entry(long x) { return helper(x) + b_api(x); }
