static long count;
static long __attribute__((noinline)) helper(long x) { count -= x; return count; }
long __attribute__((noinline)) b_api(long x) { return helper(x) * 10; }
__attribute__((visibility("hidden"), noinline)) long b_hidden(long x) { return x + 77; }
