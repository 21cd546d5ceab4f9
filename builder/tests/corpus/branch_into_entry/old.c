/* A loop whose head is at offset 3: a jump there would land inside the 5-byte patch. */
__attribute__((naked, noinline)) long count_up(long x) {
#ifdef __x86_64__
    __asm__("xor %eax, %eax\n"
            "nop\n"
            "1: add $1, %rax\n"
            "cmp %rdi, %rax\n"
            "jl 1b\n"
            "ret\n");
#else
    /* i386: x is on the stack. */
    __asm__("xor %eax, %eax\n"
            "nop\n"
            "1: add $1, %eax\n"
            "cmp 4(%esp), %eax\n"
            "jl 1b\n"
            "ret\n");
#endif
}
long case_entry(long x) { return count_up(x); }
