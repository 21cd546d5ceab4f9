#include <string.h>
static const char *__attribute__((noinline)) greet(void) { return "hello, there"; }
static const char *__attribute__((noinline)) part(void) { return "world!"; }
long case_entry(long x) { return (long)strlen(greet()) * 100 + (long)strlen(part()) + x; }
