/* The i386 counterpart of fpu.c (built with -m32), same protocol: the main thread keeps
 * distinctive values in xmm0-7, esi, edi and two x87 registers across an `int $0x80` nanosleep,
 * round after round, and checks after each round that they, its signal mask and its alternate
 * signal stack are unchanged and that the sleep returned 0. It prints "ok round=N" per round,
 * "bad ..." and exits on a difference. `slow(ms)` is the function called from outside: it says
 * "in-call", resets the x87 unit, trashes every xmm register and sleeps.
 * With the argument "spin" each round runs in user code instead, a loop counting down in memory
 * with distinctive values in every general register but esp, ebp and the loop's pointer, and
 * in xmm0-7, checked after the loop.
 * The x87 registers are what an ia32 signal frame keeps apart from the rest of the FPU state
 * (in its `fsave`-format header): lpkg's frames must give them back. */
#define _GNU_SOURCE
/* The xmm registers exist on every CPU that runs x86_64 kernels. */
#pragma GCC target("sse2")
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Offsets used by the asm: in 0, out 128, gin 256, gout 264, fin 272, fout 288, ts 304,
 * spin_count 312, spin_gin 316, spin_gout 336. */
static struct {
    uint32_t in[8][4];
    uint32_t out[8][4];
    uint32_t gin[2];
    uint32_t gout[2];
    double fin[2];
    double fout[2];
    struct timespec ts;
    uint32_t spin_count;
    uint32_t spin_gin[5];
    uint32_t spin_gout[5];
} S __attribute__((aligned(64)));

_Static_assert(__builtin_offsetof(__typeof__(S), ts) == 304, "layout");
_Static_assert(__builtin_offsetof(__typeof__(S), spin_gout) == 336, "layout");

__attribute__((noinline)) long answer(void) { return 42; }

__attribute__((noinline)) long slow(long ms) {
    static const char msg[] = "in-call\n";
    if (write(1, msg, sizeof msg - 1) < 0) _exit(3);
    __asm__ volatile(
        "fninit\n"
        "pcmpeqd %%xmm0, %%xmm0\n"
        "pcmpeqd %%xmm1, %%xmm1\n"
        "pcmpeqd %%xmm2, %%xmm2\n"
        "pcmpeqd %%xmm3, %%xmm3\n"
        "pcmpeqd %%xmm4, %%xmm4\n"
        "pcmpeqd %%xmm5, %%xmm5\n"
        "pcmpeqd %%xmm6, %%xmm6\n"
        "pcmpeqd %%xmm7, %%xmm7\n"
        ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7");
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 7;
}

/* About 10 ms of user code with every register in use; returns 0 when all came back. */
static int spin_round(long round) {
    for (int i = 0; i < 5; i++) S.spin_gin[i] = 0x5eed0000u + 256 * round + i;
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) S.in[i][j] = 0x87654321u * (round + 3) + 16 * i + j;
    S.spin_count = 20000000;
    __asm__ volatile(
        "movdqu 0(%%edi), %%xmm0\n"
        "movdqu 16(%%edi), %%xmm1\n"
        "movdqu 32(%%edi), %%xmm2\n"
        "movdqu 48(%%edi), %%xmm3\n"
        "movdqu 64(%%edi), %%xmm4\n"
        "movdqu 80(%%edi), %%xmm5\n"
        "movdqu 96(%%edi), %%xmm6\n"
        "movdqu 112(%%edi), %%xmm7\n"
        "mov 316(%%edi), %%eax\n"
        "mov 320(%%edi), %%ebx\n"
        "mov 324(%%edi), %%ecx\n"
        "mov 328(%%edi), %%edx\n"
        "mov 332(%%edi), %%esi\n"
        "1: decl 312(%%edi)\n"
        "jnz 1b\n"
        "mov %%eax, 336(%%edi)\n"
        "mov %%ebx, 340(%%edi)\n"
        "mov %%ecx, 344(%%edi)\n"
        "mov %%edx, 348(%%edi)\n"
        "mov %%esi, 352(%%edi)\n"
        "movdqu %%xmm0, 128(%%edi)\n"
        "movdqu %%xmm1, 144(%%edi)\n"
        "movdqu %%xmm2, 160(%%edi)\n"
        "movdqu %%xmm3, 176(%%edi)\n"
        "movdqu %%xmm4, 192(%%edi)\n"
        "movdqu %%xmm5, 208(%%edi)\n"
        "movdqu %%xmm6, 224(%%edi)\n"
        "movdqu %%xmm7, 240(%%edi)\n"
        :
        : "D"(&S)
        : "eax", "ebx", "ecx", "edx", "esi", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3",
          "xmm4", "xmm5", "xmm6", "xmm7");
    if (memcmp(S.spin_gin, S.spin_gout, sizeof S.spin_gin)) return 1;
    if (memcmp(S.in, S.out, sizeof S.in)) return 2;
    return 0;
}

static void bad(long round, const char *what) {
    printf("bad round=%ld what=%s\n", round, what);
    fflush(stdout);
    exit(1);
}

int main(int argc, char **argv) {
    int spin = argc > 1 && !strcmp(argv[1], "spin");
    setvbuf(stdout, NULL, _IOLBF, 0);
    static char alt[65536];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0}, ss_now;
    if (sigaltstack(&ss, NULL)) bad(0, "sigaltstack");
    sigset_t mask, mask_now;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR2);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sigprocmask(SIG_BLOCK, NULL, &mask);
    sigaltstack(NULL, &ss);
    printf("ready slow=%p answer=%p\n", (void *)slow, (void *)answer);
    S.ts.tv_nsec = 20 * 1000000L;
    for (long round = 1;; round++) {
        if (spin) {
            int r = spin_round(round);
            if (r) bad(round, r == 1 ? "spin-gpr" : "spin-xmm");
            goto check_mask;
        }
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 4; j++) S.in[i][j] = 0x89abcdefu * (round + 1) + 16 * i + j;
        for (int i = 0; i < 2; i++) S.gin[i] = 0xface0000u + 256 * round + i;
        S.fin[0] = 1.0 / 3 + round;
        S.fin[1] = -2.5e100 * round;
        long ret;
        __asm__ volatile(
            "movdqu 0(%[p]), %%xmm0\n"
            "movdqu 16(%[p]), %%xmm1\n"
            "movdqu 32(%[p]), %%xmm2\n"
            "movdqu 48(%[p]), %%xmm3\n"
            "movdqu 64(%[p]), %%xmm4\n"
            "movdqu 80(%[p]), %%xmm5\n"
            "movdqu 96(%[p]), %%xmm6\n"
            "movdqu 112(%[p]), %%xmm7\n"
            "mov 256(%[p]), %%esi\n"
            "mov 260(%[p]), %%edi\n"
            "fldl 272(%[p])\n"
            "fldl 280(%[p])\n"
            "mov $162, %%eax\n"
            "lea 304(%[p]), %%ebx\n"
            "xor %%ecx, %%ecx\n"
            "int $0x80\n"
            "fstpl 296(%[p])\n"
            "fstpl 288(%[p])\n"
            "movdqu %%xmm0, 128(%[p])\n"
            "movdqu %%xmm1, 144(%[p])\n"
            "movdqu %%xmm2, 160(%[p])\n"
            "movdqu %%xmm3, 176(%[p])\n"
            "movdqu %%xmm4, 192(%[p])\n"
            "movdqu %%xmm5, 208(%[p])\n"
            "movdqu %%xmm6, 224(%[p])\n"
            "movdqu %%xmm7, 240(%[p])\n"
            "mov %%esi, 264(%[p])\n"
            "mov %%edi, 268(%[p])\n"
            : "=&a"(ret)
            : [p] "d"(&S)
            : "ebx", "ecx", "esi", "edi", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
              "xmm5", "xmm6", "xmm7");
        if (ret != 0) bad(round, "nanosleep result");
        if (memcmp(S.in, S.out, sizeof S.in)) bad(round, "xmm");
        if (memcmp(S.gin, S.gout, sizeof S.gin)) bad(round, "gpr");
        if (memcmp(S.fin, S.fout, sizeof S.fin)) bad(round, "x87");
    check_mask:
        sigprocmask(SIG_BLOCK, NULL, &mask_now);
        /* Only the kernel's 64 signals: i386 glibc leaves the rest of a sigset_t as it was. */
        if (memcmp(&mask, &mask_now, 8)) bad(round, "mask");
        sigaltstack(NULL, &ss_now);
        if (ss_now.ss_sp != ss.ss_sp || ss_now.ss_size != ss.ss_size || ss_now.ss_flags != ss.ss_flags)
            bad(round, "altstack");
        printf("ok round=%ld\n", round);
    }
}
