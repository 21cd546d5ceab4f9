#include <assert.h>
#include "helpers.h"
__attribute__((noipa)) int checked(int x) { int y = twice(x); assert(y != 848484); return y % 3; }
#include "entry.inc"
