/* Test target for the unwinder's facts about signal frames: the main thread spins in
 * `spin_here` with a known value in ebx/rbx until a signal arrives, whose handler says
 * "in-handler" and sleeps: the kernel's own signal frame is then on the stack, above the
 * handler's, holding the spinning state. SIGUSR1's handler takes a siginfo (an rt frame),
 * SIGUSR2's does not (on i386 the older `sigframe` layout). Built for x86_64 and i386. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void spin_here(void);
extern char spin_start[], spin_end[];
/* The same bytes in both modes. */
__asm__(".text\n.globl spin_here\nspin_here:\n mov $0x5eed0003, %ebx\n"
        ".globl spin_start\nspin_start:\n1: jmp 1b\n.globl spin_end\nspin_end:\n");

static void sleep_in_handler(void) {
    static const char in[] = "in-handler\n";
    if (write(1, in, sizeof in - 1) < 0) _exit(3);
    struct timespec ts = {60, 0};
    nanosleep(&ts, NULL);
}

static void on_usr1(int sig, siginfo_t *info, void *uc) { (void)sig, (void)info, (void)uc; sleep_in_handler(); }
static void on_usr2(int sig) { (void)sig; sleep_in_handler(); }

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGUSR1, &sa, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    printf("ready spin_start=%p spin_end=%p\n", (void *)spin_start, (void *)spin_end);
    spin_here();
    return 0;
}
