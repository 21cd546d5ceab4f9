struct pair { long a; long b; long unused[6]; };
static long __attribute__((noinline)) first_of(struct pair *p) { return p->a * 3 + 1; }
long case_entry(long x) {
    struct pair p = { x, x + 1, { 0 } };
    return first_of(&p);
}
