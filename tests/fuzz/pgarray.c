/*
 * PostgreSQL array text: store_array_parse, and store_array's writer.
 *
 * Properties:
 *  - for every text the parser accepts, writing its items back and parsing
 *    that gives the same items (strings byte for byte, NULLs as NULLs), and
 *    writing them again gives the same text (the writer's output is a fixed
 *    point);
 *  - for any list of strings (and NULLs) cut from the fuzzer's bytes, write
 *    then parse gives the list back.
 */
#include "fuzz.h"
#include "store/store.h"

static char *write_items(char *const *items, size_t n) {
        struct store_array a;
        char *text;

        store_array_init(&a);
        for (size_t i = 0; i < n; i++)
                store_array_add_text(&a, items[i]);
        text = store_array_text(&a) ? strdup(store_array_text(&a)) : NULL;
        store_array_fini(&a);
        FUZZ_CHECK(text != NULL);
        return text;
}

static void check_same(char *const *a, size_t na, char *const *b, size_t nb) {
        FUZZ_CHECK(na == nb);
        for (size_t i = 0; i < na; i++) {
                FUZZ_CHECK((a[i] == NULL) == (b[i] == NULL));
                FUZZ_CHECK(!a[i] || !strcmp(a[i], b[i]));
        }
}

/* Writes items, parses the text back, and checks both ways round. */
static void round_trip(char *const *items, size_t n) {
        char *text = write_items(items, n), *again;
        char **back;
        size_t n_back;

        FUZZ_CHECK(store_array_parse(text, &back, &n_back) == 0);
        check_same(items, n, back, n_back);
        again = write_items(back, n_back);
        FUZZ_CHECK(!strcmp(text, again));
        store_array_items_free(back, n_back);
        free(text);
        free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = fuzz_strndup(data, size);
        char **items, *cut[64];
        size_t n, n_cut = 0;
        struct fuzz_bytes b = { data, size };

        if (store_array_parse(text, &items, &n) == 0) {
                round_trip(items, n);
                store_array_items_free(items, n);
        }
        free(text);

        /* The bytes as strings: a length byte, then that many bytes (0xff: a NULL). */
        while (b.left && n_cut < sizeof(cut) / sizeof(cut[0])) {
                uint8_t len = fuzz_u8(&b);
                char *s;
                if (len == 0xff) {
                        cut[n_cut++] = NULL;
                        continue;
                }
                s = calloc(1, (size_t)len + 1);
                FUZZ_CHECK(s != NULL);
                for (uint8_t i = 0; i < len && b.left; i++) {
                        uint8_t c = fuzz_u8(&b);
                        s[i] = c ? (char)c : 'z'; /* a C string has no NUL inside */
                }
                cut[n_cut++] = s;
        }
        round_trip(cut, n_cut);
        for (size_t i = 0; i < n_cut; i++)
                free(cut[i]);
        return 0;
}
