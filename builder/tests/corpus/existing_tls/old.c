__thread long tls_count;
long case_entry(long x) { tls_count += 1; return x + tls_count; }
