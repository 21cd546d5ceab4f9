struct account { long id; long balance; };
struct account acct = { 1, 100 };
long __attribute__((noinline)) deposit(struct account *a, long x) { a->balance += x; return a->balance; }
long case_entry(long x) { return deposit(&acct, x); }
