long __attribute__((noinline)) c_api(long x) { return x ^ 0x55; }
