static long count;
long __attribute__((noinline)) x_bump(long v) { count += v; return count; }
