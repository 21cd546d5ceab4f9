#include <stdio.h>
static long scale(long x) { return x * 3; }
long unchanged(long x) { return x - 1; }
long case_entry(long x) {
    if (x < 0)
        printf("negative %ld\n", x);
    return scale(x) + unchanged(x) + 100;
}
