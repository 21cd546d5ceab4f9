long mode = 1;
long case_entry(long x) { return x * mode; }
