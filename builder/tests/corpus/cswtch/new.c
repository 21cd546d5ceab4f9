long case_entry(long x) {
    switch (x) {
    case 0: return 10;
    case 1: return 21;
    case 2: return 32;
    case 3: return 44;
    case 4: return 54;
    case 5: return 65;
    default: return -1;
    }
}
