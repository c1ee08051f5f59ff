/*
 * store's PostgreSQL array text: what store_array writes (quotes,
 * backslashes, NULL, numbers), what store_array_parse reads back the way
 * PostgreSQL writes it, and what it refuses. No server needed.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "tap.h"

TEST(texts_are_quoted_and_escaped_and_null_is_bare) {
        struct store_array a;
        store_array_init(&a);
        store_array_add_text(&a, "plain");
        store_array_add_text(&a, "say \"hi\"");
        store_array_add_text(&a, "back\\slash");
        store_array_add_text(&a, NULL);
        store_array_add_text(&a, "");
        CHECK_STR(store_array_text(&a),
                  "{\"plain\",\"say \\\"hi\\\"\",\"back\\\\slash\",NULL,\"\"}");
        CHECK(a.n == 5);
        store_array_fini(&a);
}

TEST(numbers_and_an_empty_array) {
        struct store_array a, e;
        store_array_init(&a);
        store_array_init(&e);
        store_array_add_int(&a, -42);
        store_array_add_double(&a, 0.5);
        store_array_add_double(&a, NAN);
        store_array_add_int(&a, 9007199254740993LL);
        CHECK_STR(store_array_text(&a), "{-42,0.5,NULL,9007199254740993}");
        CHECK_STR(store_array_text(&e), "{}");
        store_array_fini(&a);
        store_array_fini(&e);
}

/* Numbers formatted in place, across every growth of the buffer: each
 * element as printf writes it, nothing cut, nothing doubled. */
TEST(many_numbers_are_written_whole) {
        struct store_array a;
        char *want = malloc(64 * 3000 + 2), *p = want;
        double v = 0.1;

        store_array_init(&a);
        *p++ = '{';
        for (int i = 0; i < 3000; i++) {
                v = v * 1.7 + (double)i / 3.0;
                if (v > 1e300)
                        v = 0.1;
                if (i % 3 == 0) {
                        store_array_add_int(&a, (int64_t)i * -1234567891LL);
                        p += sprintf(p, "%s%lld", i ? "," : "", (long long)i * -1234567891LL);
                } else {
                        store_array_add_double(&a, v);
                        p += sprintf(p, "%s%.17g", i ? "," : "", v);
                }
        }
        strcpy(p, "}");
        CHECK_STR(store_array_text(&a), want);
        CHECK(a.n == 3000);
        store_array_fini(&a);
        free(want);
}

TEST(a_double_goes_as_its_text_only_when_that_is_safe) {
        struct store_array a;

        store_array_init(&a);
        store_array_add_double_text(&a, 48.8566, "48.85660", 8); /* as written */
        store_array_add_double_text(&a, 150, "1.5e2", 5);        /* as written */
        store_array_add_double_text(&a, 0.0, "-0", 2);           /* printed: 0 */
        store_array_add_double_text(&a, 1e-320, "1e-320", 6);    /* printed: subnormal */
        store_array_add_double_text(&a, 2.5, "2.5);DROP", 9);    /* printed: not a number */
        store_array_add_double_text(&a, 7.25, NULL, 0);          /* printed: no text */
        CHECK_STR(store_array_text(&a), "{48.85660,1.5e2,0,9.9998886718268301e-321,2.5,7.25}");
        store_array_fini(&a);
}

TEST(what_is_written_parses_back_the_same) {
        const char *values[] = { "u-1",      "a,b",  "{braces}", "quote\"d", "back\\",
                                 " spaced ", "NULL", "",         NULL };
        size_t n_values = sizeof(values) / sizeof(values[0]);
        struct store_array a;
        char **items = NULL;
        size_t n = 0;

        store_array_init(&a);
        for (size_t i = 0; i < n_values; i++)
                store_array_add_text(&a, values[i]);
        CHECK(store_array_parse(store_array_text(&a), &items, &n) == 0);
        CHECK(n == n_values);
        for (size_t i = 0; i < n && i < n_values; i++) {
                if (values[i])
                        CHECK_STR(items[i], values[i]);
                else
                        CHECK(items[i] == NULL);
        }
        items = store_array_items_free(items, n);
        CHECK(items == NULL);
        store_array_fini(&a);
}

TEST(parses_what_postgresql_writes) {
        char **items = NULL;
        size_t n = 99;

        /* text[] output: bare where it can be, quoted where it must, NULL bare. */
        CHECK(store_array_parse("{eu,\"ch zone\",NULL,\"NULL\",\"a\\\\b\",\"\"}", &items, &n) == 0);
        CHECK(n == 6);
        if (n == 6) {
                CHECK_STR(items[0], "eu");
                CHECK_STR(items[1], "ch zone");
                CHECK(items[2] == NULL);
                CHECK_STR(items[3], "NULL");
                CHECK_STR(items[4], "a\\b");
                CHECK_STR(items[5], "");
        }
        items = store_array_items_free(items, n);
        CHECK(store_array_parse("{}", &items, &n) == 0 && n == 0);
        items = store_array_items_free(items, n);
        CHECK(store_array_parse("{ a , b }", &items, &n) == 0 && n == 2);
        if (n == 2) {
                CHECK_STR(items[0], "a");
                CHECK_STR(items[1], "b");
        }
        items = store_array_items_free(items, n);
        CHECK(store_array_parse("{1,22,333}", &items, &n) == 0 && n == 3);
        if (n == 3)
                CHECK_STR(items[2], "333");
        items = store_array_items_free(items, n);
}

TEST(anything_else_is_refused) {
        const char *bad[] = { "",      "a,b",      "{a,b",   "{a,b}x", "{{a},{b}}", "[0:1]={a,b}",
                              "{\"a}", "{\"a\"b}", "{a,,b}", "{a\\",   NULL };
        for (size_t i = 0; bad[i]; i++) {
                char **items = (char **)1;
                size_t n = 7;
                CHECK(store_array_parse(bad[i], &items, &n) == -EINVAL);
                CHECK(items == (char **)1 && n == 7); /* untouched */
        }
        {
                char **items;
                size_t n;
                CHECK(store_array_parse(NULL, &items, &n) == -EINVAL);
        }
}

TEST(columns_start_empty_and_keep_their_own_values) {
        struct store_columns c;
        store_columns_init(&c, 3);
        CHECK(c.n == 3);
        store_array_add_text(&c.col[0], "x");
        store_array_add_int(&c.col[1], 7);
        CHECK_STR(store_array_text(&c.col[0]), "{\"x\"}");
        CHECK_STR(store_array_text(&c.col[1]), "{7}");
        CHECK_STR(store_array_text(&c.col[2]), "{}");
        store_columns_fini(&c);
        CHECK(c.col[0].buf == NULL && c.col[1].n == 0);
}

TAP_MAIN(TAP_TEST(texts_are_quoted_and_escaped_and_null_is_bare),
         TAP_TEST(numbers_and_an_empty_array), TAP_TEST(many_numbers_are_written_whole),
         TAP_TEST(a_double_goes_as_its_text_only_when_that_is_safe),
         TAP_TEST(what_is_written_parses_back_the_same), TAP_TEST(parses_what_postgresql_writes),
         TAP_TEST(anything_else_is_refused),
         TAP_TEST(columns_start_empty_and_keep_their_own_values))
