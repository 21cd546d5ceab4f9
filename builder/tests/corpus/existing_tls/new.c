__thread long tls_count;
long case_entry(long x) { tls_count += 10; return x + tls_count; }
