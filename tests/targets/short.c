/* Live-test target for functions shorter than the 5-byte jump. Reads a number per line on
 * stdin and answers "ones counts hooks three(x) wrap(x)": how much one(), two(count) and the
 * call through hook_pointer bumped their counters, then three(x) and wrap(x) (four(x) but
 * for version 5). "busy" starts a thread calling them all in a tight loop. VERSION 1 is the
 * running program; 2 fixes one (1 byte), two (2), three (3) and four (4); 3 also fixes hook
 * (1 byte), whose address is stored in hook_pointer; 4 is 2 with count calling one; 5 is 2
 * with wrap adding 100. Built at -O2 (padding follows each function) and at
 * -Os -falign-functions=1 (none does). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VERSION
#define VERSION 1
#endif
#define NOIPA __attribute__((noipa))

__thread long ones, counts, hooks;

NOIPA void one(void);

NOIPA void count(void)
{
    counts++;
#if VERSION == 4
    one();
#endif
}

/* ret */
NOIPA void one(void)
{
#if VERSION >= 2
    ones++;
#endif
}

/* ret */
NOIPA void hook(void)
{
#if VERSION == 3
    hooks++;
#endif
}

void (*volatile hook_pointer)(void) = hook;

/* jmp *%rdi */
NOIPA void two(void (*f)(void))
{
    f();
#if VERSION >= 2
    f();
#endif
}

/* mov %edi,%eax; ret */
NOIPA int three(int x)
{
#if VERSION >= 2
    return x + 30;
#else
    return x;
#endif
}

/* mov %rdi,%rax; ret */
NOIPA long four(long x)
{
#if VERSION >= 2
    return x + 40;
#else
    return x;
#endif
}

/* Calls four past its first 5 bytes. */
NOIPA long wrap(long x)
{
#if VERSION == 5
    return four(x + 1000) - 900;
#else
    return four(x + 1000) - 1000;
#endif
}

static volatile long sink;

static void *busy(void *arg)
{
    (void)arg;
    for (long i = 0;; i++) {
        one();
        two(count);
        hook_pointer();
        sink += three((int)i) + four(i);
    }
    return NULL;
}

int main(void)
{
    char line[64];
    pthread_t thread;
    while (fgets(line, sizeof line, stdin)) {
        if (strcmp(line, "busy\n") == 0) {
            pthread_create(&thread, NULL, busy, NULL);
            printf("busy\n");
        } else {
            long x = atol(line), o = ones, c = counts, h = hooks;
            one();
            two(count);
            hook_pointer();
            printf("%ld %ld %ld %d %ld\n", ones - o, counts - c, hooks - h, three((int)x), wrap(x));
        }
        fflush(stdout);
    }
    return 0;
}
