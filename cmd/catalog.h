/*
 * The datacenter catalog as CSV, for `homing nearest`: RFC 4180 records
 * (quoted fields, "" escapes, CRLF) and the rows of a catalog whose header
 * names at least id, lat and lon. Internal to cmd/; its own file so that
 * tests/fuzz/csv.c can reach it without a file or a process.
 */
#pragma once

#include <stdio.h>

#include "geo/geo.h"

/* A CSV text being read: buf[0..len), and buf[len] must be writable. */
struct csv {
        char *buf;
        size_t len, pos;
        unsigned long line; /* of the next character */
};

struct csv_fields {
        char **v; /* borrowed from the csv's buffer */
        size_t n, cap;
};

/*
 * The next record's fields, unescaped in place (each NUL-terminated in the
 * buffer). Returns 1 with a record, 0 at the end, -EINVAL for a malformed
 * quote (the caller reports csv->line), -ENOMEM.
 */
int csv_record(struct csv *c, struct csv_fields *f);

struct catalog {
        geo_site *sites;      /* ids point into buf */
        unsigned long *lines; /* each site's line */
        size_t n, cap;
        char *buf; /* the text, taken */
};

/*
 * Reads a catalog from buf[0..len) (len + 1 bytes, malloc'd: the catalog
 * takes it and unescapes it in place). Every bad row is reported on `msgs`
 * as "homing: NAME:LINE: why". Returns 0 with at least one site, or
 * -1 after reporting what was wrong. catalog_fini frees it either way.
 */
int catalog_parse(struct catalog *cat, const char *name, char *buf, size_t len, FILE *msgs);
void catalog_fini(struct catalog *cat);
