/* lpkg-shadow.c: the shadow-variable runtime that lpkg-builder links into a patch module whose
 * code calls lpkg_shadow_* (builder/include/lpkg.h declares them; spec/shadow-variables.md
 * describes the area).
 *
 * Every module of a process that carries this runtime gets, from the applier, the address of
 * one area shared by all of them (`__lpkg_shadow_table`): a private mapping of a memfd named
 * `lpkg-shadows`, zero-filled but for the header the applier writes (magic and size). The
 * table of shadows and their memory are both inside it, so:
 *   - no call of the target's malloc (which may be what the thread was inside of);
 *   - packages stacked on one another see the same shadows;
 *   - the applier frees them all by unmapping the area once no applied package uses it.
 *
 * Locks are spin locks held only inside these functions (never across a destructor or any
 * other code of the patch); a bucket lock may be held while the allocator's is taken, never the
 * other way round. Built freestanding: no libc, no static data but the area's address. */
#include <stddef.h>
#include <stdint.h>

#define AREA_MAGIC 0x31444853474b504cull /* "LPKGSHD1" */
#define BUCKETS 65536u
#define MIN_CLASS 5u                      /* 32-byte blocks and up */
#define CLASSES 16u                       /* ...to 1 MiB */

struct shadow {
    struct shadow *next;
    const void *obj;
    unsigned long id;
    uint32_t class;
    uint32_t unused;
    /* Aligned for any type: 16 bytes on x86_64 (header of 32 bytes), 8 or 16 on i386. */
    unsigned char data[] __attribute__((aligned(16)));
};

struct bucket {
    uint32_t lock;
    uint32_t unused;
    struct shadow *head;
};

/* Layout shared with the applier (spec/shadow-variables.md): `magic` and `size` are written by
 * it; everything else starts zero. */
struct area {
    uint64_t magic;
    uint64_t size;
    uint64_t used; /* bytes handed out after the header */
    uint32_t alloc_lock;
    uint32_t unused;
    struct shadow *free_blocks[CLASSES];
    struct bucket buckets[BUCKETS];
};

/* Written by the applier before any code of the module runs. */
void *__lpkg_shadow_table __attribute__((visibility("hidden"))) = 0;

static struct area *lpkg_rt_area(void)
{
    struct area *a = __atomic_load_n((struct area **)&__lpkg_shadow_table, __ATOMIC_ACQUIRE);
    if (!a || a->magic != AREA_MAGIC || a->size < sizeof(struct area))
        return 0;
    return a;
}

static void lpkg_rt_yield(void)
{
#if defined(__x86_64__)
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(24L /* sched_yield */) : "rcx", "r11", "memory");
#elif defined(__i386__)
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(158L /* sched_yield */) : "memory");
#endif
}

static void lpkg_rt_lock(uint32_t *word)
{
    unsigned spins = 0;
    while (__atomic_exchange_n(word, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(word, __ATOMIC_RELAXED)) {
            /* The holder may be descheduled: give the CPU back rather than spin it away. */
            if (++spins < 64)
                __builtin_ia32_pause();
            else
                lpkg_rt_yield();
        }
    }
}

static void lpkg_rt_unlock(uint32_t *word)
{
    __atomic_store_n(word, 0, __ATOMIC_RELEASE);
}

static struct bucket *lpkg_rt_bucket_of(struct area *a, const void *obj, unsigned long id)
{
    uint64_t key = (uint64_t)(uintptr_t)obj ^ ((uint64_t)id * 0x9e3779b97f4a7c15ull);
    key ^= key >> 29;
    key *= 0xbf58476d1ce4e5b9ull;
    key ^= key >> 32;
    return &a->buckets[key & (BUCKETS - 1)];
}

static void lpkg_rt_zero(unsigned char *p, size_t n)
{
    /* volatile: a loop the compiler would otherwise make a call of memset. */
    volatile unsigned char *v = p;
    for (size_t i = 0; i < n; i++)
        v[i] = 0;
}

/* A zeroed block of `size` data bytes, or NULL. */
static struct shadow *lpkg_rt_block_alloc(struct area *a, size_t size)
{
    if (size > ((size_t)1 << (MIN_CLASS + CLASSES - 1)) - sizeof(struct shadow))
        return 0;
    uint32_t class = 0;
    while (((size_t)1 << (MIN_CLASS + class)) < size + sizeof(struct shadow))
        class++;
    size_t bytes = (size_t)1 << (MIN_CLASS + class);
    struct shadow *s;
    lpkg_rt_lock(&a->alloc_lock);
    s = a->free_blocks[class];
    if (s) {
        a->free_blocks[class] = s->next;
    } else {
        uint64_t start = (sizeof(struct area) + a->used + 15) & ~(uint64_t)15;
        if (start + bytes > a->size) {
            lpkg_rt_unlock(&a->alloc_lock);
            return 0;
        }
        a->used = start + bytes - sizeof(struct area);
        s = (struct shadow *)((unsigned char *)a + start);
    }
    lpkg_rt_unlock(&a->alloc_lock);
    /* Fresh memory of the area is zero already; a reused block is not. */
    lpkg_rt_zero((unsigned char *)s, bytes);
    s->class = class;
    return s;
}

static void lpkg_rt_block_free(struct area *a, struct shadow *s)
{
    lpkg_rt_lock(&a->alloc_lock);
    s->next = a->free_blocks[s->class];
    a->free_blocks[s->class] = s;
    lpkg_rt_unlock(&a->alloc_lock);
}

static struct shadow *lpkg_rt_find(struct bucket *b, const void *obj, unsigned long id)
{
    for (struct shadow *s = b->head; s; s = s->next)
        if (s->obj == obj && s->id == id)
            return s;
    return 0;
}

void *lpkg_shadow_get(const void *obj, unsigned long id)
{
    struct area *a = lpkg_rt_area();
    if (!a)
        return 0;
    struct bucket *b = lpkg_rt_bucket_of(a, obj, id);
    lpkg_rt_lock(&b->lock);
    struct shadow *s = lpkg_rt_find(b, obj, id);
    lpkg_rt_unlock(&b->lock);
    return s ? s->data : 0;
}

/* The shadow of (obj, id): the existing one when `existing` may be returned, else a new one. */
static void *lpkg_rt_attach(const void *obj, unsigned long id, size_t size, int existing)
{
    struct area *a = lpkg_rt_area();
    if (!a)
        return 0;
    struct bucket *b = lpkg_rt_bucket_of(a, obj, id);
    lpkg_rt_lock(&b->lock);
    struct shadow *s = lpkg_rt_find(b, obj, id);
    if (s) {
        lpkg_rt_unlock(&b->lock);
        return existing ? s->data : 0;
    }
    s = lpkg_rt_block_alloc(a, size);
    if (s) {
        s->obj = obj;
        s->id = id;
        s->next = b->head;
        b->head = s;
    }
    lpkg_rt_unlock(&b->lock);
    return s ? s->data : 0;
}

void *lpkg_shadow_alloc(const void *obj, unsigned long id, size_t size)
{
    return lpkg_rt_attach(obj, id, size, 0);
}

void *lpkg_shadow_get_or_alloc(const void *obj, unsigned long id, size_t size)
{
    return lpkg_rt_attach(obj, id, size, 1);
}

void lpkg_shadow_free(const void *obj, unsigned long id)
{
    struct area *a = lpkg_rt_area();
    if (!a)
        return;
    struct bucket *b = lpkg_rt_bucket_of(a, obj, id);
    lpkg_rt_lock(&b->lock);
    struct shadow **link = &b->head;
    while (*link && !((*link)->obj == obj && (*link)->id == id))
        link = &(*link)->next;
    struct shadow *s = *link;
    if (s)
        *link = s->next;
    lpkg_rt_unlock(&b->lock);
    if (s)
        lpkg_rt_block_free(a, s);
}

void lpkg_shadow_free_all(unsigned long id, void (*dtor)(void *obj, void *data))
{
    struct area *a = lpkg_rt_area();
    if (!a)
        return;
    for (uint32_t i = 0; i < BUCKETS; i++) {
        struct bucket *b = &a->buckets[i];
        if (!__atomic_load_n(&b->head, __ATOMIC_RELAXED))
            continue;
        /* Unlinked under the lock, destroyed outside it: the destructor is the patch's code. */
        struct shadow *taken = 0;
        lpkg_rt_lock(&b->lock);
        struct shadow **link = &b->head;
        while (*link) {
            struct shadow *s = *link;
            if (s->id == id) {
                *link = s->next;
                s->next = taken;
                taken = s;
            } else {
                link = &s->next;
            }
        }
        lpkg_rt_unlock(&b->lock);
        while (taken) {
            struct shadow *next = taken->next;
            if (dtor)
                dtor((void *)taken->obj, taken->data);
            lpkg_rt_block_free(a, taken);
            taken = next;
        }
    }
}
