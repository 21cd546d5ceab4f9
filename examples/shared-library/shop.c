/* A program that uses libprice.so: prints a small ledger every half second. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int format_cents(long cents, char *buf, unsigned long size);

int main(void)
{
    static const long amounts[] = { 1999, -150, -5 };
    for (;;) {
        char line[128] = "ledger:", amount[32];
        for (unsigned i = 0; i < sizeof amounts / sizeof amounts[0]; i++) {
            format_cents(amounts[i], amount, sizeof amount);
            strncat(line, " ", sizeof line - strlen(line) - 1);
            strncat(line, amount, sizeof line - strlen(line) - 1);
        }
        printf("%s\n", line);
        fflush(stdout);
        usleep(500000);
    }
}
