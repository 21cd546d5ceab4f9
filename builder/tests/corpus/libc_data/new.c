#include <stdio.h>
long case_entry(long x) { return x * 10 + fileno(stdout); }
