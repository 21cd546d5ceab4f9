static long count;
static long __attribute__((noinline)) helper(long x) { count -= x; return count; }
long __attribute__((noinline)) b_api(long x) { return helper(x) * 10; }
