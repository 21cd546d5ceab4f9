// C++: an exception thrown by check() passes through scaled(), which the fix replaces, and is
// caught in case_entry(); a probe with a negative input throws through the new code live.
#include <stdexcept>
__attribute__((noinline)) long check(long x) {
    if (x < 0) throw std::out_of_range("negative");
    return x;
}
__attribute__((noinline)) long scaled(long x) {
    long v = check(x);
    return v * 3;
}
extern "C" long case_entry(long x) {
    try {
        return scaled(x);
    } catch (const std::out_of_range &) {
        return -1;
    }
}
