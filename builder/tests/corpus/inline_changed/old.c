static inline long helper(long x) { return x * 3; }
long __attribute__((noinline)) user_a(long x) { return helper(x) + 1; }
long __attribute__((noinline)) user_b(long x) { return helper(x + 1) - 1; }
long __attribute__((noinline)) bystander(long x) { return x / 3; }
long case_entry(long x) { return user_a(x) + user_b(x) + bystander(x); }
