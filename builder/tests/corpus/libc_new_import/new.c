#include <stdio.h>
long case_entry(long x) {
    char buf[32];
    return snprintf(buf, sizeof buf, "%ld", x) * 1000 + x * 2;
}
