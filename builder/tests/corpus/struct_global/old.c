struct stats { long hits; long misses; };
struct stats st;
long __attribute__((noinline)) record(long x) { if (x & 1) st.hits++; else st.misses++; return st.hits * 1000 + st.misses; }
long case_entry(long x) { return record(x); }
