/* Live-test target: reads commands on stdin, one per line, and answers each on stdout.
 *   <number>  -> compute(number) and scale(number)
 *   park      -> starts a thread that spins inside compute() until the process ends
 *   threads N -> starts N threads that call compute() and scale() in a loop
 * VERSION is set on the command line so one source gives every version of the functions;
 * compute() and scale() stay out of line so that only they change between versions. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION 1
#endif

volatile int parked = 1;
volatile long sink;

__attribute__((noinline)) long compute(long x)
{
    if (x == -7) {
        while (parked)
            ;
    }
    return x * (VERSION + 1);
}

__attribute__((noinline)) long scale(long x)
{
    return x + 100 * VERSION;
}

static void *park(void *arg)
{
    (void)arg;
    sink = compute(-7);
    return NULL;
}

static void *busy(void *arg)
{
    long i = (long)arg;
    for (;;) {
        sink = compute(i) + scale(i);
        usleep(100);
    }
    return NULL;
}

int main(void)
{
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        pthread_t thread;
        if (strncmp(line, "park", 4) == 0) {
            pthread_create(&thread, NULL, park, NULL);
            usleep(20000);
            printf("parked\n");
        } else if (strncmp(line, "threads", 7) == 0) {
            long n = strtol(line + 7, NULL, 10);
            for (long i = 0; i < n; i++)
                pthread_create(&thread, NULL, busy, (void *)i);
            printf("started %ld\n", n);
        } else {
            long x = strtol(line, NULL, 10);
            printf("%ld %ld\n", compute(x), scale(x));
        }
        fflush(stdout);
    }
    return 0;
}
