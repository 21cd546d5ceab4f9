/* holder: fork a child, PTRACE_ATTACH to it, print "traced CHILD", hold it until stdin closes. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    pid_t child = fork();
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) pause();
    }
    if (ptrace(PTRACE_ATTACH, child, 0, 0) != 0) { perror("attach"); return 1; }
    int status;
    waitpid(child, &status, 0);
    ptrace(PTRACE_CONT, child, 0, 0);
    printf("traced %d\n", child);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}
    kill(child, SIGKILL);
    return 0;
}
