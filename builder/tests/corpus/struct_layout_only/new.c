struct point { int y; int x; };
long __attribute__((noinline)) norm1(struct point *p) { return (long)p->x + p->y + 1; }
long case_entry(long x) { struct point p = { 2, (int)x }; return norm1(&p); }
