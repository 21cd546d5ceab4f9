/* Test target for the wide vector state a signal frame must give back: like fpu.c, the main
 * thread keeps distinctive values in registers across a nanosleep system call, round after
 * round, and checks them after each round ("ok round=N", or "bad round=N what=..." and exit).
 * Here they are the AVX-512 registers (zmm0-31, k0-7) and, with AMX, the tile registers.
 *   zmm           zmm0-31 and k0-7
 *   amx           the same, and tmm0-7 loaded (permission asked with ARCH_REQ_XCOMP_PERM):
 *                 the thread's signal frames hold its 8 KiB of tile data
 *   amx-released  the same as zmm, in a thread that used its tiles once and released them:
 *                 its signal frames are sized for tile data that is in its initial state
 * `slow(ms)` is the function called from outside: it says "in-call", trashes every register
 * checked (and configures and fills the tiles in amx-released mode), and sleeps.
 * Built without -mavx512f so that no compiled code touches zmm16-31, k0-7 or the tiles. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

enum { ZMM, AMX, AMX_RELEASED } mode;

/* Offsets used by the asm: zin 0, zout 2048, kin 4096, kout 4160, ts 4224. */
static struct {
    uint64_t zin[32][8];
    uint64_t zout[32][8];
    uint64_t kin[8];
    uint64_t kout[8];
    struct timespec ts;
} S __attribute__((aligned(64)));

/* Offsets used by the asm: tin 0, tout 8192; each tile 16 rows of 64 bytes. */
static struct {
    uint8_t tin[8][1024];
    uint8_t tout[8][1024];
} T __attribute__((aligned(64)));

/* palette 1, tiles 0-7 of 16 rows x 64 bytes (LDTILECFG's 64-byte layout). */
static uint8_t tilecfg[64] __attribute__((aligned(64)));
static uint8_t tilecfg_now[64] __attribute__((aligned(64)));

__attribute__((noinline)) long answer(void) { return 42; }

static void load_tilecfg(void) { __asm__ volatile("ldtilecfg %0" ::"m"(tilecfg)); }

static void store_tilecfg(void) { __asm__ volatile("sttilecfg %0" : "=m"(tilecfg_now)); }

#define TZERO "tilezero %%tmm0\n tilezero %%tmm1\n tilezero %%tmm2\n tilezero %%tmm3\n" \
              "tilezero %%tmm4\n tilezero %%tmm5\n tilezero %%tmm6\n tilezero %%tmm7\n"

__attribute__((noinline)) long slow(long ms) {
    static const char msg[] = "in-call\n";
    if (write(1, msg, sizeof msg - 1) < 0) _exit(3);
#define ONES(i) "vpternlogd $0xff, %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n"
#define KONES(i) "kxnorw %%k0, %%k0, %%k" #i "\n"
    __asm__ volatile(
        ONES(0) ONES(1) ONES(2) ONES(3) ONES(4) ONES(5) ONES(6) ONES(7)
        ONES(8) ONES(9) ONES(10) ONES(11) ONES(12) ONES(13) ONES(14) ONES(15)
        ONES(16) ONES(17) ONES(18) ONES(19) ONES(20) ONES(21) ONES(22) ONES(23)
        ONES(24) ONES(25) ONES(26) ONES(27) ONES(28) ONES(29) ONES(30) ONES(31)
        KONES(1) KONES(2) KONES(3) KONES(4) KONES(5) KONES(6) KONES(7) KONES(0)
        ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
            "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
    if (mode == AMX_RELEASED) load_tilecfg();
    if (mode != ZMM) __asm__ volatile(TZERO ::: "memory");
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 7;
}

static void bad(long round, const char *what) {
    printf("bad round=%ld what=%s\n", round, what);
    fflush(stdout);
    exit(1);
}

#define ZLD(i) "vmovdqu64 " #i "*64(%[p]), %%zmm" #i "\n"
#define ZST(i) "vmovdqu64 %%zmm" #i ", 2048+" #i "*64(%[p])\n"
#define KLD(i) "kmovw 4096+" #i "*8(%[p]), %%k" #i "\n"
#define KST(i) "kmovw %%k" #i ", 4160+" #i "*8(%[p])\n"
#define TLD(i) "tileloadd " #i "*1024(%[t],%[stride],1), %%tmm" #i "\n"
#define TST(i) "tilestored %%tmm" #i ", 8192+" #i "*1024(%[t],%[stride],1)\n"
#define ZLD_ALL ZLD(0) ZLD(1) ZLD(2) ZLD(3) ZLD(4) ZLD(5) ZLD(6) ZLD(7) ZLD(8) ZLD(9) \
    ZLD(10) ZLD(11) ZLD(12) ZLD(13) ZLD(14) ZLD(15) ZLD(16) ZLD(17) ZLD(18) ZLD(19) ZLD(20) \
    ZLD(21) ZLD(22) ZLD(23) ZLD(24) ZLD(25) ZLD(26) ZLD(27) ZLD(28) ZLD(29) ZLD(30) ZLD(31) \
    KLD(0) KLD(1) KLD(2) KLD(3) KLD(4) KLD(5) KLD(6) KLD(7)
#define ZST_ALL ZST(0) ZST(1) ZST(2) ZST(3) ZST(4) ZST(5) ZST(6) ZST(7) ZST(8) ZST(9) \
    ZST(10) ZST(11) ZST(12) ZST(13) ZST(14) ZST(15) ZST(16) ZST(17) ZST(18) ZST(19) ZST(20) \
    ZST(21) ZST(22) ZST(23) ZST(24) ZST(25) ZST(26) ZST(27) ZST(28) ZST(29) ZST(30) ZST(31) \
    KST(0) KST(1) KST(2) KST(3) KST(4) KST(5) KST(6) KST(7)
#define SLEEP "mov $35, %%eax\n lea 4224(%[p]), %%rdi\n xor %%esi, %%esi\n syscall\n"
#define CLOBBERS "rdi", "rsi", "rcx", "r11", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", \
    "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

/* One round's sleep with every checked register loaded; returns the sleep's result. */
static long sleep_round(void) {
    long ret;
    if (mode == AMX) {
        __asm__ volatile(
            TLD(0) TLD(1) TLD(2) TLD(3) TLD(4) TLD(5) TLD(6) TLD(7) ZLD_ALL SLEEP ZST_ALL
            TST(0) TST(1) TST(2) TST(3) TST(4) TST(5) TST(6) TST(7)
            : "=&a"(ret)
            : [p] "r"(&S), [t] "r"(&T), [stride] "r"(64L)
            : CLOBBERS);
    } else {
        __asm__ volatile(ZLD_ALL SLEEP ZST_ALL : "=&a"(ret) : [p] "r"(&S) : CLOBBERS);
    }
    return ret;
}

int main(int argc, char **argv) {
    const char *arg = argc > 1 ? argv[1] : "zmm";
    mode = !strcmp(arg, "amx") ? AMX : !strcmp(arg, "amx-released") ? AMX_RELEASED : ZMM;
    setvbuf(stdout, NULL, _IOLBF, 0);
    tilecfg[0] = 1;
    for (int i = 0; i < 8; i++) {
        tilecfg[16 + 2 * i] = 64; /* colsb, 16 bits */
        tilecfg[48 + i] = 16;     /* rows */
    }
    if (mode != ZMM) {
        if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) bad(0, "arch_prctl");
        load_tilecfg();
        if (mode == AMX_RELEASED) __asm__ volatile(TZERO "tilerelease\n" ::: "memory");
    }
    printf("ready slow=%p answer=%p\n", (void *)slow, (void *)answer);
    S.ts.tv_nsec = 20 * 1000000L;
    for (long round = 1;; round++) {
        for (int i = 0; i < 32; i++)
            for (int j = 0; j < 8; j++) S.zin[i][j] = 0x0123456789abcdefULL * (round + 1) + 16 * i + j;
        for (int i = 0; i < 8; i++) S.kin[i] = (0x5a00 + 16 * round + i) & 0xffff;
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 1024; j++) T.tin[i][j] = (uint8_t)(round * 31 + i * 7 + j);
        memset(&S.zout, 0, sizeof S.zout);
        memset(&S.kout, 0, sizeof S.kout);
        memset(&T.tout, 0, sizeof T.tout);
        if (sleep_round() != 0) bad(round, "nanosleep result");
        if (memcmp(S.zin, S.zout, sizeof S.zin)) bad(round, "zmm");
        for (int i = 0; i < 8; i++)
            if ((S.kout[i] & 0xffff) != S.kin[i]) bad(round, "opmask");
        if (mode != ZMM) {
            /* STTILECFG stores zeros when the tiles are not configured. */
            store_tilecfg();
            static const uint8_t released[64];
            const uint8_t *want = mode == AMX ? tilecfg : released;
            if (memcmp(tilecfg_now, want, 64)) bad(round, "tilecfg");
        }
        if (mode == AMX && memcmp(T.tin, T.tout, sizeof T.tin)) bad(round, "tiles");
        printf("ok round=%ld\n", round);
    }
}
