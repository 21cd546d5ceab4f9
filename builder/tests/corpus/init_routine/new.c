#include "lpkg.h"
long mode = 1;
static int migrate(void) { mode = 5; return 0; }
static int undo(void) { mode = 1; return 0; }
LPKG_INIT(migrate);
LPKG_EXIT(undo);
long case_entry(long x) { return x * mode + 1; }
