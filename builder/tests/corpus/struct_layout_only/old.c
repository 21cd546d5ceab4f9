struct point { int x; int y; };
long __attribute__((noinline)) norm1(struct point *p) { return (long)p->x + p->y; }
long case_entry(long x) { struct point p = { (int)x, 2 }; return norm1(&p); }
