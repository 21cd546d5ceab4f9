long counter = 40;
static long scale = 3;
long case_entry(long x) { if (x == 777) scale++; counter += 2; return x * scale + counter; }
