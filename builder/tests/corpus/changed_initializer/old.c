long limit = 5;
long case_entry(long x) { return x < limit ? x : limit; }
