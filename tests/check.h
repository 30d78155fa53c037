/* CHECK(cond, fmt, ...): the assertion of the C tests. A failure is counted
 * and reported with its message, and the test goes on, so that one run lists
 * every broken contract; main() reports `failures` out of `checks`. */
#ifndef STYLIZE_TESTS_CHECK_H
#define STYLIZE_TESTS_CHECK_H

#include <stdio.h>

static int failures, checks;

#define CHECK(cond, ...)                                                                                      \
    do {                                                                                                      \
        checks++;                                                                                             \
        if (!(cond)) {                                                                                        \
            failures++;                                                                                       \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                 \
            fprintf(stderr, __VA_ARGS__);                                                                     \
            fputc('\n', stderr);                                                                              \
        }                                                                                                     \
    } while (0)

#endif
