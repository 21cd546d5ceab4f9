/* C target for unwinding through patched code by the target's own unwinder (issue 21), built
 * with -fexceptions: pthread_cancel of a thread blocked inside a patched function, whose
 * cleanup handlers (its own and its caller's) must run, and backtrace() from inside new code.
 * Commands on stdin, one answer line each:
 *   trace   traced() calls trace_here(), which answers "trace v=V found=F": F = 1 when the
 *           backtrace taken there reaches the caller (the unwinder got through this frame)
 *   start   starts a thread that blocks in read() inside blocker(); answers "started"
 *   cancel  cancels and joins it: "joined canceled=C inner=I outer=O", I = the VERSION of the
 *           blocker whose cleanup handler ran (0: none), O = 1 when its caller's ran
 * VERSION 1 is the program, 2 the fix. */
#include <execinfo.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION 1
#endif

static int fds[2];
static volatile int inner, outer;
static pthread_barrier_t barrier;

static void inner_done(void *version) { inner = (int)(long)version; }
static void outer_done(void *unused) { (void)unused; outer = 1; }

__attribute__((noinline)) int trace_here(void) {
    void *frames[32];
    int n = backtrace(frames, 32), found = 0;
    for (int i = 0; i < n; i++)
        if (frames[i] == __builtin_return_address(0)) found = 1;
    printf("trace v=%d found=%d\n", VERSION, found);
    return n;
}

__attribute__((noinline)) int traced(void) { return trace_here() + 1; }

__attribute__((noinline)) long blocker(int fd) {
    char c;
    long n;
    pthread_cleanup_push(inner_done, (void *)(long)VERSION);
    pthread_barrier_wait(&barrier);
    n = read(fd, &c, 1); /* a cancellation point; nobody writes */
    pthread_cleanup_pop(0);
    return n + VERSION;
}

static void *blocked(void *unused) {
    long n = 0;
    (void)unused;
    pthread_cleanup_push(outer_done, NULL);
    n = blocker(fds[0]);
    pthread_cleanup_pop(0);
    return (void *)n;
}

int main(void) {
    char line[64];
    pthread_t thread;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pipe(fds)) return 1;
    pthread_barrier_init(&barrier, NULL, 2);
    while (fgets(line, sizeof line, stdin)) {
        if (!strcmp(line, "trace\n")) {
            traced();
        } else if (!strcmp(line, "start\n")) {
            inner = outer = 0;
            pthread_create(&thread, NULL, blocked, NULL);
            pthread_barrier_wait(&barrier);
            usleep(50000); /* into its read() */
            printf("started\n");
        } else if (!strcmp(line, "cancel\n")) {
            void *result;
            pthread_cancel(thread);
            pthread_join(thread, &result);
            printf("joined canceled=%d inner=%d outer=%d\n", result == PTHREAD_CANCELED, inner,
                   outer);
        }
    }
    return 0;
}
