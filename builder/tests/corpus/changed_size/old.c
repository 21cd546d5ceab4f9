long slots[4];
long case_entry(long x) { slots[x & 3] += x; return slots[x & 3]; }
