/*
 * The datacenter catalog CSV that `homing nearest` reads (cmd/catalog.c).
 *
 * An input whose first byte is even is a catalog file: catalog_parse must
 * not crash, leak or read past the text, and a catalog it accepts has at
 * least one site, every site a valid point with a non-empty id without
 * white space, and no id twice.
 *
 * An odd first byte makes the rest a table: 0xFF ends a record, 0xFE a
 * field, anything else (quotes, commas, CR, LF included) is field text. The
 * target writes the table as RFC 4180 (quoting fields that need it, and
 * others when the input says so; LF or CRLF line ends) and reads it back
 * with csv_record: the records and fields must be the same.
 */
#include <errno.h>

#include "cmd/catalog.h"
#include "fuzz.h"

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        devnull = fopen("/dev/null", "w");
        if (!devnull)
                abort();
        return 0;
}

static void parse_catalog(const uint8_t *data, size_t size) {
        struct catalog cat = { 0 };
        char *buf = fuzz_strndup(data, size);

        if (catalog_parse(&cat, "fuzz.csv", buf, size, devnull) == 0) {
                FUZZ_CHECK(cat.n > 0);
                for (size_t i = 0; i < cat.n; i++) {
                        FUZZ_CHECK(cat.sites[i].id[0] != '\0');
                        FUZZ_CHECK(!strpbrk(cat.sites[i].id, " \t\r\n\v\f"));
                        FUZZ_CHECK(geo_point_valid(cat.sites[i].lat, cat.sites[i].lon));
                        for (size_t j = 0; j < i; j++)
                                FUZZ_CHECK(strcmp(cat.sites[i].id, cat.sites[j].id) != 0);
                }
        }
        catalog_fini(&cat);
}

struct table {
        /* fields[r][f] are offsets into text, NUL-terminated there */
        size_t n_records, n_fields[64], field[64][64];
        char text[4096];
};

static void round_trip(const uint8_t *data, size_t size) {
        static struct table t;
        static char out[4 * 4096 + 64 * 66 * 3];
        size_t w = 0, o = 0, r = 0, f = 0;
        bool crlf = size > 0 && (data[0] & 2), quote_all = size > 0 && (data[0] & 4);

        /* The table the input describes: at most 64 records of 64 fields. */
        memset(t.n_fields, 0, sizeof(t.n_fields));
        t.field[0][0] = 0;
        t.n_fields[0] = 1;
        for (size_t i = 1; i < size && w + 1 < sizeof(t.text); i++) {
                uint8_t c = data[i];
                if (c == 0xFF || c == 0xFE) {
                        t.text[w++] = '\0';
                        if (c == 0xFF) {
                                if (r + 1 == 64)
                                        break;
                                r++, f = 0;
                        } else {
                                if (f + 1 == 64)
                                        break;
                                f++;
                        }
                        t.field[r][f] = w;
                        t.n_fields[r] = f + 1;
                        continue;
                }
                t.text[w++] = c ? (char)c : 'x'; /* fields are C strings */
        }
        t.text[w] = '\0';
        t.n_records = r + 1;

        /* RFC 4180, every record ended by a line end. */
        for (r = 0; r < t.n_records; r++) {
                for (f = 0; f < t.n_fields[r]; f++) {
                        const char *s = t.text + t.field[r][f];
                        bool q = quote_all || strpbrk(s, "\",\r\n") ||
                                 (t.n_fields[r] == 1 && !*s); /* a lone empty field */
                        if (f)
                                out[o++] = ',';
                        if (q)
                                out[o++] = '"';
                        for (; *s; s++) {
                                if (*s == '"' && q)
                                        out[o++] = '"';
                                out[o++] = *s;
                        }
                        if (q)
                                out[o++] = '"';
                }
                if (crlf)
                        out[o++] = '\r';
                out[o++] = '\n';
        }

        struct csv c = { .buf = fuzz_strndup((const uint8_t *)out, o), .len = o, .line = 1 };
        struct csv_fields got = { 0 };
        for (r = 0; r < t.n_records; r++) {
                int k = csv_record(&c, &got);
                if (k != 1)
                        fprintf(stderr, "record %zu: %d\n", r, k);
                FUZZ_CHECK(k == 1);
                FUZZ_CHECK(got.n == t.n_fields[r]);
                for (f = 0; f < got.n; f++)
                        FUZZ_CHECK(!strcmp(got.v[f], t.text + t.field[r][f]));
        }
        FUZZ_CHECK(csv_record(&c, &got) == 0);
        free(got.v);
        free(c.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 0 && (data[0] & 1))
                round_trip(data, size);
        else
                parse_catalog(size ? data + 1 : data, size ? size - 1 : 0);
        return 0;
}
