long case_entry(long x) {
    long doubled = x * 2;
    return doubled + 1;
}
