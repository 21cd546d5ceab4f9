/* Safety test target. Two patched value functions printed together each 10 ms (all old:
 * "1 10", all new: "2 20"), plus, by mode (argv[1]):
 *   plain       nothing else
 *   park:N      a thread enters parked(), sleeps N s inside it in a system call, then leaves
 *   recurse     a thread recurses through recursive() and sleeps at the bottom
 *   signal      the main thread spins inside spin(); a SIGALRM handler interrupts it and
 *               sleeps for an hour, so spin() is only visible through the signal frame
 *   siginfo     the same with an SA_SIGINFO handler: an rt signal frame (on i386, `signal`
 *               gives the older non-rt frame)
 *   churn       a thread creates a short-lived thread (calling both functions) every 200 us
 *   leaderless  the main thread exits (pthread_exit): a zombie leader, the printer runs on
 *   vfork:N     after N s the main thread calls vfork(); the child sleeps a minute, so the
 *               main thread stays in vfork(), where no ptrace interrupt stops it
 *   seccomp:kill-memfd  a seccomp filter kills the process on memfd_create
 *   seccomp:deny-ptrace a seccomp filter fails ptrace() with EPERM, allows the rest
 *   mdwe        memory-deny-write-execute (PR_SET_MDWE): no mapping may become executable
 *   clock       the main thread calls clock_gettime() in a loop: it is in the vDSO most of
 *               the time (on i386 in code without CFI)
 *   timed       the same inside timed(), a patched function: the vDSO returns into it
 *   fork        park:1, and a thread forks a child every millisecond; 50 ms later the child compares its
 *               own lpkg record state with its own code and prints "INCONSISTENT ..." if the
 *               record says applied over old code or no/loading record over new code */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

__attribute__((noipa)) int value_a(void) { return 2; }
__attribute__((noipa)) int value_b(void) { return 20; }

volatile int park_seconds;
volatile unsigned long spins;

__attribute__((noipa)) int parked(void) {
    sleep(park_seconds);
    return value_a() + 200;
}

__attribute__((noipa)) int recursive(int n) {
    if (n == 0) {
        sleep(3600);
        return 0;
    }
    return recursive(n - 1) + 2 + (int)(spins & 1);
}

__attribute__((noipa)) void spin(void) {
    for (;;) spins += 3;
}

__attribute__((noipa)) void timed(void) {
    struct timespec now;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        spins += 2;
    }
}

static void on_alarm(int sig) {
    (void)sig;
    sleep(3600);
}

static void on_alarm_info(int sig, siginfo_t *info, void *context) {
    (void)info;
    (void)context;
    on_alarm(sig);
}

static void *parker(void *arg) {
    (void)arg;
    parked();
    for (;;) pause();
    return 0;
}

static void *recurser(void *arg) {
    (void)arg;
    recursive(50);
    return 0;
}

/* State word of this process's lpkg record, 0 if none. */
static unsigned record_state(void) {
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    unsigned state = 0;
    while (maps && fgets(line, sizeof line, maps)) {
        unsigned long start, offset;
        /* The record is the mapping at file offset 0; its module follows in the same memfd. */
        if (strstr(line, "/memfd:lpkg:") && sscanf(line, "%lx-%*x %*s %lx", &start, &offset) == 2
            && offset == 0) {
            state = *(volatile unsigned *)(start + 8);
        }
    }
    if (maps) fclose(maps);
    return state;
}

static void *short_lived(void *arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++) spins += value_a() + value_b();
    return 0;
}

static void *churner(void *arg) {
    (void)arg;
    for (;;) {
        pthread_t t;
        if (pthread_create(&t, 0, short_lived, 0) == 0) pthread_detach(t);
        usleep(200);
    }
    return 0;
}

static void *forker(void *arg) {
    (void)arg;
    for (;;) {
        pid_t child = fork();
        if (child == 0) {
            usleep(50000);
            unsigned state = record_state();
            int a = value_a(), b = value_b();
            int mixed_ok = state == 2 || state == 4;
            if (!mixed_ok && ((state == 3) != (a == 2) || (state == 3) != (b == 20))) {
                printf("INCONSISTENT state %u values %d %d\n", state, a, b);
                fflush(stdout);
            }
            _exit(0);
        }
        while (waitpid(-1, 0, WNOHANG) > 0) {
        }
        usleep(1000);
    }
    return 0;
}

static void *printer(void *arg) {
    (void)arg;
    for (;;) {
        printf("%d %d\n", value_a(), value_b());
        fflush(stdout);
        usleep(10000);
    }
    return 0;
}

/* Installs a filter: syscall `nr` gets `action`, everything else is allowed (x86_64 only). */
static void seccomp_filter(int nr, unsigned action) {
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof code / sizeof code[0], code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
        perror("seccomp");
        exit(1);
    }
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "plain";
    pthread_t t;
    /* Before any thread: every thread has the filter. */
    if (strcmp(mode, "seccomp:kill-memfd") == 0)
        seccomp_filter(SYS_memfd_create, SECCOMP_RET_KILL_PROCESS);
    else if (strcmp(mode, "seccomp:deny-ptrace") == 0)
        seccomp_filter(SYS_ptrace, SECCOMP_RET_ERRNO | 1);
    else if (strcmp(mode, "mdwe") == 0 && prctl(65 /* PR_SET_MDWE */, 1, 0, 0, 0)) {
        perror("PR_SET_MDWE");
        exit(1);
    }
    pthread_create(&t, 0, printer, 0);
    if (strncmp(mode, "park:", 5) == 0) {
        park_seconds = atoi(mode + 5);
        pthread_create(&t, 0, parker, 0);
    } else if (strcmp(mode, "recurse") == 0) {
        pthread_create(&t, 0, recurser, 0);
    } else if (strcmp(mode, "churn") == 0) {
        pthread_create(&t, 0, churner, 0);
    } else if (strcmp(mode, "fork") == 0) {
        park_seconds = 1;
        pthread_create(&t, 0, parker, 0);
        pthread_create(&t, 0, forker, 0);
    } else if (strcmp(mode, "leaderless") == 0) {
        pthread_exit(0);
    } else if (strncmp(mode, "vfork:", 6) == 0) {
        sleep(atoi(mode + 6));
        if (vfork() == 0) {
            sleep(60);
            _exit(0);
        }
    } else if (strcmp(mode, "clock") == 0) {
        struct timespec now;
        for (;;) clock_gettime(CLOCK_MONOTONIC, &now);
    } else if (strcmp(mode, "timed") == 0) {
        timed();
    } else if (strcmp(mode, "signal") == 0) {
        signal(SIGALRM, on_alarm);
        alarm(1);
        spin();
    } else if (strcmp(mode, "siginfo") == 0) {
        struct sigaction action = {.sa_sigaction = on_alarm_info, .sa_flags = SA_SIGINFO};
        sigaction(SIGALRM, &action, NULL);
        alarm(1);
        spin();
    }
    for (;;) pause();
}
