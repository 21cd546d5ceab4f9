/* Test target for stripped binaries and their debug files: reads a number per line on stdin
 * and answers with the balance of the account it lands in after deposit(). VERSION (set on the
 * command line) picks deposit()'s version: 1 adds the amount, 2 adds twice the amount, 3 adds
 * it twice too but asks getppid() first (a libc function a static link of version 1 lacks).
 * A line "t" answers the number of deposits versions 2 and 3 counted in this thread (TLS).
 * The deployed build may differ from the one a package is built from (another configuration):
 *   -DAUDIT        adds a member to struct account (deposit()'s own code is unchanged);
 *   -DLIMITS=N     changes the size of the limits[] table deposit() reads;
 *   -DFEE=N        changes the code of fee(), which deposit() calls. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION 1
#endif
#ifndef LIMITS
#define LIMITS 4
#endif
#ifndef FEE
#define FEE 0
#endif

struct account {
    long id;
    long balance;
#ifdef AUDIT
    long audited;
#endif
};

struct account accounts[4];
/* Versions 2 and 3 count the deposits of each thread: a fix reaching the program's TLS. */
__thread long deposits;
long limits[LIMITS] = {1000000, 2000000, 3000000, 4000000};

__attribute__((noinline, noclone)) static long fee(long amount)
{
    return amount - FEE;
}

__attribute__((noinline)) long deposit(struct account *a, long amount)
{
#if VERSION >= 2
    deposits++;
#endif
#if VERSION == 3
    long next = a->balance + fee(amount) * 2 + (getppid() == 0);
#else
    long next = a->balance + fee(amount) * VERSION;
#endif
    if (next > limits[0])
        next = limits[0];
    a->balance = next;
    return next;
}

int main(void)
{
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 't') { /* the deposits versions 2 and 3 counted */
            printf("%ld\n", deposits);
            fflush(stdout);
            continue;
        }
        long x = strtol(line, NULL, 10);
        printf("%ld\n", deposit(&accounts[x & 3], x));
        fflush(stdout);
    }
    return 0;
}
