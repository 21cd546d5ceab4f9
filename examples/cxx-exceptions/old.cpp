// A C++ order checker: three threads validate orders; a bad order throws, and the thread's
// handler counts it. The bug: parse_quantity() accepts a quantity of 0 (it should throw).
// Every half second: "checked N orders: A accepted, R rejected (Z with quantity 0 accepted)".
#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

static std::atomic<long> accepted{0}, rejected{0}, zero_accepted{0};

struct Order {
    std::string item;
    int quantity;
};

__attribute__((noinline)) int parse_quantity(int raw) {
    if (raw < 0) throw std::invalid_argument("negative quantity");
    return raw;
}

// An exception from parse_quantity() passes through this function, which the fix replaces.
__attribute__((noinline)) long price(const Order &order) {
    int quantity = parse_quantity(order.quantity);
    std::string label = "item:" + order.item; // destroyed as an exception passes
    return quantity * 100L + (long)label.size();
}

static void worker(int seed) {
    for (int i = seed;; i += 3) {
        Order order{"widget", i % 7 - 2}; // quantities -2..4
        try {
            price(order);
            accepted++;
            if (order.quantity == 0) zero_accepted++;
        } catch (const std::invalid_argument &) {
            rejected++;
        }
        if (i % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

int main() {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    for (int n = 0; n < 3; n++) std::thread(worker, n).detach();
    for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        long a = accepted.exchange(0), r = rejected.exchange(0), z = zero_accepted.exchange(0);
        printf("checked %ld orders: %ld accepted, %ld rejected (%ld with quantity 0 accepted)\n",
               a + r, a, r, z);
    }
}
