/* libprice: formats amounts of money given in cents.
 * Bug: negative amounts print the sign twice, e.g. -150 becomes "-1.-50". */
#include <stdio.h>

int format_cents(long cents, char *buf, unsigned long size)
{
    return snprintf(buf, size, "%ld.%02ld", cents / 100, cents % 100);
}
