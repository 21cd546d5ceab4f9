/* libprice: formats amounts of money given in cents.
 * Fixed: negative amounts print one sign, e.g. -150 becomes "-1.50". */
#include <stdio.h>

int format_cents(long cents, char *buf, unsigned long size)
{
    unsigned long magnitude = cents < 0 ? -(unsigned long)cents : (unsigned long)cents;
    return snprintf(buf, size, "%s%lu.%02lu", cents < 0 ? "-" : "", magnitude / 100, magnitude % 100);
}
