/* Test target: the main thread runs a SIGUSR1 handler on a small alternate signal stack for
 * about a second ("in-handler"), then says "handler-done"; `answer` is the function called
 * from outside. A call must not build its frame on that small stack. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) long answer(void) { return 42; }

static void on_usr1(int sig) {
    (void)sig;
    static const char in[] = "in-handler\n";
    if (write(1, in, sizeof in - 1) < 0) _exit(3);
    struct timespec ts = {1, 0};
    while (nanosleep(&ts, &ts) != 0) {}
    static const char done[] = "handler-done\n";
    if (write(1, done, sizeof done - 1) < 0) _exit(3);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    static char alt[16384];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
    if (sigaltstack(&ss, NULL)) return 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_ONSTACK;
    sigaction(SIGUSR1, &sa, NULL);
    printf("ready answer=%p\n", (void *)answer);
    raise(SIGUSR1);
    printf("main-done\n");
    for (;;) pause();
}
