/* lpkg.h: mark init and exit routines of a live patch.
 *
 *   static int migrate(void) { ...; return 0; }
 *   LPKG_INIT(migrate);
 *
 * LPKG_INIT(fn) runs `int fn(void)` inside the target after the switch (non-zero return rolls
 * the patch back); LPKG_EXIT(fn) runs before the original code is restored on revert.
 * The builder finds them through pointers placed in sections .lpkg.init / .lpkg.exit. */
#ifndef LPKG_H
#define LPKG_H

#define LPKG_INIT(fn)                                                                  \
    static int (*const lpkg_init_##fn)(void)                                           \
        __attribute__((used, section(".lpkg.init"), aligned(8))) = fn

#define LPKG_EXIT(fn)                                                                  \
    static int (*const lpkg_exit_##fn)(void)                                           \
        __attribute__((used, section(".lpkg.exit"), aligned(8))) = fn

#endif
