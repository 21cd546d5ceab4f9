long b_api(long x);
long d_api(long x);
long b_hidden(long x);
static long count;
static long __attribute__((noinline)) helper(long x) { count += 2 * x; return count; }
long case_entry(long x) { return helper(x) + b_api(x) + d_api(x) + b_hidden(x); }
