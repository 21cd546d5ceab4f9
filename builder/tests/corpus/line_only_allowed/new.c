#include <assert.h>
/* A comment added above shifts every line below: assert's __LINE__ changes. */

long case_entry(long x) {
    assert(x != 424242);
    return x + 1;
}
