/* Test target for a ptrace request failing at a system-call stop: the main thread writes a
 * counter into a pipe and reads it back, round after round, without ever blocking. A write
 * made a second time shows as a read that does not return the value just written: it prints
 * "bad ..." and exits. Another thread answers each stdin line with "pong round=N". */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile long long rounds; /* 8 bytes written per round, on i386 too */

static void *talk(void *arg) {
    (void)arg;
    char line[64];
    while (fgets(line, sizeof line, stdin)) printf("pong round=%lld\n", rounds);
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int p[2];
    if (pipe(p)) return 2;
    pthread_t t;
    if (pthread_create(&t, NULL, talk, NULL)) return 2;
    printf("ready\n");
    for (long long i = 0;; i++) {
        long long got = -1;
        if (write(p[1], &i, sizeof i) != sizeof i) {
            printf("bad write round=%lld\n", i);
            exit(1);
        }
        if (read(p[0], &got, sizeof got) != sizeof got || got != i) {
            printf("bad round=%lld got=%lld\n", i, got);
            exit(1);
        }
        rounds = i;
    }
}
