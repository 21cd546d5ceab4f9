/* A shared library whose one function every test program calls. RATE is the "fix":
 * 1 in the release, 1000 in the fixed build. TOKEN makes each test build's build-id its own,
 * so a host-wide apply finds only the processes of the test that built it. */
#ifndef RATE
#define RATE 1
#endif
const char *rate_token = TOKEN;

__attribute__((noinline)) long rate(long x)
{
    return x * RATE + 1;
}
