// C++ target whose exceptions pass through patched code (issue 21). Three worker threads
// throw many exceptions a second through compute(), guarded() and owner(); the main thread
// prints one status line every 20 ms:
//   st compute=C guarded=G owner=O five=N seven=S
// C = compute(1), G = guarded(5) (its handler's value), O = owner(1), N and S how many
// "five" and "seven" exceptions the workers caught. VERSION 1 is the program, 2 the fix
// (new values, and compute() calls a new function that throws "seven"), 3 a fix stacked on it.
// A destructor run twice or never, a wrong exception, or std::terminate print "bad ..." and end
// the process.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string.h>
#include <thread>
#include <unistd.h>

#ifndef VERSION
#define VERSION 1
#endif

static std::atomic<long> five{0}, seven{0};
static thread_local long constructed, destroyed;

[[noreturn]] static void bad(const char *what) {
    printf("bad %s\n", what);
    fflush(stdout);
    _exit(1);
}

struct Tracker {
    Tracker() { constructed++; }
    ~Tracker() { destroyed++; }
};

__attribute__((noinline)) int check(int x) {
    if (x % 5 == 0) throw std::runtime_error("five");
    return x;
}

#if VERSION >= 2
// New in the fix: throws for multiples of 7, a type the program never threw (its type info
// lives in libstdc++, which -fPIE code reaches PC-relatively: the applier copies it).
__attribute__((noinline)) int validate(int v) {
    if (v % 7 == 0) throw std::invalid_argument("seven");
    return v;
}
#endif

// An exception from check() passes through it.
__attribute__((noinline)) int compute(int x) {
    int v = check(x);
#if VERSION == 1
    return v * 2;
#elif VERSION == 2
    return validate(v) * 2 + 1000;
#else
    return validate(v) * 2 + 2000;
#endif
}

// Catches what check() throws; the fix changes the handler.
__attribute__((noinline)) int guarded(int x) {
    try {
        return check(x);
    } catch (const std::runtime_error &) {
        return -VERSION;
    }
}

// Owns an object whose destructor runs as the exception passes.
__attribute__((noinline)) int owner(int x) {
    Tracker t;
    return check(x) + VERSION * 100;
}

// What the calls return and take goes through volatiles: clang propagates the results of
// noinline functions into their callers, which a patch would then not change.
static volatile int sink, one = 1, five_ = 5;

static void worker() {
    for (int i = 1;; i++) {
        try {
            sink = compute(i);
        } catch (const std::invalid_argument &e) {
            if (strcmp(e.what(), "seven")) bad("validate-what");
            seven++;
        } catch (const std::runtime_error &e) {
            if (strcmp(e.what(), "five")) bad("compute-what");
            five++;
        }
        int g = guarded(i);
        if (i % 5 == 0 ? g >= 0 : g != i) bad("guarded");
        try {
            sink = owner(i);
        } catch (const std::runtime_error &) {
            five++;
        }
        if (constructed != destroyed) bad("destructor");
        if (i % 8 == 0) usleep(100);
    }
}

int main() {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    std::set_terminate([] { bad("terminate"); });
    for (int n = 0; n < 3; n++) std::thread(worker).detach();
    for (;;) {
        printf("st compute=%d guarded=%d owner=%d five=%ld seven=%ld\n", compute(one),
               guarded(five_), owner(one), five.load(), seven.load());
        usleep(20000);
    }
}
