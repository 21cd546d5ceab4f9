/* Test target for shadow variables and patch routines (tests/shadows.rs). One line on stdin,
 * one line of answer:
 *   dep A X      deposit X into account A: "ok BALANCE", or "frozen", or "limit"
 *   freeze A     freeze account A: "ok"
 *   report A     what is known of account A: "deposits n/a" (1, 2, 4) or "deposits N" (3)
 *   storm T K    T threads each touch cells 0..K-1 once, at the same time: "done"
 *   storm T K M  the same, again and again for M milliseconds, each thread resting 1 ms between
 *                passes (so that a switch finds every thread outside touch()): "done N" (N
 *                touches in all)
 *   touches K    over cells 0..K-1: "touches SUM CELLS MIN MAX" (cells with a count), or
 *                "touches n/a" where no per-cell count is kept (1)
 *   busy N       sets `busy` (what the check routine of version 4 looks at): "ok"
 *   freed        shadows the exit routine freed so far: "freed N"
 *
 * VERSION picks the code:
 *   1  the deployed program: one frozen account at a time (global frozen_id), no deposit limit.
 *   2  the fix, adapted with shadow variables (the layout of struct account stays): any number
 *      of frozen accounts (a FROZEN shadow; the init routine migrates frozen_id), at most
 *      LIMIT deposits per account (a DEPOSITS shadow), a count per touched cell (TOUCHES,
 *      created lazily by whichever thread touches first); the exit routine frees them all.
 *   3  stacked on 2 (built from version 2's objects): report() reads version 2's DEPOSITS.
 *   4  version 2 with a check routine that refuses the apply while `busy` is set. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef VERSION
#define VERSION 1
#endif

#define SHADOWS (VERSION >= 2)
#if SHADOWS
#include "lpkg.h"
#define DEPOSITS 0x1701ul
#define FROZEN 0x1702ul
#define TOUCHES 0x1703ul
#define LIMIT 3
#endif

#define ACCOUNTS 64
#define CELLS 100000

struct account {
    int id;
    long balance;
};

struct account accounts[ACCOUNTS];
int frozen_id = -1;
int busy;
long shadows_freed;
long touch_total;
char cells[CELLS];

__attribute__((noipa)) int is_frozen(struct account *a)
{
#if SHADOWS
    return lpkg_shadow_get(a, FROZEN) != NULL;
#else
    return a->id == frozen_id;
#endif
}

__attribute__((noipa)) void freeze(struct account *a)
{
#if SHADOWS
    lpkg_shadow_get_or_alloc(a, FROZEN, 1);
#else
    frozen_id = a->id;
#endif
}

__attribute__((noipa)) const char *deposit(struct account *a, long x)
{
    if (is_frozen(a))
        return "frozen";
#if SHADOWS
    long *n = lpkg_shadow_get_or_alloc(a, DEPOSITS, sizeof *n);
    if (!n)
        return "no memory";
    if (*n >= LIMIT)
        return "limit";
    ++*n;
#endif
    a->balance += x;
    return "ok";
}

__attribute__((noipa)) void report(struct account *a, char *out, size_t len)
{
#if VERSION == 3
    long *n = lpkg_shadow_get(a, DEPOSITS);
    snprintf(out, len, "deposits %ld", n ? *n : 0L);
#else
    (void)a;
    snprintf(out, len, "deposits n/a");
#endif
}

__attribute__((noipa)) void touch(void *cell)
{
#if SHADOWS
    long *n = lpkg_shadow_get_or_alloc(cell, TOUCHES, sizeof *n);
    if (n)
        __atomic_fetch_add(n, 1, __ATOMIC_RELAXED);
#else
    (void)cell;
#endif
    __atomic_fetch_add(&touch_total, 1, __ATOMIC_RELAXED);
}

__attribute__((noipa)) void touches(long k, char *out, size_t len)
{
#if SHADOWS
    long sum = 0, counted = 0, min = -1, max = 0;
    for (long i = 0; i < k && i < CELLS; i++) {
        long *n = lpkg_shadow_get(&cells[i], TOUCHES);
        if (!n)
            continue;
        sum += *n;
        counted++;
        min = (min < 0 || *n < min) ? *n : min;
        max = *n > max ? *n : max;
    }
    snprintf(out, len, "touches %ld %ld %ld %ld", sum, counted, min, max);
#else
    (void)k;
    snprintf(out, len, "touches n/a");
#endif
}

#if VERSION == 2 || VERSION == 4
/* The one account frozen before the fix stays frozen after it. */
static int migrate_frozen(void)
{
    if (frozen_id >= 0 && frozen_id < ACCOUNTS &&
        !lpkg_shadow_get_or_alloc(&accounts[frozen_id], FROZEN, 1))
        return 1;
    return 0;
}
LPKG_INIT(migrate_frozen);

static void count_freed(void *obj, void *data)
{
    (void)obj;
    (void)data;
    shadows_freed++;
}

/* Back to one frozen account (the first), then every shadow of the fix freed. */
static int release(void)
{
    frozen_id = -1;
    for (int i = ACCOUNTS - 1; i >= 0; i--)
        if (lpkg_shadow_get(&accounts[i], FROZEN))
            frozen_id = i;
    lpkg_shadow_free_all(DEPOSITS, count_freed);
    lpkg_shadow_free_all(FROZEN, count_freed);
    lpkg_shadow_free_all(TOUCHES, count_freed);
    return 0;
}
LPKG_EXIT(release);
#endif

#if VERSION == 4
static int idle(void)
{
    return busy ? 7 : 0;
}
LPKG_CHECK(idle);
#endif

struct storm {
    long k;
    pthread_barrier_t *start;
    int stop; /* set by the main thread: the threads finish their pass and end */
    int repeat;
};

static void *storm_thread(void *arg)
{
    struct storm *s = arg;
    pthread_barrier_wait(s->start);
    struct timespec rest = {0, 1000000};
    for (;;) {
        for (long i = 0; i < s->k && i < CELLS; i++)
            touch(&cells[i]);
        if (!s->repeat || __atomic_load_n(&s->stop, __ATOMIC_RELAXED))
            break;
        nanosleep(&rest, NULL);
    }
    return NULL;
}

/* T threads touch cells 0..k-1 once, or over and over for `ms` milliseconds (0: once). */
static void storm(int threads, long k, long ms)
{
    pthread_t ids[64];
    pthread_barrier_t start;
    struct storm s = {k, &start, 0, ms > 0};
    if (threads > 64)
        threads = 64;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int i = 0; i < threads; i++)
        pthread_create(&ids[i], NULL, storm_thread, &s);
    if (ms > 0) {
        struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};
        nanosleep(&pause, NULL);
        __atomic_store_n(&s.stop, 1, __ATOMIC_RELAXED);
    }
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    pthread_barrier_destroy(&start);
}

static struct account *account(long a)
{
    return &accounts[(unsigned long)a % ACCOUNTS];
}

int main(void)
{
    char line[128], out[128];
    for (int i = 0; i < ACCOUNTS; i++)
        accounts[i].id = i;
    while (fgets(line, sizeof line, stdin)) {
        char cmd[16] = "";
        long a = 0, b = 0, c = 0;
        sscanf(line, "%15s %ld %ld %ld", cmd, &a, &b, &c);
        if (!strcmp(cmd, "dep")) {
            const char *r = deposit(account(a), b);
            if (!strcmp(r, "ok"))
                snprintf(out, sizeof out, "ok %ld", account(a)->balance);
            else
                snprintf(out, sizeof out, "%s", r);
        } else if (!strcmp(cmd, "freeze")) {
            freeze(account(a));
            snprintf(out, sizeof out, "ok");
        } else if (!strcmp(cmd, "report")) {
            report(account(a), out, sizeof out);
        } else if (!strcmp(cmd, "storm") && c > 0) {
            long before = touch_total;
            storm((int)a, b, c);
            snprintf(out, sizeof out, "done %ld", touch_total - before);
        } else if (!strcmp(cmd, "storm")) {
            storm((int)a, b, 0);
            snprintf(out, sizeof out, "done");
        } else if (!strcmp(cmd, "touches")) {
            touches(a, out, sizeof out);
        } else if (!strcmp(cmd, "busy")) {
            busy = (int)a;
            snprintf(out, sizeof out, "ok");
        } else if (!strcmp(cmd, "freed")) {
            snprintf(out, sizeof out, "freed %ld", shadows_freed);
        } else {
            snprintf(out, sizeof out, "?");
        }
        printf("%s\n", out);
        fflush(stdout);
    }
    return 0;
}
