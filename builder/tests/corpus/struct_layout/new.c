struct account { long id; long flags; long balance; };
struct account acct = { 1, 0, 100 };
long __attribute__((noinline)) deposit(struct account *a, long x) { a->balance += x; return a->balance; }
long case_entry(long x) { return deposit(&acct, x); }
