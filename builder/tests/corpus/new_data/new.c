long total_seen;
static long history[4] = { 5, 6, 7, 8 };
static long zeroed[16];
const long weights[3] = { 100, 200, 300 };
long case_entry(long x) {
    total_seen += x;
    zeroed[x & 15]++;
    return x + 1 + history[x & 3] + weights[x % 3] + zeroed[x & 15] * 0;
}
