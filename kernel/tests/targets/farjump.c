/* A 64-bit process whose main thread far-jumps to 32-bit code (the compat code segment,
 * 0x23) and loops there incrementing a counter: an adversary for a tracer that would take a
 * thread's code segment for its process's architecture. Prints the counter's and a function's
 * addresses. With "low-stack" its stack pointer is moved below 4 GiB first (32-bit code keeps
 * only the low half of it). Built with -m32, the reverse: a 32-bit process whose main thread
 * far-jumps to 64-bit code (segment 0x33). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

__attribute__((noinline)) long answer(void) { return 42; }

#ifdef __i386__
int main(void) {
    uint8_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return 1;
    /* 1: incl counter(%rip); jmp 1b   (64-bit code; the counter 2048 bytes into the page) */
    uint8_t code[] = {0xff, 0x05, 0, 0, 0, 0, 0xeb, 0xf8};
    int32_t rel = 2048 - 6;
    memcpy(code + 2, &rel, 4);
    memcpy(page, code, sizeof code);
    printf("ready counter=%p answer=%p\n", (void *)(page + 2048), (void *)answer);
    fflush(stdout);
    struct __attribute__((packed)) { uint32_t offset; uint16_t selector; } far = {
        (uint32_t)(uintptr_t)page, 0x33};
    __asm__ volatile("ljmp *%0\n" ::"m"(far));
    return 0;
}
#else
int main(int argc, char **argv) {
    uint8_t *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (page == MAP_FAILED) return 1;
    uint32_t counter = (uint32_t)(uintptr_t)(page + 2048);
    /* 1: incl (counter); jmp 1b   (32-bit code) */
    uint8_t code[] = {0xff, 0x05, 0, 0, 0, 0, 0xeb, 0xf8};
    memcpy(code + 2, &counter, 4);
    memcpy(page, code, sizeof code);
    printf("ready counter=%p answer=%p\n", (void *)(page + 2048), (void *)answer);
    fflush(stdout);
    uint64_t sp = 0;
    if (argc > 1 && !strcmp(argv[1], "low-stack")) {
        uint8_t *stack = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
        if (stack == MAP_FAILED) return 1;
        sp = (uint64_t)(uintptr_t)(stack + (1 << 20) - 64);
    }
    /* 32-bit code needs data segments: 64-bit processes run with null ones. */
    __asm__ volatile("test %1, %1\n jz 1f\n mov %1, %%rsp\n 1:\n"
                     "mov $0x2b, %%eax\n mov %%eax, %%ds\n mov %%eax, %%es\n"
                     "pushq $0x23\n pushq %0\n lretq\n"
                     ::"r"((uint64_t)(uintptr_t)page), "r"(sp)
                     : "rax");
    return 0;
}
#endif
