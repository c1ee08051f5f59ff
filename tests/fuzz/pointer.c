/*
 * JSON Pointers and configuration diffs (diff/diff.h): diff_pointer_parse
 * on any text, and diff_config / diff_config_take on any two documents.
 *
 * Properties: a text is accepted exactly when an independent reference
 * says it is a pointer (empty, or "/" then tokens in which every "~" is
 * "~0" or "~1", all of it UTF-8); an accepted text has one token per "/"
 * and formats back to itself; in a document of nested objects keyed by its
 * tokens, the pointer names the innermost value. When the input is two
 * JSON documents (split at the first 0xff byte, which UTF-8 never has),
 * taking every changed item of their diff into the first, in order, gives
 * the second, and the patch has one operation per change.
 */
#include <jansson.h>

#include "diff/diff.h"
#include "fuzz.h"

/* UTF-8 as RFC 3629 has it: shortest form, no surrogates, at most U+10FFFF. */
static bool utf8_reference(const uint8_t *s, size_t n) {
        for (size_t i = 0; i < n;) {
                uint32_t c = s[i], need, min;

                if (c < 0x80) {
                        i++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf)
                        need = 1, min = 0x80, c &= 0x1f;
                else if (c >= 0xe0 && c <= 0xef)
                        need = 2, min = 0x800, c &= 0x0f;
                else if (c >= 0xf0 && c <= 0xf4)
                        need = 3, min = 0x10000, c &= 0x07;
                else
                        return false;
                if (i + need >= n)
                        return false;
                for (uint32_t k = 1; k <= need; k++) {
                        if ((s[i + k] & 0xc0) != 0x80)
                                return false;
                        c = c << 6 | (s[i + k] & 0x3f);
                }
                if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                        return false;
                i += need + 1;
        }
        return true;
}

static bool pointer_reference(const char *t) {
        size_t n = strlen(t);

        if (n == 0)
                return true;
        if (t[0] != '/' || !utf8_reference((const uint8_t *)t, n))
                return false;
        for (size_t i = 0; i < n; i++)
                if (t[i] == '~' && t[i + 1] != '0' && t[i + 1] != '1')
                        return false;
        return true;
}

static void check_pointer(const char *text) {
        struct diff_pointer p;
        size_t slashes = 0;
        char *back;
        json_t *doc, *leaf, *cur;
        bool ok = diff_pointer_parse(text, &p) == 0;

        FUZZ_CHECK(ok == pointer_reference(text));
        if (!ok) {
                FUZZ_CHECK(p.n == 0 && !p.tokens);
                return;
        }
        for (const char *c = text; *c; c++)
                slashes += *c == '/';
        FUZZ_CHECK(p.n == slashes);
        back = diff_pointer_format(&p);
        FUZZ_CHECK(back && !strcmp(back, text));
        free(back);

        /* {t0: {t1: ... {tn-1: leaf}}} */
        leaf = json_string("leaf");
        cur = json_incref(leaf);
        for (size_t i = p.n; i > 0; i--) {
                json_t *o = json_object();
                FUZZ_CHECK(o && json_object_set_new(o, p.tokens[i - 1], cur) == 0);
                cur = o;
        }
        doc = cur;
        FUZZ_CHECK(diff_pointer_get(doc, text) == leaf);
        json_decref(doc);
        json_decref(leaf);
        diff_pointer_fini(&p);
}

static void check_diff(const uint8_t *data, size_t size) {
        const uint8_t *split = memchr(data, 0xff, size);
        json_t *a, *b, *changes = NULL, *patch = NULL, *out = NULL;
        const char **paths;
        size_t n, bad = 0;

        if (!split)
                return;
        a = json_loadb((const char *)data, (size_t)(split - data), JSON_DECODE_ANY, NULL);
        b = json_loadb((const char *)split + 1, size - (size_t)(split - data) - 1, JSON_DECODE_ANY,
                       NULL);
        if (a && b) {
                FUZZ_CHECK(diff_config(a, b, &changes, &patch) == 0);
                n = json_array_size(changes);
                FUZZ_CHECK(json_array_size(patch) == n);
                FUZZ_CHECK(n > 0 || json_equal(a, b));
                paths = calloc(n + 1, sizeof(*paths));
                FUZZ_CHECK(paths);
                for (size_t i = 0; i < n; i++) {
                        paths[i] = json_string_value(json_object_get(json_array_get(changes, i),
                                                                     "path"));
                        FUZZ_CHECK(paths[i] && pointer_reference(paths[i]));
                }
                FUZZ_CHECK(diff_config_take(a, b, paths, n, &out, &bad) == 0);
                FUZZ_CHECK(json_equal(out, b));
                free(paths);
        }
        json_decref(out);
        json_decref(changes);
        json_decref(patch);
        json_decref(a);
        json_decref(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = fuzz_strndup(data, size);

        check_pointer(text);
        free(text);
        check_diff(data, size);
        return 0;
}
