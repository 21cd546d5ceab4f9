#include <stdio.h>
long case_entry(long x) { return x + fileno(stdout); }
