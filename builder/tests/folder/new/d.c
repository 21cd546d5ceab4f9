long __attribute__((noinline)) d_api(long x) { return x << 8; }
