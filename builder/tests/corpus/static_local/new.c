static long __attribute__((noinline)) other(long x) {
    static long seen;
    seen += x;
    return seen;
}
long case_entry(long x) {
    static long calls;
    calls++;
    return x + calls * 100 + (other(x) > 1000000000);
}
