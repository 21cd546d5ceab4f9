#include <assert.h>
#include "helpers.h"
/* Three lines inserted above checked: only the __LINE__ it passes to __assert_fail changes,
 * from 3 to 6, while the line of twice (helpers.h:4), inlined into it, lies between the two.
 */
__attribute__((noipa)) int checked(int x) { int y = twice(x); assert(y != 848484); return y % 3; }
#include "entry.inc"
