/* Test target for leading a thread out of a function: a thread calls `hash`, a leaf that takes
 * nearly all of its time, in a loop, and checks every result ("bad what=hash" and exit on a
 * wrong one: a return value lost on the way out). The main thread prints "ok rounds=N" every
 * 20 ms. Built for i386 too, where `hash` is written in assembly so that, like the x86_64
 * build's, it keeps nothing on the stack above its return address. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static unsigned char data[128];
static unsigned long expected;
static volatile unsigned long rounds;

#ifdef __i386__
/* FNV-1a, 32 bits: the arguments on the stack, nothing pushed. */
unsigned long hash(const unsigned char *p, unsigned long n);
__asm__(".text\n.globl hash\nhash:\n"
        " mov 4(%esp), %edx\n mov 8(%esp), %ecx\n mov $2166136261, %eax\n"
        " test %ecx, %ecx\n jz 2f\n"
        "1: xorb (%edx), %al\n imul $16777619, %eax, %eax\n inc %edx\n dec %ecx\n jnz 1b\n"
        "2: ret\n");
#else
__attribute__((noipa)) unsigned long hash(const unsigned char *p, unsigned long n) {
    unsigned long h = 14695981039346656037ul;
    for (unsigned long i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ul;
    return h;
}
#endif

__attribute__((noipa)) void *hot(void *arg) {
    (void)arg;
    for (;;) {
        if (hash(data, sizeof data) != expected) {
            printf("bad what=hash\n");
            exit(1);
        }
        rounds++;
    }
    return 0;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < 128; i++) data[i] = (unsigned char)(i * 7 + 1);
    expected = hash(data, sizeof data);
    pthread_t t;
    pthread_create(&t, NULL, hot, NULL);
    printf("ready hash=%p hot=%p\n", (void *)hash, (void *)hot);
    for (;;) {
        printf("ok rounds=%lu\n", rounds);
        usleep(20000);
    }
}
