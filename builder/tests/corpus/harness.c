/* Shared driver of every corpus case: reads one integer per line on stdin and prints
 * case_entry(x) per line, flushing so a live test can talk to it line by line. */
#include <stdio.h>
#include <stdlib.h>

long case_entry(long x);

int main(void) {
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        printf("%ld\n", case_entry(strtol(line, NULL, 10)));
        fflush(stdout);
    }
    return 0;
}
