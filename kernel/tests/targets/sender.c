/* sender PID COUNT INTERVAL_US: sigqueue COUNT SIGRTMIN signals to PID, then print "sent N". */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    pid_t pid = atoi(argv[1]);
    long count = atol(argv[2]), interval = atol(argv[3]), sent = 0;
    while (sent < count) {
        union sigval v = {.sival_int = (int)sent};
        if (sigqueue(pid, SIGRTMIN, v) == 0) sent++;
        else if (errno != EAGAIN) { perror("sigqueue"); return 1; }
        if (interval) usleep(interval);
    }
    printf("sent %ld\n", sent);
    return 0;
}
