#include <stdio.h>
long table[64];
static long lookup(long x) {
    if (x < 0)
        return -1;
    long s = 0;
    for (int i = 0; i < 64; i++) {
        table[i] += x ^ i;
        s += table[i] % 5;
        if (s == 123456789) printf("odd %ld\n", s);
    }
    for (int i = 0; i < 64; i++) {
        table[i] += x ^ (i * 3);
        s += table[i] % 11;
        if (s == 123456789) printf("odd %ld\n", s);
    }
    return s;
}
long case_entry(long x) { return lookup(x) + lookup(x - 100) + lookup(x * 2) ; }
