/*
 * homing nearest — the k nearest datacenters for each point on standard
 * input, for scripts.
 *
 * The catalog is a CSV file (RFC 4180: quoted fields, "" escapes, CRLF) whose
 * header names at least id, lat and lon, in any order; other columns are
 * ignored. Every bad row is reported with its line number and then the
 * command stops: an answer from a partly read catalog would be wrong without
 * saying so. The CSV reading is in catalog.c.
 *
 * Standard input is one "lat lon" per line (spaces, tabs or a comma between).
 * Each line gets exactly one output line, "id distance_m" pairs nearest first,
 * so output line n always answers input line n; a bad line gets an empty
 * output line, a message with its line number on standard error, and a
 * non-zero exit status at the end. Points stream: memory does not grow with
 * the input.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/args.h"
#include "cmd/catalog.h"
#include "cmd/commands.h"
#include "geo/geo.h"

#define PROG "homing nearest"

static void usage(FILE *f) {
        fprintf(f, "usage: homing nearest --datacenters FILE [--k N]\n"
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

/* ---- the CSV catalog (cmd/catalog.c) ------------------------------------- */

/* Reads the catalog; 0, or -1 after reporting what was wrong. */
static int catalog_read(const char *path, struct catalog *cat) {
        size_t len;
        char *buf = cmd_read_file(path, &len);

        if (!buf) {
                fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
                return -1;
        }
        return catalog_parse(cat, path, buf, len, stderr);
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
                        if (!isdigit((unsigned char)optarg[0]) || *end || errno || k == 0 ||
                            k > INT_MAX) {
                                fprintf(stderr,
                                        PROG ": --k wants a whole number from 1 to %d, not '%s'\n",
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
        assert(cat.n > 0); /* catalog_read refuses an empty catalog */
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
                        fprintf(stderr,
                                PROG ": line %lu: expected \"lat lon\" in decimal degrees\n",
                                lineno);
                        bad++;
                        putchar('\n');
                        continue;
                }
                r = geo_index_nearest(ix, lat, lon, NULL, hits, k);
                if (r < 0) {
                        fprintf(stderr,
                                PROG
                                ": line %lu: lat must be in [-90, 90] and lon in [-180, 180]\n",
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
        catalog_fini(&cat);
        return status;
}
