#include <assert.h>
long case_entry(long x) {
    assert(x != 424242);
    return x + 1;
}
