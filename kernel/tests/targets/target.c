/* Test target for lpkg-kernel: functions to call, threads blocked in system calls, a signal
 * counter, thread churn. Commands arrive on stdin one per line; answers go to stdout.
 *   target [--blockers K] [--sleep-ms MS] [--churn N] [--suspender 1] [--leader-exit 1]
 *          [--seccomp arch|memfd]
 * K threads of each kind (pipe read, accept, nanosleep, futex wait) block until "wake".
 * Built for x86_64 and for i386 (-m32). --seccomp installs a filter before anything else:
 * "arch" kills the process on any system call made with another architecture's convention,
 * "memfd" also on memfd_create. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

volatile long counter;
volatile long sigcount;
volatile long churn_count;
volatile int errors;
static int wake_pipe[2];
static int listen_fd;
static struct sockaddr_un sock_addr;
static volatile int futex_word;
static long sleep_ms = 1500;
static volatile long sleep_min_ms = -1;
static volatile int churn_stop;

__attribute__((noinline)) long answer(void) { return 42; }
__attribute__((noinline)) long add6(long a, long b, long c, long d, long e, long f) {
    return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f;
}
__attribute__((noinline)) long bump(long by) { counter += by; return counter; }
__attribute__((noinline)) long null_deref(void) { return *(volatile long *)0; }
__attribute__((noinline)) long spin(void) { for (;;) counter++; }
/* Returns (sp at entry + return address size) % 16: 0 when called with the ABI's alignment. */
long stack_mod16(void);
#ifdef __i386__
__asm__(".text\n.globl stack_mod16\nstack_mod16:\n lea 4(%esp), %eax\n and $15, %eax\n ret\n");
#define AUDIT_ARCH_NATIVE AUDIT_ARCH_I386
#else
__asm__(".text\n.globl stack_mod16\nstack_mod16:\n lea 8(%rsp), %rax\n and $15, %rax\n ret\n");
#define AUDIT_ARCH_NATIVE AUDIT_ARCH_X86_64
#endif

/* The --seccomp filter: another architecture's calls kill, and with deny_memfd memfd_create. */
static void sandbox(int deny_memfd) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_NATIVE, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_memfd_create, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, deny_memfd ? SECCOMP_RET_KILL_PROCESS : SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
        perror("seccomp");
        exit(2);
    }
}

static void say(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (write(1, buf, n) != n) _exit(3);
}

static void error(const char *what) {
    __sync_fetch_and_add(&errors, 1);
    say("ERR %s: %s\n", what, strerror(errno));
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_signal(int sig) { (void)sig; sigcount++; }

static void *pipe_reader(void *arg) {
    char c;
    ssize_t n = read(wake_pipe[0], &c, 1);
    if (n != 1) error("pipe read");
    return arg;
}

static void *acceptor(void *arg) {
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0) error("accept"); else close(fd);
    return arg;
}

static void *sleeper(void *arg) {
    long start = now_ms();
    struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000};
    if (nanosleep(&ts, NULL) != 0) error("nanosleep");
    long took = now_ms() - start;
    if (took < sleep_ms) { errno = 0; error("nanosleep too short"); }
    long cur;
    do {
        cur = sleep_min_ms;
        if (cur >= 0 && cur <= took) break;
    } while (!__sync_bool_compare_and_swap(&sleep_min_ms, cur, took));
    return arg;
}

static void *futex_waiter(void *arg) {
    while (futex_word == 0) {
        long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
        if (r != 0 && errno != EAGAIN) error("futex wait");
        else if (r == 0 && futex_word == 0) { errno = 0; error("futex spurious wakeup"); }
    }
    return arg;
}

static volatile sig_atomic_t usr2_seen;
static void on_usr2(int sig) { (void)sig; usr2_seen = 1; }

/* Waits in sigsuspend with a temporary mask; afterwards its own mask must be back. */
static void *suspender(void *arg) {
    sigset_t wait_mask, now;
    sigfillset(&wait_mask);
    sigdelset(&wait_mask, SIGUSR2);
    while (!usr2_seen) sigsuspend(&wait_mask);
    pthread_sigmask(SIG_SETMASK, NULL, &now);
    if (sigismember(&now, SIGUSR2) && sigismember(&now, SIGRTMIN) && sigismember(&now, SIGSEGV)) say("suspend ok\n");
    else { errno = 0; error("suspend mask not restored"); }
    return arg;
}

static void *churn_child(void *arg) { __sync_fetch_and_add(&churn_count, 1); return arg; }

static void *churner(void *arg) {
    while (!churn_stop) {
        pthread_t t;
        if (pthread_create(&t, NULL, churn_child, NULL) != 0) { error("pthread_create"); continue; }
        pthread_join(t, NULL);
    }
    return arg;
}

static int blockers, nthreads;
static pthread_t *threads;
static socklen_t alen;

static void *command_loop(void *arg) {
    char line[256];
    size_t len = 0;
    for (;;) {
        char c;
        ssize_t n = read(0, &c, 1);
        if (n < 0) { error("stdin read"); if (errno == EINTR) continue; exit(1); }
        if (n == 0) exit(0);
        if (c != '\n') { if (len < sizeof line - 1) line[len++] = c; continue; }
        line[len] = 0;
        len = 0;
        if (!strcmp(line, "ping")) {
            say("pong counter=%ld sig=%ld churn=%ld errors=%d\n", counter, sigcount, churn_count, errors);
        } else if (!strncmp(line, "sleep ", 6)) {
            long ms = atol(line + 6), start = now_ms();
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
            int rc = nanosleep(&ts, NULL);
            say("slept ms=%ld rc=%d errno=%d\n", now_ms() - start, rc, rc ? errno : 0);
        } else if (!strcmp(line, "wake")) {
            for (int i = 0; i < blockers; i++) {
                if (write(wake_pipe[1], "x", 1) != 1) error("wake write");
                int fd = socket(AF_UNIX, SOCK_STREAM, 0);
                if (connect(fd, (struct sockaddr *)&sock_addr, alen) != 0) error("connect");
                close(fd);
            }
            futex_word = 1;
            syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1 << 30, NULL, NULL, 0);
            for (int i = 0; i < nthreads; i++) pthread_join(threads[i], NULL);
            say("woke errors=%d sleepmin=%ld\n", errors, sleep_min_ms);
        } else if (!strcmp(line, "quit")) {
            churn_stop = 1;
            exit(0);
        } else {
            say("unknown %s\n", line);
        }
    }
    return arg;
}

int main(int argc, char **argv) {
    int churn = 0, suspend = 0, leader_exit = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--blockers")) blockers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sleep-ms")) sleep_ms = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--churn")) churn = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--suspender")) suspend = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--leader-exit")) leader_exit = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seccomp")) sandbox(!strcmp(argv[i + 1], "memfd"));
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGRTMIN, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGSYS, &sa, NULL);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);

    if (pipe(wake_pipe) != 0) error("pipe");
    listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sock_addr.sun_family = AF_UNIX;
    /* Abstract socket name: nothing to clean up on disk. */
    snprintf(sock_addr.sun_path + 1, sizeof sock_addr.sun_path - 1, "lpkg-target-%d", getpid());
    alen = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sock_addr.sun_path + 1);
    if (bind(listen_fd, (struct sockaddr *)&sock_addr, alen) != 0 || listen(listen_fd, 256) != 0) error("listen");

    /* Only the main thread takes signals: blockers must see nothing but our operations. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    nthreads = 4 * blockers;
    threads = calloc(nthreads + 1, sizeof *threads);
    void *(*kinds[4])(void *) = {pipe_reader, acceptor, sleeper, futex_waiter};
    const char *names[4] = {"pipe", "accept", "sleep", "futex"};
    for (int i = 0; i < nthreads; i++) {
        pthread_create(&threads[i], NULL, kinds[i % 4], NULL);
        char name[16];
        snprintf(name, sizeof name, "%s-%d", names[i % 4], i / 4);
        pthread_setname_np(threads[i], name);
    }
    pthread_t churners[16];
    for (int i = 0; i < churn && i < 16; i++) pthread_create(&churners[i], NULL, churner, NULL);
    if (suspend) {
        pthread_t t;
        pthread_create(&t, NULL, suspender, NULL);
        pthread_setname_np(t, "suspend");
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    say("ready pid=%d answer=%p add6=%p bump=%p null_deref=%p spin=%p stack_mod16=%p counter=%p\n",
        getpid(), (void *)answer, (void *)add6, (void *)bump, (void *)null_deref, (void *)spin,
        (void *)stack_mod16, (void *)&counter);

    if (leader_exit) {
        /* The leader exits and stays a zombie while the other threads run. */
        pthread_t t;
        pthread_create(&t, NULL, command_loop, NULL);
        pthread_setname_np(t, "commands");
        pthread_exit(NULL);
    }
    command_loop(NULL);
    return 0;
}
