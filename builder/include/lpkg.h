/* lpkg.h: the one header a live patch includes. docs/patch-author-guide.md shows how to use it.
 *
 * Routines (each `int fn(void)`, run inside the target by a thread of its own that lpkg borrows,
 * while every other thread is stopped, within `--timeout`):
 *
 *   static int check(void) { return queue_is_idle() ? 0 : 11; }
 *   LPKG_CHECK(check);
 *   static int migrate(void) { ...; return 0; }
 *   LPKG_INIT(migrate);
 *
 * LPKG_CHECK(fn) runs before the switch: a non-zero return refuses the apply with that code,
 * and nothing of the target changes. LPKG_INIT(fn) runs after the switch (a non-zero return
 * rolls the patch back); LPKG_EXIT(fn) runs on revert, before the original code is restored.
 * The builder finds them through pointers placed in sections .lpkg.check / .lpkg.init /
 * .lpkg.exit. A routine must not wait for a lock another thread may hold: that thread is
 * stopped, and the routine would wait until the timeout rolls the apply back.
 *
 * Shadow variables: data attached to an existing object (any address) under a numeric id,
 * for fixes that need a new member in a struct whose layout must stay. The builder links their
 * runtime into the module by itself; the memory is the patch's own (never the target's malloc),
 * shared with every package applied to the process, freed when the last package using shadows
 * is reverted. Thread-safe; no lock is held when they return.
 *
 *   lpkg_shadow_get(obj, id)                  the shadow, or NULL
 *   lpkg_shadow_alloc(obj, id, size)          a new zeroed shadow; NULL if one exists or no room
 *   lpkg_shadow_get_or_alloc(obj, id, size)   the shadow, made zeroed if there was none
 *   lpkg_shadow_free(obj, id)                 frees it (no-op when there is none)
 *   lpkg_shadow_free_all(id, dtor)            frees every shadow of `id`, calling
 *                                             dtor(obj, data) first (dtor may be NULL)
 */
#ifndef LPKG_H
#define LPKG_H

#include <stddef.h>

#define LPKG_CHECK(fn)                                                                 \
    static int (*const lpkg_check_##fn)(void)                                          \
        __attribute__((used, section(".lpkg.check"), aligned(sizeof(void *)))) = fn

#define LPKG_INIT(fn)                                                                  \
    static int (*const lpkg_init_##fn)(void)                                           \
        __attribute__((used, section(".lpkg.init"), aligned(sizeof(void *)))) = fn

#define LPKG_EXIT(fn)                                                                  \
    static int (*const lpkg_exit_##fn)(void)                                           \
        __attribute__((used, section(".lpkg.exit"), aligned(sizeof(void *)))) = fn

#ifdef __cplusplus
extern "C" {
#endif

/* Weak: the fixed sources still build and link as a program (lpkg build-source builds the
 * whole project), the functions coming from the patch module only. Such a program, run as it
 * is, has none of them (their address is NULL): test a fix that uses shadows live. */
#define LPKG_SHADOW_API __attribute__((weak))
LPKG_SHADOW_API void *lpkg_shadow_get(const void *obj, unsigned long id);
LPKG_SHADOW_API void *lpkg_shadow_alloc(const void *obj, unsigned long id, size_t size);
LPKG_SHADOW_API void *lpkg_shadow_get_or_alloc(const void *obj, unsigned long id, size_t size);
LPKG_SHADOW_API void lpkg_shadow_free(const void *obj, unsigned long id);
LPKG_SHADOW_API void lpkg_shadow_free_all(unsigned long id,
                                          void (*dtor)(void *obj, void *data));

#ifdef __cplusplus
}
#endif

#endif
