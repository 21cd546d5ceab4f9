struct stats { long misses; long hits; };
struct stats st;
long __attribute__((noinline)) record(long x) { if (x & 1) st.hits += 2; else st.misses++; return st.hits * 1000 + st.misses; }
long case_entry(long x) { return record(x); }
