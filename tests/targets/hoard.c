/* A target that claims more than it has (issue 19, item 1). Answers each line read from stdin
 * with rate(N); RATE is the fix (1 released, 2 fixed). Before that, by argument:
 *   argv[1]   a file to map one page of, readable and executable (a sparse fake ELF), or "-"
 *   argv[2]   "memfd": a 16 MiB memfd named like an lpkg record, mapped 100 times */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef RATE
#define RATE 1
#endif

__attribute__((noinline)) long rate(long x) { return x * RATE + 1; }

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-") != 0) {
        int fd = open(argv[1], O_RDONLY);
        if (fd < 0 || mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0) == MAP_FAILED) {
            perror(argv[1]);
            return 1;
        }
    }
    if (argc > 2 && strcmp(argv[2], "memfd") == 0) {
        size_t size = 16 << 20;
        int fd = memfd_create("lpkg:0123456789abcdef", 0);
        if (fd < 0 || ftruncate(fd, size)) {
            perror("memfd");
            return 1;
        }
        /* A record header claiming a body as long as the spec allows. */
        char header[16] = "LPKGREC1";
        unsigned state = 3, len = (unsigned)size - 16;
        memcpy(header + 8, &state, 4);
        memcpy(header + 12, &len, 4);
        if (write(fd, header, 16) != 16)
            return 1;
        for (int i = 0; i < 100; i++)
            if (mmap(0, size, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED) {
                perror("mmap");
                return 1;
            }
    }
    char line[64];
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin))
        printf("%ld\n", rate(atol(line)));
    return 0;
}
