/*
 * The request texts that are not JSON (api/parse.h): If-Match lists, ?limit=
 * and ?cursor=.
 *
 * The first byte chooses: 0 an If-Match value (against the ETag "\"<n>\""
 * for an n taken from the input's end), 1 a limit, 2 a text cursor, 3 a
 * numeric cursor, 4 a key to make a cursor of.
 *
 * Properties: no crash or leak; If-Match agrees with a reference (split at
 * commas, trim blanks, an element matches when it is "*" or the ETag; a weak
 * W/ tag never does); an accepted limit is 1 to 500; a cursor is accepted only as a
 * cursor api_cursor_encode can make, i.e. it decodes to a key of 1 to 256
 * bytes without NUL (for numeric keys, the canonical decimal of an int64:
 * anything else would reach PostgreSQL as a malformed bigint), and encoding
 * that key gives the cursor back; every such key survives encode → decode.
 */
#include <errno.h>
#include <inttypes.h>

#include "api/parse.h"
#include "fuzz.h"

static bool reference_if_match(const char *header, const char *etag) {
        char *copy = strdup(header), *save = NULL;
        bool found = false;

        for (char *e = strtok_r(copy, ",", &save); e && !found; e = strtok_r(NULL, ",", &save)) {
                char *end;
                e += strspn(e, " \t");
                end = e + strlen(e);
                while (end > e && (end[-1] == ' ' || end[-1] == '\t'))
                        *--end = '\0';
                found = !strcmp(e, "*") || !strcmp(e, etag);
        }
        free(copy);
        return found;
}

/* The canonical decimal of an int64: what PostgreSQL sends for a bigint key. */
static bool canonical_int64(const char *s) {
        char buf[32];
        char *end;
        long long v;

        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno || *end)
                return false;
        snprintf(buf, sizeof(buf), "%lld", v);
        return !strcmp(buf, s);
}

static void cursor(const char *text, bool numeric) {
        char *key = NULL, *again = NULL;

        if (api_cursor_decode(text, numeric, &key) != 0)
                return;
        FUZZ_CHECK(strlen(key) >= 1 && strlen(key) <= 256);
        if (numeric && !canonical_int64(key))
                fprintf(stderr, "numeric cursor '%s' accepted with key '%s'\n", text, key);
        FUZZ_CHECK(!numeric || canonical_int64(key));
        FUZZ_CHECK(api_cursor_encode(key, &again) == 0);
        FUZZ_CHECK(!strcmp(again, text));
        free(again);
        free(key);
}

static void key_round_trip(const char *key) {
        char *cur = NULL, *back = NULL;
        size_t n = strlen(key);

        if (n < 1 || n > 256)
                return;
        FUZZ_CHECK(api_cursor_encode(key, &cur) == 0);
        FUZZ_CHECK(api_cursor_decode(cur, false, &back) == 0 && !strcmp(back, key));
        free(back);
        back = NULL;
        if (canonical_int64(key)) {
                FUZZ_CHECK(api_cursor_decode(cur, true, &back) == 0 && !strcmp(back, key));
                free(back);
        }
        free(cur);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text, etag[32];
        long limit;

        if (size < 1)
                return 0;
        text = fuzz_strndup(data + 1, size - 1);
        switch (data[0] % 5) {
        case 0: {
                uint8_t n = data[size - 1];
                snprintf(etag, sizeof(etag), "\"%u\"", n % 16);
                FUZZ_CHECK(api_if_match_names(text, etag) == reference_if_match(text, etag));
                break;
        }
        case 1:
                if (api_limit_parse(text, &limit) == 0)
                        FUZZ_CHECK(limit >= 1 && limit <= 500);
                break;
        case 2:
        case 3:
                cursor(text, data[0] % 5 == 3);
                break;
        case 4:
                key_round_trip(text);
                break;
        }
        free(text);
        return 0;
}
