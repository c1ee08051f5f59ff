/*
 * Residency zones against a planar reference. The input describes up to
 * three polygons of up to three rings each; every ring is star-shaped around
 * its own centre (so it is simple), away from the antimeridian and the
 * poles, and may overlap the others anyhow. The target writes them as a
 * GeoJSON MultiPolygon, reads it with geo_zone_new and tests points from the
 * input with geo_zone_covers.
 *
 * Properties: the zone is accepted (simple rings are valid), and at every
 * point farther than 1e-7 degrees from every edge it answers as a plain
 * even-odd test does in the plane of (lon, lat): inside when, for some
 * polygon, an odd number of its rings contain the point.
 */
#include <math.h>

#include "fuzz.h"
#include "geo/geo.h"

#define MAX_POLYS 3
#define MAX_RINGS 3
#define MAX_VERTS 12
#define N_POINTS 24

struct ring {
        double x[MAX_VERTS + 1], y[MAX_VERTS + 1]; /* closed: the last is the first */
        int n;                                     /* vertices, without the closing one */
};

struct poly {
        struct ring rings[MAX_RINGS];
        int n;
};

static void ring_make(struct fuzz_bytes *b, struct ring *r) {
        double cx = -170 + 340 * fuzz_unit(b), cy = -75 + 150 * fuzz_unit(b);
        double phase = 2 * M_PI * fuzz_unit(b);

        r->n = (int)fuzz_range(b, 3, MAX_VERTS);
        for (int i = 0; i < r->n; i++) {
                /* Strictly increasing angles, less than a turn: a star-shaped ring. */
                double a = phase + 2 * M_PI * (i + 0.8 * fuzz_unit(b)) / r->n;
                double radius = 0.5 + 9.5 * fuzz_unit(b);
                r->x[i] = cx + radius * cos(a);
                r->y[i] = cy + radius * sin(a);
        }
        r->x[r->n] = r->x[0];
        r->y[r->n] = r->y[0];
}

/* Even-odd (crossing number) in the plane. */
static bool ring_contains(const struct ring *r, double x, double y) {
        bool in = false;
        for (int i = 0; i < r->n; i++) {
                double x0 = r->x[i], y0 = r->y[i], x1 = r->x[i + 1], y1 = r->y[i + 1];
                if ((y0 > y) != (y1 > y) && x < x0 + (y - y0) * (x1 - x0) / (y1 - y0))
                        in = !in;
        }
        return in;
}

static double segment_distance(double x, double y, double x0, double y0, double x1, double y1) {
        double dx = x1 - x0, dy = y1 - y0,
               t = ((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy);
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        return hypot(x - (x0 + t * dx), y - (y0 + t * dy));
}

static bool near_an_edge(const struct poly *polys, int n_polys, double x, double y) {
        for (int p = 0; p < n_polys; p++)
                for (int k = 0; k < polys[p].n; k++) {
                        const struct ring *r = &polys[p].rings[k];
                        for (int i = 0; i < r->n; i++)
                                if (segment_distance(x, y, r->x[i], r->y[i], r->x[i + 1],
                                                     r->y[i + 1]) < 1e-7)
                                        return true;
                }
        return false;
}

static char *geojson(const struct poly *polys, int n_polys) {
        size_t cap = 64 + (size_t)MAX_POLYS * MAX_RINGS * (MAX_VERTS + 1) * 64, n = 0;
        char *s = malloc(cap);

        FUZZ_CHECK(s != NULL);
        n += (size_t)snprintf(s + n, cap - n, "{\"type\":\"MultiPolygon\",\"coordinates\":[");
        for (int p = 0; p < n_polys; p++) {
                n += (size_t)snprintf(s + n, cap - n, "%s[", p ? "," : "");
                for (int k = 0; k < polys[p].n; k++) {
                        const struct ring *r = &polys[p].rings[k];
                        n += (size_t)snprintf(s + n, cap - n, "%s[", k ? "," : "");
                        for (int i = 0; i <= r->n; i++)
                                n += (size_t)snprintf(s + n, cap - n, "%s[%.17g,%.17g]",
                                                      i ? "," : "", r->x[i], r->y[i]);
                        n += (size_t)snprintf(s + n, cap - n, "]");
                }
                n += (size_t)snprintf(s + n, cap - n, "]");
        }
        snprintf(s + n, cap - n, "]}");
        return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct fuzz_bytes b = { data, size };
        struct poly polys[MAX_POLYS];
        int n_polys = (int)fuzz_range(&b, 1, MAX_POLYS);
        double minx = 180, maxx = -180, miny = 90, maxy = -90;
        geo_zone *z = NULL;
        char err[256], *text;

        for (int p = 0; p < n_polys; p++) {
                polys[p].n = (int)fuzz_range(&b, 1, MAX_RINGS);
                for (int k = 0; k < polys[p].n; k++) {
                        struct ring *r = &polys[p].rings[k];
                        ring_make(&b, r);
                        for (int i = 0; i < r->n; i++) {
                                minx = fmin(minx, r->x[i]), maxx = fmax(maxx, r->x[i]);
                                miny = fmin(miny, r->y[i]), maxy = fmax(maxy, r->y[i]);
                        }
                }
        }
        text = geojson(polys, n_polys);
        if (geo_zone_new(&z, "fuzz", text, err, sizeof(err)) != 0) {
                fprintf(stderr, "refused: %s\n%s\n", err, text);
                FUZZ_CHECK(!"a zone of simple rings is accepted");
        }
        for (int i = 0; i < N_POINTS; i++) {
                /* Points in and around the rings' bounding box. */
                double x = minx - 1 + (maxx - minx + 2) * fuzz_unit(&b);
                double y = miny - 1 + (maxy - miny + 2) * fuzz_unit(&b);
                bool want = false;
                int got;

                if (y < -90 || y > 90 || x < -180 || x > 180 || near_an_edge(polys, n_polys, x, y))
                        continue;
                for (int p = 0; p < n_polys && !want; p++) {
                        bool odd = false;
                        for (int k = 0; k < polys[p].n; k++)
                                odd ^= ring_contains(&polys[p].rings[k], x, y);
                        want = odd;
                }
                got = geo_zone_covers(z, y, x);
                if (got != want)
                        fprintf(stderr,
                                "point lon %.17g lat %.17g: zone says %d, even-odd %d\n%s\n", x, y,
                                got, want, text);
                FUZZ_CHECK(got == (int)want);
        }
        geo_zone_unref(z);
        free(text);
        return 0;
}
