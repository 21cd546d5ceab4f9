static long count = 1000;
long __attribute__((noinline)) y_bump(long v) { count += v; return count; }
