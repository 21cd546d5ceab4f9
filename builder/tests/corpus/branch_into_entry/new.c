__attribute__((naked, noinline)) long count_up(long x) {
    __asm__("xor %eax, %eax\n"
            "nop\n"
            "1: add $2, %rax\n"
            "cmp %rdi, %rax\n"
            "jl 1b\n"
            "ret\n");
}
long case_entry(long x) { return count_up(x); }
