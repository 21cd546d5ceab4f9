long limit = 6;
long case_entry(long x) { return x < limit ? x : limit; }
