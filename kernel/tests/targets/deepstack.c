/* Test target for a call on a thread whose stack is used up to its mapping's bottom: the main
 * thread raises its stack limit to 64 MiB, recurses at least argv[1] KiB deep, until its stack
 * pointer lies a few hundred bytes above the start of a page nothing has touched below, says
 * "deep" and waits there in read(stdin). The stack mapping then ends in that page: a call's
 * frame (over 1 KiB) does not fit above its bottom. A line makes it return all the way up and
 * say "back depth=N". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

__attribute__((noinline)) long answer(void) { return 42; }

static char line[64];
static long min_depth;

__attribute__((noinline)) static long dive(long depth) {
    volatile char pad[1024];
    pad[0] = (char)depth;
    uintptr_t here = (uintptr_t)&pad[0] & 0xfff;
    if (depth > min_depth && here >= 0x300 && here < 0x400) {
        if (write(1, "deep\n", 5) != 5) return -1;
        if (read(0, line, sizeof line) <= 0) return -1;
        return depth;
    }
    long deepest = dive(depth + 1);
    return pad[0] == (char)depth ? deepest : -1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    min_depth = argc > 1 ? atol(argv[1]) : 200;
    struct rlimit limit = {64 << 20, RLIM_INFINITY};
    if (getrlimit(RLIMIT_STACK, &limit) || (limit.rlim_cur = 64 << 20, 0) ||
        (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < limit.rlim_cur) ||
        setrlimit(RLIMIT_STACK, &limit)) {
        printf("bad stack limit\n");
        return 1;
    }
    printf("ready answer=%p\n", (void *)answer);
    /* Bind write and read now: the lazy binder saves the vector registers on the stack, far
     * below its caller's frame. */
    if (write(1, "", 0) != 0 || read(-1, line, 1) != -1) return 2;
    long depth = dive(0);
    printf("back depth=%ld\n", depth);
    for (;;) pause();
}
