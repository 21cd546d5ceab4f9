long case_entry(long x) { return x * 2; }
