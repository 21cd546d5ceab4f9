long case_entry(long x) {
    /* Renamed a variable and added comments: only debug info changes. */
    long twice = x * 2;
    return twice + 1;
}
