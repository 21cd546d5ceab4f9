__thread long per_thread;
long case_entry(long x) { per_thread += x; return x + 2 + per_thread * 0; }
