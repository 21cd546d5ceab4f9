static long __attribute__((noinline)) mix(long x, long k) {
    long r = 0;
    for (long i = 0; i < k; i++)
        r = r * 31 + x + i;
    return r;
}
long case_entry(long x) { return mix(x, 3); }
