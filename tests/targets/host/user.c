/* Answers each line read from stdin with rate(N) of its number: the library's code as it runs
 * now. Exits at end of input. */
#include <stdio.h>
#include <stdlib.h>

long rate(long x);

int main(void)
{
    char line[64];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin))
        printf("%ld\n", rate(atol(line)));
    return 0;
}
