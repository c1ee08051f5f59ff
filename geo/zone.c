/*
 * Residency zones: GeoJSON polygons read by GEOS, tested with prepared
 * geometries.
 *
 * GEOS is planar, so a zone lives in the plane of (longitude, latitude), the
 * way RFC 7946 draws it: edges are straight there. The sphere differs from
 * that plane at the antimeridian and at the poles, and both are dealt with
 * once, when the zone is read, ring by ring:
 *
 *  - A ring with an edge longer than 180 degrees of longitude (Fiji drawn
 *    from 177 to -179) crosses the antimeridian: its longitudes are unwrapped
 *    to a continuous run (177 to 181). An edge from one side of the map to the
 *    other along the antimeridian itself (-180 to 180) is not a crossing.
 *  - A ring that then winds once around a pole (a polar cap, or Antarctica's
 *    coast as world-atlas draws it) is closed over the nearer pole: on to the
 *    pole, along it, and back.
 *  - A point is tested at lon, lon - 360 and lon + 360, so it is found
 *    whichever copy of the meridian a ring uses: 180 and -180 are the same.
 *    A ring that then reaches 540 (it goes around more than once) is
 *    refused: no shift would reach all of it.
 *
 * Each ring is thus a simple planar region, and a polygon is the even-odd
 * combination of its rings: a point is inside when an odd number of them
 * contain it. For an ordinary polygon that is the shell minus its holes; it
 * does not depend on ring order or orientation, which GeoJSON in the wild
 * gets wrong, and it reads the spherical polygons of d3 and world-atlas (a
 * tiny ring around the pole with the coast as its "hole" is Antarctica). A
 * zone is the union of its polygons.
 *
 * A point on the border of any ring is inside (a datacenter on a border line
 * is in both countries rather than in neither). That includes the pole: a
 * point at a pole is inside when the zone reaches the pole.
 *
 * A GEOS context and a prepared geometry must not be used by two threads at
 * once (GEOS builds the prepared indexes lazily), so each zone has a mutex
 * around its tests. The index tests sites against zones once, when it is
 * built; queries never reach GEOS.
 */
#include <errno.h>
#include <geos_c.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "geo/geo.h"

/* One ring as a planar region of its own. */
struct region {
        GEOSGeometry *geom;
        const GEOSPreparedGeometry *prep;
        double minx, maxx, miny, maxy;
};

/* A polygon: regions[first .. first + n), combined even-odd. */
struct poly {
        size_t first, n;
};

struct geo_zone {
        atomic_ulong refs;
        char *id;
        pthread_mutex_t lock;
        GEOSContextHandle_t ctx;
        struct region *regions;
        size_t n_regions, cap_regions;
        struct poly *polys;
        size_t n_polys, cap_polys;
        double minx, maxx;
        char geos_msg[256]; /* GEOS's last error, for the caller's err */
};

static void on_geos_error(const char *message, void *userdata) {
        geo_zone *z = userdata;
        snprintf(z->geos_msg, sizeof(z->geos_msg), "%s", message);
}

static void on_geos_notice(const char *message, void *userdata) {
        /* Notices are not errors; GEOS would print them otherwise. */
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t err_size, const char *fmt,
                                                      ...) {
        va_list ap;

        if (err && err_size) {
                va_start(ap, fmt);
                vsnprintf(err, err_size, fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

/* ---- reading ------------------------------------------------------------- */

/* A ring as interleaved x (lon), y (lat) pairs, closed. */
struct ring {
        double *xy;
        unsigned n;
};

static int ring_read(geo_zone *z, const GEOSGeometry *g, struct ring *r, char *err,
                     size_t err_size) {
        const GEOSCoordSequence *seq = GEOSGeom_getCoordSeq_r(z->ctx, g);
        unsigned n;

        if (!seq || !GEOSCoordSeq_getSize_r(z->ctx, seq, &n))
                return fail(err, err_size, "zone %s: unreadable ring", z->id);
        if (n < 4)
                return fail(err, err_size, "zone %s: a ring needs 4 positions, has %u", z->id, n);
        r->xy = malloc(2 * (size_t)n * sizeof(*r->xy));
        if (!r->xy)
                return -ENOMEM;
        r->n = n;
        for (unsigned i = 0; i < n; i++) {
                double x, y;
                if (!GEOSCoordSeq_getXY_r(z->ctx, seq, i, &x, &y))
                        return fail(err, err_size, "zone %s: unreadable position", z->id);
                /* Longitudes past +-180 are allowed: some tools unwrap that way. */
                if (!isfinite(x) || !isfinite(y) || y < -90 || y > 90 || x < -540 || x > 540)
                        return fail(err, err_size, "zone %s: position (%g, %g) is out of range",
                                    z->id, x, y);
                r->xy[2 * i] = x;
                r->xy[2 * i + 1] = y;
        }
        return 0;
}

static void ring_range(const struct ring *r, double *min, double *max) {
        *min = INFINITY;
        *max = -INFINITY;
        for (unsigned i = 0; i < r->n; i++) {
                *min = fmin(*min, r->xy[2 * i]);
                *max = fmax(*max, r->xy[2 * i]);
        }
}

static void ring_shift(struct ring *r, double dx) {
        for (unsigned i = 0; i < r->n; i++)
                r->xy[2 * i] += dx;
}

/* An edge that crosses the antimeridian: longer than half the world, and
 * not one that runs along the antimeridian from -180 to 180. */
static bool crosses(double x0, double x1) {
        return fabs(x1 - x0) > 180 && !(fabs(x0) == 180 && fabs(x1) == 180);
}

/*
 * Makes a ring that crosses the antimeridian continuous in longitude, and
 * closes one that then winds around a pole over that pole. A ring with no
 * crossing is left as drawn: it is planar already.
 */
static int ring_unwrap(struct ring *r) {
        bool jumps = false;
        double winding, lat_sum = 0;
        double *u;

        for (unsigned i = 0; i + 1 < r->n; i++) {
                /* The analyzer does not follow fail() (variadic), so it thinks a ring_read
                 * that failed half-way returned 0: NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage) */
                jumps |= crosses(r->xy[2 * i], r->xy[2 * i + 2]);
                lat_sum += r->xy[2 * i + 1];
        }
        if (!jumps)
                return 0;

        /* Room for the three positions a pole closure adds. */
        u = malloc(2 * ((size_t)r->n + 3) * sizeof(*u));
        if (!u)
                return -ENOMEM;
        u[0] = r->xy[0];
        u[1] = r->xy[1];
        for (unsigned i = 1; i < r->n; i++) {
                double d = r->xy[2 * i] - r->xy[2 * i - 2];
                if (d > 180)
                        d -= 360;
                else if (d < -180)
                        d += 360;
                u[2 * i] = u[2 * i - 2] + d;
                u[2 * i + 1] = r->xy[2 * i + 1];
        }
        winding = u[2 * (r->n - 1)] - u[0];
        if (fabs(winding) < 180) {
                /* Crosses and comes back: keep it closed exactly. */
                u[2 * (r->n - 1)] = u[0];
        } else {
                /* Around a pole: from the last position (first +- 360) on to
                 * the pole, along it back to the first longitude, and to the
                 * first position. */
                double pole = lat_sum >= 0 ? 90 : -90;
                double *end = u + 2 * r->n;
                end[0] = u[2 * (r->n - 1)];
                end[1] = pole;
                end[2] = u[0];
                end[3] = pole;
                end[4] = u[0];
                end[5] = u[1];
                r->n += 3;
        }
        free(r->xy);
        r->xy = u;
        return 0;
}

static GEOSGeometry *ring_make(geo_zone *z, const struct ring *r) {
        GEOSCoordSequence *seq = GEOSCoordSeq_copyFromBuffer_r(z->ctx, r->xy, r->n, 0, 0);
        GEOSGeometry *g;

        if (!seq)
                return NULL;
        g = GEOSGeom_createLinearRing_r(z->ctx, seq);
        if (!g)
                GEOSCoordSeq_destroy_r(z->ctx, seq);
        return g;
}

/* Turns one ring into a prepared planar region of the zone. */
static int region_add(geo_zone *z, struct ring *r, char *err, size_t err_size) {
        GEOSGeometry *shell, *g;
        struct region *reg;
        double dx, minx, maxx;
        int ret;

        ret = ring_unwrap(r);
        if (ret < 0)
                return ret;
        /* Start the region in [-180, 180), so three shifts find any point.
         * That holds while it ends before 540: a ring that goes around the
         * Earth twice (or is drawn across more than that) would have copies
         * of a point no shift reaches, and 180 and -180 would differ. */
        ring_range(r, &minx, &maxx);
        dx = -360 * floor((minx + 180) / 360);
        if (maxx + dx >= 540)
                return fail(err, err_size,
                            "zone %s: polygon %zu has a ring around the Earth more than once "
                            "(its longitudes span %g degrees)",
                            z->id, z->n_polys + 1, maxx - minx);
        ring_shift(r, dx);

        shell = ring_make(z, r);
        if (!shell)
                return -ENOMEM;
        g = GEOSGeom_createPolygon_r(z->ctx, shell, NULL, 0);
        if (!g) {
                GEOSGeom_destroy_r(z->ctx, shell);
                return -ENOMEM;
        }
        if (GEOSisValid_r(z->ctx, g) != 1) {
                char *why = GEOSisValidReason_r(z->ctx, g);
                ret = fail(err, err_size, "zone %s: polygon %zu has an invalid ring: %s", z->id,
                           z->n_polys + 1, why ? why : "?");
                GEOSFree_r(z->ctx, why);
                GEOSGeom_destroy_r(z->ctx, g);
                return ret;
        }
        if (z->n_regions == z->cap_regions) {
                size_t cap = z->cap_regions ? 2 * z->cap_regions : 8;
                struct region *regions = realloc(z->regions, cap * sizeof(*regions));
                if (!regions) {
                        GEOSGeom_destroy_r(z->ctx, g);
                        return -ENOMEM;
                }
                z->regions = regions;
                z->cap_regions = cap;
        }
        reg = &z->regions[z->n_regions];
        reg->prep = GEOSPrepare_r(z->ctx, g);
        if (!reg->prep) {
                GEOSGeom_destroy_r(z->ctx, g);
                return -ENOMEM;
        }
        reg->geom = g;
        ring_range(r, &reg->minx, &reg->maxx);
        reg->miny = INFINITY;
        reg->maxy = -INFINITY;
        for (unsigned i = 0; i < r->n; i++) {
                reg->miny = fmin(reg->miny, r->xy[2 * i + 1]);
                reg->maxy = fmax(reg->maxy, r->xy[2 * i + 1]);
        }
        z->n_regions++;
        return 0;
}

static int poly_add(geo_zone *z, const GEOSGeometry *src, char *err, size_t err_size) {
        int n_holes = GEOSGetNumInteriorRings_r(z->ctx, src);
        size_t first = z->n_regions;
        int r = 0;

        if (n_holes < 0)
                return fail(err, err_size, "zone %s: unreadable polygon", z->id);
        if (z->n_polys == z->cap_polys) {
                size_t cap = z->cap_polys ? 2 * z->cap_polys : 4;
                struct poly *polys = realloc(z->polys, cap * sizeof(*polys));
                if (!polys)
                        return -ENOMEM;
                z->polys = polys;
                z->cap_polys = cap;
        }
        for (int i = 0; i <= n_holes && r == 0; i++) {
                const GEOSGeometry *g = i == 0 ? GEOSGetExteriorRing_r(z->ctx, src)
                                               : GEOSGetInteriorRingN_r(z->ctx, src, i - 1);
                struct ring ring = { 0 };

                if (!g)
                        return fail(err, err_size, "zone %s: unreadable ring", z->id);
                r = ring_read(z, g, &ring, err, err_size);
                if (r == 0)
                        r = region_add(z, &ring, err, err_size);
                free(ring.xy);
        }
        if (r < 0)
                return r;
        z->polys[z->n_polys++] = (struct poly){ .first = first, .n = z->n_regions - first };
        return 0;
}

static int collect(geo_zone *z, const GEOSGeometry *g, char *err, size_t err_size) {
        int type = GEOSGeomTypeId_r(z->ctx, g), n, r;

        switch (type) {
        case GEOS_POLYGON:
                if (GEOSisEmpty_r(z->ctx, g))
                        return 0;
                return poly_add(z, g, err, err_size);
        case GEOS_MULTIPOLYGON:
        case GEOS_GEOMETRYCOLLECTION:
                n = GEOSGetNumGeometries_r(z->ctx, g);
                for (int i = 0; i < n; i++) {
                        const GEOSGeometry *part = GEOSGetGeometryN_r(z->ctx, g, i);
                        if (!part)
                                return fail(err, err_size, "zone %s: unreadable part", z->id);
                        r = collect(z, part, err, err_size);
                        if (r < 0)
                                return r;
                }
                return 0;
        default: {
                char *name = GEOSGeomType_r(z->ctx, g);
                r = fail(err, err_size, "zone %s: a zone is made of polygons, not of a %s", z->id,
                         name ? name : "?");
                GEOSFree_r(z->ctx, name);
                return r;
        }
        }
}

/*
 * GEOS 3.11's GeoJSON reader takes x and y from a position without looking
 * at its length, so an empty one ([]) in a ring or a line crashes the
 * process. Positions are checked here first, with Jansson: every position
 * of every geometry (by its type's nesting depth) holds at least two
 * values. The rest (numbers, types, ring sizes) GEOS checks itself.
 */
static int coordinates_depth(const char *type) {
        static const struct {
                const char *type;
                int depth;
        } depths[] = {
                { "LineString", 2 },      { "MultiPoint", 2 },   { "Polygon", 3 },
                { "MultiLineString", 3 }, { "MultiPolygon", 4 },
        };
        for (size_t i = 0; type && i < sizeof(depths) / sizeof(depths[0]); i++)
                if (!strcmp(type, depths[i].type))
                        return depths[i].depth;
        return 0; /* a Point ([] is an empty point to GEOS), or not a geometry */
}

static bool positions_ok(const json_t *v, int depth) {
        size_t i;
        json_t *item;

        if (!json_is_array(v))
                return true; /* GEOS refuses it */
        if (depth == 1)
                return json_array_size(v) >= 2;
        json_array_foreach(v, i, item) if (!positions_ok(item, depth - 1)) return false;
        return true;
}

/* Walks geometries, collections, features and feature collections. */
static bool geojson_positions_ok(const json_t *obj) {
        static const char *const nested[] = { "geometry", "geometries", "features" };
        int depth;

        if (json_is_array(obj)) {
                size_t i;
                json_t *item;
                json_array_foreach(obj, i, item) if (!geojson_positions_ok(item)) return false;
                return true;
        }
        if (!json_is_object(obj))
                return true;
        depth = coordinates_depth(json_string_value(json_object_get(obj, "type")));
        if (depth && !positions_ok(json_object_get(obj, "coordinates"), depth))
                return false;
        for (size_t i = 0; i < sizeof(nested) / sizeof(nested[0]); i++)
                if (!geojson_positions_ok(json_object_get(obj, nested[i])))
                        return false;
        return true;
}

int geo_zone_new(geo_zone **out, const char *id, const char *geojson, char *err, size_t err_size) {
        GEOSGeoJSONReader *reader = NULL;
        GEOSGeometry *g = NULL;
        geo_zone *z;
        int r;

        if (err && err_size)
                err[0] = '\0';
        if (!out || !id || !*id || !geojson)
                return fail(err, err_size, "a zone needs an id and GeoJSON text");
        z = calloc(1, sizeof(*z));
        if (!z)
                return -ENOMEM;
        atomic_init(&z->refs, 1);
        pthread_mutex_init(&z->lock, NULL);
        z->id = strdup(id);
        z->ctx = GEOS_init_r();
        if (!z->id || !z->ctx) {
                r = -ENOMEM;
                goto out;
        }
        GEOSContext_setErrorMessageHandler_r(z->ctx, on_geos_error, z);
        GEOSContext_setNoticeMessageHandler_r(z->ctx, on_geos_notice, z);
        {
                json_error_t jerr;
                json_t *doc = json_loads(geojson, 0, &jerr);
                bool ok = doc && geojson_positions_ok(doc);

                json_decref(doc);
                if (!ok) {
                        r = doc ? fail(err, err_size,
                                       "zone %s: a position has fewer than two numbers", id)
                                : fail(err, err_size, "zone %s: not GeoJSON: line %d: %s", id,
                                       jerr.line, jerr.text);
                        goto out;
                }
        }
        reader = GEOSGeoJSONReader_create_r(z->ctx);
        if (!reader) {
                r = -ENOMEM;
                goto out;
        }
        g = GEOSGeoJSONReader_readGeometry_r(z->ctx, reader, geojson);
        if (!g) {
                r = fail(err, err_size, "zone %s: not GeoJSON: %s", id, z->geos_msg);
                goto out;
        }
        r = collect(z, g, err, err_size);
        if (r < 0)
                goto out;
        if (!z->n_polys) {
                r = fail(err, err_size, "zone %s: no polygon", id);
                goto out;
        }
        z->minx = INFINITY;
        z->maxx = -INFINITY;
        for (size_t i = 0; i < z->n_regions; i++) {
                z->minx = fmin(z->minx, z->regions[i].minx);
                z->maxx = fmax(z->maxx, z->regions[i].maxx);
        }
out:
        if (g)
                GEOSGeom_destroy_r(z->ctx, g);
        if (reader)
                GEOSGeoJSONReader_destroy_r(z->ctx, reader);
        if (r < 0) {
                geo_zone_unref(z);
                return r;
        }
        *out = z;
        return 0;
}

geo_zone *geo_zone_ref(geo_zone *z) {
        if (z)
                atomic_fetch_add_explicit(&z->refs, 1, memory_order_relaxed);
        return z;
}

geo_zone *geo_zone_unref(geo_zone *z) {
        if (!z || atomic_fetch_sub_explicit(&z->refs, 1, memory_order_acq_rel) != 1)
                return NULL;
        for (size_t i = 0; i < z->n_regions; i++) {
                GEOSPreparedGeom_destroy_r(z->ctx, z->regions[i].prep);
                GEOSGeom_destroy_r(z->ctx, z->regions[i].geom);
        }
        free(z->regions);
        free(z->polys);
        if (z->ctx)
                GEOS_finish_r(z->ctx);
        pthread_mutex_destroy(&z->lock);
        free(z->id);
        free(z);
        return NULL;
}

const char *geo_zone_id(const geo_zone *z) {
        return z->id;
}

/* ---- testing ------------------------------------------------------------- */

enum { OUTSIDE, BORDER, INSIDE };

/* Where (x, y) is relative to one region, under any of the three shifts;
 * or -ENOMEM, -EIO. *pt caches the point geometry across calls. */
static int region_locate(geo_zone *z, const struct region *reg, double x, double y,
                         GEOSGeometry **pt) {
        static const double shifts[3] = { 0, -360, 360 };
        int best = OUTSIDE;

        if (y < reg->miny || y > reg->maxy)
                return OUTSIDE;
        for (int i = 0; i < 3 && best != INSIDE; i++) {
                double sx = x + shifts[i];
                char c;

                if (sx < reg->minx || sx > reg->maxx)
                        continue;
                if (*pt)
                        GEOSGeom_destroy_r(z->ctx, *pt);
                *pt = GEOSGeom_createPointFromXY_r(z->ctx, sx, y);
                if (!*pt)
                        return -ENOMEM;
                c = GEOSPreparedCovers_r(z->ctx, reg->prep, *pt);
                if (c == 2)
                        return -EIO;
                if (!c)
                        continue;
                c = GEOSPreparedContainsProperly_r(z->ctx, reg->prep, *pt);
                if (c == 2)
                        return -EIO;
                best = c ? INSIDE : BORDER;
        }
        return best;
}

/* 1 when a region of the zone reaches the pole at latitude y (+-90). */
static int touches_pole(geo_zone *z, double y) {
        double line[4] = { z->minx, y, z->maxx, y };
        GEOSCoordSequence *seq;
        GEOSGeometry *g;
        int r = 0;

        seq = GEOSCoordSeq_copyFromBuffer_r(z->ctx, line, 2, 0, 0);
        if (!seq)
                return -ENOMEM;
        g = GEOSGeom_createLineString_r(z->ctx, seq);
        if (!g) {
                GEOSCoordSeq_destroy_r(z->ctx, seq);
                return -ENOMEM;
        }
        for (size_t i = 0; i < z->n_regions && r == 0; i++) {
                const struct region *reg = &z->regions[i];
                char c;

                if (y < reg->miny || y > reg->maxy)
                        continue;
                c = GEOSPreparedIntersects_r(z->ctx, reg->prep, g);
                r = c == 1 ? 1 : c == 0 ? 0 : -EIO;
        }
        GEOSGeom_destroy_r(z->ctx, g);
        return r;
}

static int covers_locked(geo_zone *z, double lat, double lon) {
        GEOSGeometry *pt = NULL;
        int r = 0;

        if (fabs(lat) == 90)
                return touches_pole(z, lat);
        for (size_t p = 0; p < z->n_polys && r == 0; p++) {
                const struct poly *poly = &z->polys[p];
                bool odd = false;

                for (size_t i = 0; i < poly->n; i++) {
                        int where = region_locate(z, &z->regions[poly->first + i], lon, lat, &pt);
                        if (where < 0) {
                                r = where;
                                break;
                        }
                        if (where == BORDER) {
                                r = 1;
                                break;
                        }
                        odd ^= where == INSIDE;
                }
                if (r == 0 && odd)
                        r = 1;
        }
        if (pt)
                GEOSGeom_destroy_r(z->ctx, pt);
        return r;
}

int geo_zone_covers(const geo_zone *zone, double lat, double lon) {
        geo_zone *z = (geo_zone *)zone; /* the lock and GEOS's lazy indexes */
        int r;

        if (!z || !geo_point_valid(lat, lon))
                return -EINVAL;
        pthread_mutex_lock(&z->lock);
        r = covers_locked(z, lat, lon);
        pthread_mutex_unlock(&z->lock);
        return r;
}
