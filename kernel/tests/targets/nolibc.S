/* Test target without libc, and so without any `rt_sigreturn` restorer (no `__restore_rt`):
 * says "ready", then "ok" after each 20 ms nanosleep, forever. Only system calls, no stack. */
    .globl _start
    .text
_start:
    mov $1, %eax
    mov $1, %edi
    lea ready(%rip), %rsi
    mov $6, %edx
    syscall
1:  mov $35, %eax
    lea ts(%rip), %rdi
    xor %esi, %esi
    syscall
    test %rax, %rax
    jnz 2f
    mov $1, %eax
    mov $1, %edi
    lea ok(%rip), %rsi
    mov $3, %edx
    syscall
    jmp 1b
2:  mov $1, %eax
    mov $1, %edi
    lea bad(%rip), %rsi
    mov $4, %edx
    syscall
    mov $60, %eax
    mov $1, %edi
    syscall

    .data
ts: .quad 0, 20000000
ready: .ascii "ready\n"
ok: .ascii "ok\n"
bad: .ascii "bad\n"
    .section .note.GNU-stack,"",@progbits
