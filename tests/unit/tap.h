/*
 * tap.h — a tiny unit-test harness that speaks TAP.
 *
 * Each TEST(name) is one test point; CHECK() records a failure with its file
 * and line and the test goes on, so one run shows every broken expectation.
 * main() is TAP_MAIN(TAP_TEST(test1), TAP_TEST(test2), ...). tests/run counts the "ok" and
 * "not ok" lines of every binary for its summary.
 */
#pragma once

#include <math.h>
#include <stdio.h>
#include <string.h>

struct tap_test {
        const char *name;
        void (*fn)(int *failed);
};

#define TEST(name) static void name(int *tap_failed_)

#define CHECK(cond)                                                                         \
        do {                                                                                \
                if (!(cond)) {                                                              \
                        printf("#   %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
                        *tap_failed_ = 1;                                                   \
                }                                                                           \
        } while (0)

#define CHECK_STR(a, b)                                                                 \
        do {                                                                            \
                const char *tap_a_ = (a), *tap_b_ = (b);                                \
                if (!tap_a_ || !tap_b_ || strcmp(tap_a_, tap_b_) != 0) {                \
                        printf("#   %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__,     \
                               tap_a_ ? tap_a_ : "(null)", tap_b_ ? tap_b_ : "(null)"); \
                        *tap_failed_ = 1;                                               \
                }                                                                       \
        } while (0)

#define CHECK_NEAR(a, b, tol)                                                                    \
        do {                                                                                     \
                double tap_a_ = (a), tap_b_ = (b);                                               \
                if (!(fabs(tap_a_ - tap_b_) <= (tol))) {                                         \
                        printf("#   %s:%d: %.12g != %.12g (tolerance %g)\n", __FILE__, __LINE__, \
                               tap_a_, tap_b_, (double)(tol));                                   \
                        *tap_failed_ = 1;                                                        \
                }                                                                                \
        } while (0)

static inline int tap_run(const struct tap_test *tests, size_t n) {
        int failures = 0;
        printf("1..%zu\n", n);
        for (size_t i = 0; i < n; i++) {
                int failed = 0;
                tests[i].fn(&failed);
                printf("%s %zu - %s\n", failed ? "not ok" : "ok", i + 1, tests[i].name);
                fflush(stdout);
                failures += failed;
        }
        return failures ? 1 : 0;
}

/* TAP_MAIN(TAP_TEST(a), TAP_TEST(b), ...) */
#define TAP_TEST(fn) \
        { #fn, fn }
#define TAP_MAIN(...)                                                    \
        int main(void) {                                                 \
                static const struct tap_test tests[] = { __VA_ARGS__ };  \
                return tap_run(tests, sizeof(tests) / sizeof(tests[0])); \
        }
