/* Helpers shared by several files: code of its own, inlined into the functions of
 * the including file, whose rows in the line table are this file's.
 */
static inline int twice(int x) { return x * 2; }
