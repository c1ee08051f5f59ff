/*
 * The datacenter catalog that `homing nearest` reads: RFC 4180 CSV whose
 * header names at least id, lat and lon, in any order (other columns are
 * ignored). Every bad row is reported with its line number, and then the
 * whole catalog is refused: an answer from a partly read catalog would be
 * wrong without saying so.
 */
#include "cmd/catalog.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* homing nearest and homing replay both read catalogs: the messages name neither. */
#define PROG "homing"

static int fields_push(struct csv_fields *f, char *s) {
        if (f->n == f->cap) {
                size_t cap = f->cap ? 2 * f->cap : 16;
                char **v = realloc(f->v, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                f->v = v;
                f->cap = cap;
        }
        f->v[f->n++] = s;
        return 0;
}

int csv_record(struct csv *c, struct csv_fields *f) {
        char *b = c->buf;
        size_t w = c->pos;

        f->n = 0;
        if (c->pos >= c->len)
                return 0;
        for (;;) {
                size_t start = w;
                int r;

                if (c->pos < c->len && b[c->pos] == '"') {
                        c->pos++;
                        for (;;) {
                                if (c->pos >= c->len)
                                        return -EINVAL; /* unterminated quote */
                                if (b[c->pos] == '"') {
                                        if (c->pos + 1 < c->len && b[c->pos + 1] == '"') {
                                                b[w++] = '"';
                                                c->pos += 2;
                                                continue;
                                        }
                                        c->pos++;
                                        break;
                                }
                                if (b[c->pos] == '\n')
                                        c->line++;
                                b[w++] = b[c->pos++];
                        }
                        if (c->pos < c->len && b[c->pos] == '\r' && c->pos + 1 < c->len &&
                            b[c->pos + 1] == '\n')
                                c->pos++;
                        if (c->pos < c->len && b[c->pos] != ',' && b[c->pos] != '\n')
                                return -EINVAL; /* text after a closing quote */
                } else {
                        while (c->pos < c->len && b[c->pos] != ',' && b[c->pos] != '\n')
                                b[w++] = b[c->pos++];
                        if (w > start && b[w - 1] == '\r' &&
                            (c->pos >= c->len || b[c->pos] == '\n'))
                                w--;
                }
                /* Read the delimiter first: w <= pos, and the terminator
                 * may land on it. */
                char delim = c->pos < c->len ? b[c->pos++] : '\0';
                b[w] = '\0';
                r = fields_push(f, b + start);
                if (r < 0)
                        return r;
                if (delim == '\0')
                        break;
                if (delim == '\n') {
                        c->line++;
                        break;
                }
                w++; /* the next field starts after this one's terminator */
        }
        return 1;
}

static char *trim(char *s) {
        char *e;

        while (isspace((unsigned char)*s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
                *--e = '\0';
        return s;
}

static bool parse_double(const char *s, double *out) {
        char *end;

        if (!*s)
                return false;
        errno = 0;
        *out = strtod(s, &end);
        return !*end && errno != ERANGE;
}

static int catalog_push(struct catalog *cat, const geo_site *s, unsigned long line) {
        if (cat->n == cat->cap) {
                size_t cap = cat->cap ? 2 * cat->cap : 256;
                geo_site *sites = realloc(cat->sites, cap * sizeof(*sites));
                unsigned long *lines;
                if (!sites)
                        return -ENOMEM;
                cat->sites = sites;
                lines = realloc(cat->lines, cap * sizeof(*lines));
                if (!lines)
                        return -ENOMEM;
                cat->lines = lines;
                cat->cap = cap;
        }
        cat->sites[cat->n] = *s;
        cat->lines[cat->n++] = line;
        return 0;
}

static const struct catalog *sort_cat;

static int by_id(const void *a, const void *b) {
        size_t i = *(const size_t *)a, j = *(const size_t *)b;
        int c = strcmp(sort_cat->sites[i].id, sort_cat->sites[j].id);
        return c ? c : (i > j) - (i < j);
}

/* Reports each repeated id at its later line; returns how many. */
static size_t report_repeats(const char *path, const struct catalog *cat, FILE *msgs) {
        size_t *order = malloc((cat->n ? cat->n : 1) * sizeof(*order)), bad = 0;

        if (!order) {
                fprintf(msgs, PROG ": out of memory\n");
                return 1;
        }
        for (size_t i = 0; i < cat->n; i++)
                order[i] = i;
        sort_cat = cat;
        qsort(order, cat->n, sizeof(*order), by_id);
        for (size_t i = 1; i < cat->n; i++)
                if (!strcmp(cat->sites[order[i]].id, cat->sites[order[i - 1]].id)) {
                        fprintf(msgs, PROG ": %s:%lu: id '%s' is already on line %lu\n", path,
                                cat->lines[order[i]], cat->sites[order[i]].id,
                                cat->lines[order[i - 1]]);
                        bad++;
                }
        free(order);
        return bad;
}

int catalog_parse(struct catalog *cat, const char *path, char *buf, size_t len, FILE *msgs) {
        struct csv c = { .line = 1 };
        struct csv_fields f = { 0 };
        long col_id = -1, col_lat = -1, col_lon = -1;
        size_t need = 0, bad = 0;
        bool header = false;
        int r;

        c.buf = cat->buf = buf;
        c.len = len;
        if (c.len >= 3 && !memcmp(c.buf, "\xEF\xBB\xBF", 3))
                c.pos = 3;

        for (;;) {
                unsigned long line = c.line;

                r = csv_record(&c, &f);
                if (r == 0)
                        break;
                if (r == -EINVAL) {
                        fprintf(msgs, PROG ": %s:%lu: malformed quoted field\n", path, line);
                        bad++;
                        break; /* the rest cannot be framed reliably */
                }
                if (r < 0) {
                        fprintf(msgs, PROG ": out of memory\n");
                        bad++;
                        break;
                }
                if (f.n == 1 && !*trim(f.v[0]))
                        continue; /* blank line */
                if (!header) {
                        for (size_t i = 0; i < f.n; i++) {
                                const char *name = trim(f.v[i]);
                                long *col = !strcasecmp(name, "id")    ? &col_id
                                            : !strcasecmp(name, "lat") ? &col_lat
                                            : !strcasecmp(name, "lon") ? &col_lon
                                                                       : NULL;
                                if (!col)
                                        continue;
                                if (*col >= 0) {
                                        fprintf(msgs, PROG ": %s:%lu: column '%s' is named twice\n",
                                                path, line, name);
                                        goto fail;
                                }
                                *col = (long)i;
                        }
                        if (col_id < 0 || col_lat < 0 || col_lon < 0) {
                                fprintf(msgs,
                                        PROG
                                        ": %s:%lu: the header must name the columns id, lat and lon\n",
                                        path, line);
                                goto fail;
                        }
                        need = (size_t)(col_id > col_lat
                                                ? (col_id > col_lon ? col_id : col_lon)
                                                : (col_lat > col_lon ? col_lat : col_lon)) +
                               1;
                        header = true;
                        continue;
                }

                geo_site s = { .status = GEO_SITE_ACTIVE };
                const char *why = NULL;
                if (f.n < need) {
                        fprintf(msgs, PROG ": %s:%lu: %zu fields, the header has at least %zu\n",
                                path, line, f.n, need);
                        bad++;
                        continue;
                }
                s.id = trim(f.v[col_id]);
                if (!*s.id)
                        why = "the id is empty";
                else if (strpbrk(s.id, " \t\r\n\v\f"))
                        why = "the id contains white space";
                else if (!parse_double(trim(f.v[col_lat]), &s.lat) ||
                         !parse_double(trim(f.v[col_lon]), &s.lon))
                        why = "lat and lon must be decimal numbers";
                else if (!geo_point_valid(s.lat, s.lon))
                        why = "lat must be in [-90, 90] and lon in [-180, 180]";
                if (why) {
                        fprintf(msgs, PROG ": %s:%lu: %s\n", path, line, why);
                        bad++;
                        continue;
                }
                if (catalog_push(cat, &s, line) < 0) {
                        fprintf(msgs, PROG ": out of memory\n");
                        goto fail;
                }
        }
        if (!header) {
                fprintf(msgs, PROG ": %s: no header row\n", path);
                goto fail;
        }
        bad += report_repeats(path, cat, msgs);
        if (bad) {
                fprintf(msgs, PROG ": %s: %zu bad row%s\n", path, bad, bad == 1 ? "" : "s");
                goto fail;
        }
        if (!cat->n) {
                fprintf(msgs, PROG ": %s: no datacenter\n", path);
                goto fail;
        }
        free(f.v);
        return 0;
fail:
        free(f.v);
        return -1;
}

void catalog_fini(struct catalog *cat) {
        free(cat->sites);
        free(cat->lines);
        free(cat->buf);
        *cat = (struct catalog){ 0 };
}
