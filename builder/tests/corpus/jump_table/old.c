long case_entry(long x) {
    switch (x) {
    case 0: return x + 11;
    case 1: return x * 13;
    case 2: return x - 17;
    case 3: return x << 3;
    case 4: return x ^ 99;
    case 5: return x + 1234;
    case 6: return -x;
    default: return 0;
    }
}
