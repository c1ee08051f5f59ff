/*
 * homing nearest — the k nearest datacenters for each point on standard
 * input, for scripts.
 *
 * The catalog is a CSV file (RFC 4180: quoted fields, "" escapes, CRLF) whose
 * header names at least id, lat and lon, in any order; other columns are
 * ignored. Every bad row is reported with its line number and then the
 * command stops: an answer from a partly read catalog would be wrong without
 * saying so.
 *
 * Standard input is one "lat lon" per line (spaces, tabs or a comma between).
 * Each line gets exactly one output line, "id distance_m" pairs nearest first,
 * so output line n always answers input line n; a bad line gets an empty
 * output line, a message with its line number on standard error, and a
 * non-zero exit status at the end. Points stream: memory does not grow with
 * the input.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/commands.h"
#include "geo/geo.h"

#define PROG "homing nearest"

static void usage(FILE *f) {
        fprintf(f,
                "usage: homing nearest --datacenters FILE [--k N]\n"
                "\n"
                "Reads \"lat lon\" lines (decimal degrees, WGS84) from standard input and\n"
                "prints, for each, the N nearest datacenters (default 1) as \"id distance_m\"\n"
                "pairs separated by spaces, nearest first. Distances are geodesics on the\n"
                "WGS84 ellipsoid in metres, printed to the micrometre; equal distances are\n"
                "ordered by id.\n"
                "\n"
                "  --datacenters FILE  CSV with a header row naming at least the columns\n"
                "                      id, lat and lon, in any order; others are ignored\n"
                "  --k N               how many datacenters per line (default 1)\n"
                "  --help              this text\n"
                "\n"
                "Output line n answers input line n. A bad input line gets an empty output\n"
                "line and a message on standard error with its line number, and the command\n"
                "then exits 1 at the end. A bad row in FILE is reported with its line\n"
                "number and nothing is answered. Exit status: 0 all good, 1 bad input or\n"
                "data, 2 bad command line.\n");
}

/* ---- the CSV catalog ------------------------------------------------------ */

struct csv {
        char *buf;
        size_t len, pos;
        unsigned long line; /* of the next character */
};

struct fields {
        char **v;
        size_t n, cap;
};

static int fields_push(struct fields *f, char *s) {
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

/*
 * The next record's fields, unescaped in place. Returns 1 with a record, 0 at
 * the end, -EINVAL for a malformed quote (the caller reports csv->line),
 * -ENOMEM.
 */
static int csv_record(struct csv *c, struct fields *f) {
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
                        if (w > start && b[w - 1] == '\r' && (c->pos >= c->len || b[c->pos] == '\n'))
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

struct catalog {
        geo_site *sites;
        unsigned long *lines;
        size_t n, cap;
        char *buf;
};

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
static size_t report_repeats(const char *path, const struct catalog *cat) {
        size_t *order = malloc((cat->n ? cat->n : 1) * sizeof(*order)), bad = 0;

        if (!order) {
                fprintf(stderr, PROG ": out of memory\n");
                return 1;
        }
        for (size_t i = 0; i < cat->n; i++)
                order[i] = i;
        sort_cat = cat;
        qsort(order, cat->n, sizeof(*order), by_id);
        for (size_t i = 1; i < cat->n; i++)
                if (!strcmp(cat->sites[order[i]].id, cat->sites[order[i - 1]].id)) {
                        fprintf(stderr, PROG ": %s:%lu: id '%s' is already on line %lu\n", path,
                                cat->lines[order[i]], cat->sites[order[i]].id,
                                cat->lines[order[i - 1]]);
                        bad++;
                }
        free(order);
        return bad;
}

static char *slurp(const char *path, size_t *len) {
        FILE *f = fopen(path, "rb");
        char *buf = NULL;
        size_t cap = 0, n = 0;

        if (!f)
                return NULL;
        for (;;) {
                if (cap - n < 65536) {
                        char *more = realloc(buf, cap ? 2 * cap : 65536);
                        if (!more) {
                                free(buf);
                                fclose(f);
                                errno = ENOMEM;
                                return NULL;
                        }
                        buf = more;
                        cap = cap ? 2 * cap : 65536;
                }
                size_t got = fread(buf + n, 1, cap - n - 1, f);
                n += got;
                if (got == 0)
                        break;
        }
        if (ferror(f)) {
                free(buf);
                fclose(f);
                errno = EIO;
                return NULL;
        }
        fclose(f);
        buf[n] = '\0';
        *len = n;
        return buf;
}

/* Reads the catalog; 0, or -1 after reporting what was wrong. */
static int catalog_read(const char *path, struct catalog *cat) {
        struct csv c = { .line = 1 };
        struct fields f = { 0 };
        long col_id = -1, col_lat = -1, col_lon = -1;
        size_t need = 0, bad = 0;
        bool header = false;
        int r;

        c.buf = cat->buf = slurp(path, &c.len);
        if (!c.buf) {
                fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
                return -1;
        }
        if (c.len >= 3 && !memcmp(c.buf, "\xEF\xBB\xBF", 3))
                c.pos = 3;

        for (;;) {
                unsigned long line = c.line;

                r = csv_record(&c, &f);
                if (r == 0)
                        break;
                if (r == -EINVAL) {
                        fprintf(stderr, PROG ": %s:%lu: malformed quoted field\n", path, line);
                        bad++;
                        break; /* the rest cannot be framed reliably */
                }
                if (r < 0) {
                        fprintf(stderr, PROG ": out of memory\n");
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
                                        fprintf(stderr, PROG ": %s:%lu: column '%s' is named twice\n",
                                                path, line, name);
                                        goto fail;
                                }
                                *col = (long)i;
                        }
                        if (col_id < 0 || col_lat < 0 || col_lon < 0) {
                                fprintf(stderr, PROG ": %s:%lu: the header must name the columns id, lat and lon\n",
                                        path, line);
                                goto fail;
                        }
                        need = (size_t)(col_id > col_lat ? (col_id > col_lon ? col_id : col_lon)
                                                         : (col_lat > col_lon ? col_lat : col_lon)) + 1;
                        header = true;
                        continue;
                }

                geo_site s = { .status = GEO_SITE_ACTIVE };
                const char *why = NULL;
                if (f.n < need) {
                        fprintf(stderr, PROG ": %s:%lu: %zu fields, the header has at least %zu\n", path,
                                line, f.n, need);
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
                        fprintf(stderr, PROG ": %s:%lu: %s\n", path, line, why);
                        bad++;
                        continue;
                }
                if (catalog_push(cat, &s, line) < 0) {
                        fprintf(stderr, PROG ": out of memory\n");
                        goto fail;
                }
        }
        if (!header) {
                fprintf(stderr, PROG ": %s: no header row\n", path);
                goto fail;
        }
        bad += report_repeats(path, cat);
        if (bad) {
                fprintf(stderr, PROG ": %s: %zu bad row%s\n", path, bad, bad == 1 ? "" : "s");
                goto fail;
        }
        if (!cat->n) {
                fprintf(stderr, PROG ": %s: no datacenter\n", path);
                goto fail;
        }
        free(f.v);
        return 0;
fail:
        free(f.v);
        return -1;
}

/* ---- the points ------------------------------------------------------------- */

/* "lat lon", "lat,lon" or "lat, lon", with optional white space around. */
static bool parse_point(char *s, double *lat, double *lon) {
        char *end;

        errno = 0;
        *lat = strtod(s, &end);
        if (end == s || errno == ERANGE)
                return false;
        s = end;
        while (*s == ' ' || *s == '\t')
                s++;
        if (*s == ',')
                s++;
        if (s == end && *s != ' ' && *s != '\t')
                return false; /* no separator */
        while (*s == ' ' || *s == '\t')
                s++;
        *lon = strtod(s, &end);
        if (end == s || errno == ERANGE)
                return false;
        while (*end == ' ' || *end == '\t')
                end++;
        return !*end;
}

int cmd_nearest(int argc, char **argv) {
        static const struct option options[] = {
                { "datacenters", required_argument, NULL, 'd' },
                { "k", required_argument, NULL, 'k' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        struct catalog cat = { 0 };
        geo_index *ix = NULL;
        geo_hit *hits = NULL;
        const char *path = NULL;
        unsigned long k = 1, lineno = 0, bad = 0;
        char *line = NULL;
        size_t line_cap = 0;
        ssize_t len;
        int opt, r, status = 1;

        optind = 1;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, "d:k:h", options, NULL)) != -1) {
                switch (opt) {
                case 'd':
                        path = optarg;
                        break;
                case 'k': {
                        char *end;
                        errno = 0;
                        k = strtoul(optarg, &end, 10);
                        if (!isdigit((unsigned char)optarg[0]) || *end || errno || k == 0 || k > INT_MAX) {
                                fprintf(stderr, PROG ": --k wants a whole number from 1 to %d, not '%s'\n",
                                        INT_MAX, optarg);
                                return 2;
                        }
                        break;
                }
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        if (optopt)
                                fprintf(stderr, PROG ": option -%c: %s\n", optopt,
                                        strchr("dk", optopt) ? "needs a value" : "unknown");
                        else
                                fprintf(stderr, PROG ": bad option '%s'\n", argv[optind - 1]);
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, PROG ": unexpected argument '%s'\n", argv[optind]);
                usage(stderr);
                return 2;
        }
        if (!path) {
                fprintf(stderr, PROG ": --datacenters FILE is required\n");
                usage(stderr);
                return 2;
        }

        if (catalog_read(path, &cat) < 0)
                goto out;
        r = geo_index_new(&ix, cat.sites, cat.n, NULL, 0);
        if (r < 0) {
                fprintf(stderr, PROG ": %s: cannot index: %s\n", path, strerror(-r));
                goto out;
        }
        if (k > cat.n)
                k = cat.n;
        hits = malloc(k * sizeof(*hits));
        if (!hits) {
                fprintf(stderr, PROG ": out of memory\n");
                goto out;
        }

        setvbuf(stdout, NULL, _IOFBF, 1 << 16);
        while ((len = getline(&line, &line_cap, stdin)) != -1) {
                double lat, lon;

                lineno++;
                while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                        line[--len] = '\0';
                if (!parse_point(line, &lat, &lon)) {
                        fprintf(stderr, PROG ": line %lu: expected \"lat lon\" in decimal degrees\n", lineno);
                        bad++;
                        putchar('\n');
                        continue;
                }
                r = geo_index_nearest(ix, lat, lon, NULL, hits, k);
                if (r < 0) {
                        fprintf(stderr, PROG ": line %lu: lat must be in [-90, 90] and lon in [-180, 180]\n",
                                lineno);
                        bad++;
                        putchar('\n');
                        continue;
                }
                for (int i = 0; i < r; i++)
                        printf("%s%s %.6f", i ? " " : "", geo_index_site_id(ix, hits[i].site),
                               hits[i].distance_m);
                putchar('\n');
        }
        if (ferror(stdin)) {
                fprintf(stderr, PROG ": reading standard input: %s\n", strerror(errno));
                goto out;
        }
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, PROG ": writing standard output: %s\n", strerror(errno));
                goto out;
        }
        if (bad)
                fprintf(stderr, PROG ": %lu bad line%s\n", bad, bad == 1 ? "" : "s");
        status = bad ? 1 : 0;
out:
        free(line);
        free(hits);
        geo_index_unref(ix);
        free(cat.sites);
        free(cat.lines);
        free(cat.buf);
        return status;
}
