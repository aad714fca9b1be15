/* Minimal C test harness: CHECK records a failure and goes on; main prints
 * "N passed, N failed" (the closing line CI reads) and exits non-zero on failure. */
#ifndef MAPDEPLOY_TEST_HARNESS_H
#define MAPDEPLOY_TEST_HARNESS_H
#include <stdio.h>

typedef struct {
    int passed;
    int failed;
} md_test_counts;

#define CHECK(counts, cond)                                                        \
    do {                                                                           \
        if (cond) {                                                                \
            (counts)->passed++;                                                    \
        } else {                                                                   \
            (counts)->failed++;                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                          \
    } while (0)

static inline int md_test_finish(const md_test_counts *counts)
{
    printf("%d passed, %d failed\n", counts->passed, counts->failed);
    return counts->failed == 0 ? 0 : 1;
}
#endif
