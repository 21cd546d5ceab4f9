/* Test target for calls that outlive their tracer: the main thread keeps distinctive values in
 * ymm0-15, rbx and r12-r15 across a nanosleep system call, round after round, and checks after
 * each round that they, its signal mask and its alternate signal stack are unchanged and that
 * the sleep returned 0. It prints "ok round=N" per round, "bad ..." and exits on a difference.
 * `slow(ms)` is the function called from outside: it says "in-call", trashes every vector
 * register and sleeps.
 * With the argument "spin" each round runs in user code instead, a loop counting down in memory
 * with distinctive values in every general register but rsp and rbp, and in ymm0-15, checked
 * after the loop: a thread stopped from outside is then almost always stopped in that loop. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Offsets used by the asm: in 0, out 512, gin 1024, gout 1064, ts 1104. */
static struct {
    uint64_t in[16][4];
    uint64_t out[16][4];
    uint64_t gin[5];
    uint64_t gout[5];
    struct timespec ts;
} S __attribute__((aligned(64)));

__attribute__((noinline)) long answer(void) { return 42; }

__attribute__((noinline)) long slow(long ms) {
    static const char msg[] = "in-call\n";
    if (write(1, msg, sizeof msg - 1) < 0) _exit(3);
    __asm__ volatile(
        "vpcmpeqd %%ymm0, %%ymm0, %%ymm0\n"
        "vpcmpeqd %%ymm1, %%ymm1, %%ymm1\n"
        "vpcmpeqd %%ymm2, %%ymm2, %%ymm2\n"
        "vpcmpeqd %%ymm3, %%ymm3, %%ymm3\n"
        "vpcmpeqd %%ymm4, %%ymm4, %%ymm4\n"
        "vpcmpeqd %%ymm5, %%ymm5, %%ymm5\n"
        "vpcmpeqd %%ymm6, %%ymm6, %%ymm6\n"
        "vpcmpeqd %%ymm7, %%ymm7, %%ymm7\n"
        "vpcmpeqd %%ymm8, %%ymm8, %%ymm8\n"
        "vpcmpeqd %%ymm9, %%ymm9, %%ymm9\n"
        "vpcmpeqd %%ymm10, %%ymm10, %%ymm10\n"
        "vpcmpeqd %%ymm11, %%ymm11, %%ymm11\n"
        "vpcmpeqd %%ymm12, %%ymm12, %%ymm12\n"
        "vpcmpeqd %%ymm13, %%ymm13, %%ymm13\n"
        "vpcmpeqd %%ymm14, %%ymm14, %%ymm14\n"
        "vpcmpeqd %%ymm15, %%ymm15, %%ymm15\n"
        ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 7;
}

/* The spin rounds' values, addressed rip-relative from the asm (no register holds a pointer). */
uint64_t spin_gin[14], spin_gout[14], spin_count;
uint64_t spin_vin[16][4] __attribute__((aligned(32))), spin_vout[16][4] __attribute__((aligned(32)));

/* About 10 ms of user code with every register in use; returns 0 when all came back. */
static int spin_round(long round) {
    for (int i = 0; i < 14; i++) spin_gin[i] = 0x5eed000000000000ULL + 256 * round + i;
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 4; j++) spin_vin[i][j] = 0x0fedcba987654321ULL * (round + 3) + 16 * i + j;
    spin_count = 50000000;
#define LD(i, r) "mov spin_gin+" #i "*8(%%rip), %%" #r "\n"
#define ST(i, r) "mov %%" #r ", spin_gout+" #i "*8(%%rip)\n"
#define VLD(i) "vmovdqu spin_vin+" #i "*32(%%rip), %%ymm" #i "\n"
#define VST(i) "vmovdqu %%ymm" #i ", spin_vout+" #i "*32(%%rip)\n"
    __asm__ volatile(
        LD(0, rax) LD(1, rbx) LD(2, rcx) LD(3, rdx) LD(4, rsi) LD(5, rdi) LD(6, r8) LD(7, r9)
        LD(8, r10) LD(9, r11) LD(10, r12) LD(11, r13) LD(12, r14) LD(13, r15)
        VLD(0) VLD(1) VLD(2) VLD(3) VLD(4) VLD(5) VLD(6) VLD(7)
        VLD(8) VLD(9) VLD(10) VLD(11) VLD(12) VLD(13) VLD(14) VLD(15)
        "1: decq spin_count(%%rip)\n"
        "jnz 1b\n"
        ST(0, rax) ST(1, rbx) ST(2, rcx) ST(3, rdx) ST(4, rsi) ST(5, rdi) ST(6, r8) ST(7, r9)
        ST(8, r10) ST(9, r11) ST(10, r12) ST(11, r13) ST(12, r14) ST(13, r15)
        VST(0) VST(1) VST(2) VST(3) VST(4) VST(5) VST(6) VST(7)
        VST(8) VST(9) VST(10) VST(11) VST(12) VST(13) VST(14) VST(15)
        "vzeroupper\n"
        ::: "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
            "r14", "r15", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
            "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    if (memcmp(spin_gin, spin_gout, sizeof spin_gin)) return 1;
    if (memcmp(spin_vin, spin_vout, sizeof spin_vin)) return 2;
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
            if (r) bad(round, r == 1 ? "spin-gpr" : "spin-ymm");
            goto check_mask;
        }
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 4; j++) S.in[i][j] = 0x0123456789abcdefULL * (round + 1) + 16 * i + j;
        for (int i = 0; i < 5; i++) S.gin[i] = 0xfeedface00000000ULL + 256 * round + i;
        long ret;
        __asm__ volatile(
        "vmovdqu 0(%[p]), %%ymm0\n"
        "vmovdqu 32(%[p]), %%ymm1\n"
        "vmovdqu 64(%[p]), %%ymm2\n"
        "vmovdqu 96(%[p]), %%ymm3\n"
        "vmovdqu 128(%[p]), %%ymm4\n"
        "vmovdqu 160(%[p]), %%ymm5\n"
        "vmovdqu 192(%[p]), %%ymm6\n"
        "vmovdqu 224(%[p]), %%ymm7\n"
        "vmovdqu 256(%[p]), %%ymm8\n"
        "vmovdqu 288(%[p]), %%ymm9\n"
        "vmovdqu 320(%[p]), %%ymm10\n"
        "vmovdqu 352(%[p]), %%ymm11\n"
        "vmovdqu 384(%[p]), %%ymm12\n"
        "vmovdqu 416(%[p]), %%ymm13\n"
        "vmovdqu 448(%[p]), %%ymm14\n"
        "vmovdqu 480(%[p]), %%ymm15\n"
        "mov 1024(%[p]), %%rbx\n"
        "mov 1032(%[p]), %%r12\n"
        "mov 1040(%[p]), %%r13\n"
        "mov 1048(%[p]), %%r14\n"
        "mov 1056(%[p]), %%r15\n"
        "mov $35, %%eax\n"
        "lea 1104(%[p]), %%rdi\n"
        "xor %%esi, %%esi\n"
        "syscall\n"
        "vmovdqu %%ymm0, 512(%[p])\n"
        "vmovdqu %%ymm1, 544(%[p])\n"
        "vmovdqu %%ymm2, 576(%[p])\n"
        "vmovdqu %%ymm3, 608(%[p])\n"
        "vmovdqu %%ymm4, 640(%[p])\n"
        "vmovdqu %%ymm5, 672(%[p])\n"
        "vmovdqu %%ymm6, 704(%[p])\n"
        "vmovdqu %%ymm7, 736(%[p])\n"
        "vmovdqu %%ymm8, 768(%[p])\n"
        "vmovdqu %%ymm9, 800(%[p])\n"
        "vmovdqu %%ymm10, 832(%[p])\n"
        "vmovdqu %%ymm11, 864(%[p])\n"
        "vmovdqu %%ymm12, 896(%[p])\n"
        "vmovdqu %%ymm13, 928(%[p])\n"
        "vmovdqu %%ymm14, 960(%[p])\n"
        "vmovdqu %%ymm15, 992(%[p])\n"
        "mov %%rbx, 1064(%[p])\n"
        "mov %%r12, 1072(%[p])\n"
        "mov %%r13, 1080(%[p])\n"
        "mov %%r14, 1088(%[p])\n"
        "mov %%r15, 1096(%[p])\n"
        : "=&a"(ret)
        : [p] "r"(&S)
        : "rdi", "rsi", "rcx", "r11", "rbx", "r12", "r13", "r14", "r15", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
        if (ret != 0) bad(round, "nanosleep result");
        if (memcmp(S.in, S.out, sizeof S.in)) bad(round, "ymm");
        if (memcmp(S.gin, S.gout, sizeof S.gin)) bad(round, "gpr");
    check_mask:
        sigprocmask(SIG_BLOCK, NULL, &mask_now);
        if (memcmp(&mask, &mask_now, sizeof mask)) bad(round, "mask");
        sigaltstack(NULL, &ss_now);
        if (ss_now.ss_sp != ss.ss_sp || ss_now.ss_size != ss.ss_size || ss_now.ss_flags != ss.ss_flags)
            bad(round, "altstack");
        printf("ok round=%ld\n", round);
    }
}
