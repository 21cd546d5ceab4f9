/* Live-test target for new code written in place: reads a number per line on stdin and
 * answers with same(x) grow(x) calls(x) framed(x). VERSION (set on the command line) picks
 * the version of each function; only one of them can take its new code in place:
 *   same   - a closed leaf whose fix keeps its size and frame: in place;
 *   grow   - a closed leaf whose fix does not fit in it and its padding: a jump;
 *   calls  - calls helper(): return addresses may point into it: a jump;
 *   framed - a closed leaf whose fix calls helper() and so needs a stack frame: a jump. */
#include <stdio.h>
#include <stdlib.h>

#ifndef VERSION
#define VERSION 1
#endif

__attribute__((noipa)) long helper(long x)
{
    return x ^ 0x55;
}

__attribute__((noipa)) long same(long x)
{
    return x * 3 + VERSION;
}

__attribute__((noipa)) long grow(long x)
{
#if VERSION == 1
    return x + 1;
#else
    long s = x;
    for (long k = 0; k < (x & 7); k++)
        s = s * 31 + k * x;
    return s + 2;
#endif
}

__attribute__((noipa)) long calls(long x)
{
    return helper(x) + VERSION;
}

__attribute__((noipa)) long framed(long x)
{
#if VERSION == 1
    long s = x;
    for (long k = 0; k < (x & 3); k++)
        s = s * 31 + k;
    return s + 1;
#else
    return helper(x) + 2;
#endif
}

int main(void)
{
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        long x = strtol(line, NULL, 10);
        printf("%ld %ld %ld %ld\n", same(x), grow(x), calls(x), framed(x));
        fflush(stdout);
    }
    return 0;
}
