/*
 * What the geo tests share: a seeded random generator, points uniform on the
 * sphere, catalogs with the awkward cases mixed in, and two oracles that do
 * not share any code or bound with the index:
 *
 *  - brute(): geo_distance_m to every eligible site, then the k smallest by
 *    (distance, id). The definition of the right answer.
 *  - bracket(): brute force made cheap by a different, independent bound.
 *    On a linear map of the unit sphere onto the ellipsoid (reduced
 *    latitude), every geodesic s satisfies b*sigma <= s <= a*sigma, sigma the
 *    great-circle angle between the reduced-latitude unit vectors. The k-th
 *    smallest sigma gives an upper bound on the k-th answer; only sites whose
 *    lower bound is below it get geo_distance_m. It is checked against brute()
 *    wherever both run.
 */
#pragma once

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "geo/geo.h"

#define WGS84_A 6378137.0
#define WGS84_F (1.0 / 298.257223563)
#define WGS84_B (WGS84_A * (1.0 - WGS84_F))

/* ---- random ------------------------------------------------------------- */

static inline uint64_t rng_next(uint64_t *s) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ull); /* splitmix64 */
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double rng_unit(uint64_t *s) {
        return (double)(rng_next(s) >> 11) * 0x1p-53;
}

/* A point uniform on the sphere (not uniform in latitude). */
static inline void rng_point(uint64_t *s, double *lat, double *lon) {
        *lat = asin(2.0 * rng_unit(s) - 1.0) * (180.0 / M_PI);
        *lon = 360.0 * rng_unit(s) - 180.0;
}

/* ---- catalogs ----------------------------------------------------------- */

struct tsite {
        char id[24];
        double lat, lon;
        bool eligible;
};

/* The reduced-latitude unit vector of a point, for bracket(). */
static inline void unit_vector(double lat, double lon, double u[3]) {
        double phi = lat * (M_PI / 180.0), lam = lon * (M_PI / 180.0);
        double beta = atan2((1.0 - WGS84_F) * sin(phi), cos(phi));

        u[0] = cos(beta) * cos(lam);
        u[1] = cos(beta) * sin(lam);
        u[2] = sin(beta);
}

/* The sites' unit vectors, one array per axis (the oracle scans them all). */
struct units {
        double *x, *y, *z;
};

static inline struct units units_of(const struct tsite *t, size_t n) {
        struct units u = { malloc(n * sizeof(double)), malloc(n * sizeof(double)),
                           malloc(n * sizeof(double)) };
        for (size_t i = 0; i < n; i++) {
                double v[3];
                unit_vector(t[i].lat, t[i].lon, v);
                u.x[i] = v[0], u.y[i] = v[1], u.z[i] = v[2];
        }
        return u;
}

static inline void units_free(struct units *u) {
        free(u->x);
        free(u->y);
        free(u->z);
}

/*
 * n sites uniform on the sphere, with the awkward cases mixed in: both poles
 * (with different longitudes), the antimeridian as 180 and as -180, sites
 * that share a city (exactly the same point, different ids), pairs a hair
 * apart. Ids are shuffled relative to position so that ties are broken by
 * something other than the order of creation.
 */
static inline struct tsite *make_sites(size_t n, uint64_t seed) {
        struct tsite *t = calloc(n, sizeof(*t));
        uint64_t s = seed;

        for (size_t i = 0; i < n; i++) {
                uint64_t tag = rng_next(&s) % 1000;
                snprintf(t[i].id, sizeof(t[i].id), "s%03u-%zu", (unsigned)tag, i);
                t[i].eligible = true;
                rng_point(&s, &t[i].lat, &t[i].lon);
                if (i >= 10 && rng_unit(&s) < 0.05) {
                        /* shares a city with an earlier site */
                        size_t j = rng_next(&s) % i;
                        t[i].lat = t[j].lat;
                        t[i].lon = t[j].lon;
                } else if (i >= 10 && rng_unit(&s) < 0.01) {
                        /* a hair from an earlier site */
                        size_t j = rng_next(&s) % i;
                        t[i].lat = fmax(-90, fmin(90, t[j].lat + 1e-7));
                        t[i].lon = t[j].lon;
                }
        }
        if (n >= 8) {
                t[0].lat = 90, t[0].lon = 0;
                t[1].lat = 90, t[1].lon = 77;
                t[2].lat = -90, t[2].lon = 180;
                t[3].lat = 12.5, t[3].lon = 180;
                t[4].lat = 12.5, t[4].lon = -180;
                t[5].lat = -40, t[5].lon = -180;
                t[6].lat = 0, t[6].lon = 0;
                t[7].lat = 0, t[7].lon = 179.5; /* near-antipodal to site 6 */
        }
        return t;
}

/* An index over the test sites, site i at index i. */
static inline geo_index *index_of(const struct tsite *t, size_t n) {
        geo_site *s = calloc(n ? n : 1, sizeof(*s));
        geo_index *ix = NULL;

        for (size_t i = 0; i < n; i++)
                s[i] = (geo_site){ .id = t[i].id, .lat = t[i].lat, .lon = t[i].lon };
        if (geo_index_new(&ix, s, n, NULL, 0) < 0)
                ix = NULL;
        free(s);
        return ix;
}

/* ---- oracles ------------------------------------------------------------ */

static inline bool thit_less(const struct tsite *t, const geo_hit *a, const geo_hit *b) {
        if (a->distance_m != b->distance_m)
                return a->distance_m < b->distance_m;
        return strcmp(t[a->site].id, t[b->site].id) < 0;
}

/* Inserts into a sorted array of at most k; keeps the k best. */
static inline void keep_best(const struct tsite *t, geo_hit *best, size_t *n, size_t k, geo_hit h) {
        size_t i;

        if (*n == k && !thit_less(t, &h, &best[k - 1]))
                return;
        i = *n < k ? (*n)++ : k - 1;
        while (i > 0 && thit_less(t, &h, &best[i - 1])) {
                best[i] = best[i - 1];
                i--;
        }
        best[i] = h;
}

/* The k nearest eligible sites by geo_distance_m over all sites. */
static inline size_t brute(const struct tsite *t, size_t n, double lat, double lon, size_t k,
                           geo_hit *out) {
        size_t got = 0;

        for (size_t i = 0; i < n; i++)
                if (t[i].eligible)
                        keep_best(t, out, &got, k,
                                  (geo_hit){ .site = i,
                                             .distance_m = geo_distance_m(lat, lon, t[i].lat,
                                                                          t[i].lon) });
        return got;
}

/* The oracle's flat scans over every site dominate the large test; they
 * are exempt from the sanitizers so that the sanitized run stays quick
 * (the index under test is not). */
#if defined(__has_attribute)
#if __has_attribute(no_sanitize)
#define ORACLE_SCAN __attribute__((no_sanitize("address", "undefined")))
#endif
#endif
#ifndef ORACLE_SCAN
#define ORACLE_SCAN
#endif

/* Squared chords from q to every site, into d2[0..n). */
ORACLE_SCAN static inline void chords2(const struct units *u, size_t n, const double q[3],
                                       double *restrict d2) {
        for (size_t i = 0; i < n; i++) {
                double dx = u->x[i] - q[0], dy = u->y[i] - q[1], dz = u->z[i] - q[2];
                d2[i] = dx * dx + dy * dy + dz * dz;
        }
}

/* The k smallest of d2[i] over eligible sites, ascending, into kth. */
ORACLE_SCAN static inline size_t smallest(const struct tsite *t, size_t n, const double *d2,
                                          size_t k, double *kth) {
        size_t nk = 0;

        for (size_t i = 0; i < n; i++) {
                size_t j;
                if (!t[i].eligible || (nk == k && d2[i] >= kth[k - 1]))
                        continue;
                j = nk < k ? nk++ : k - 1;
                while (j > 0 && d2[i] < kth[j - 1]) {
                        kth[j] = kth[j - 1];
                        j--;
                }
                kth[j] = d2[i];
        }
        return nk;
}

/* Same answer as brute(), by the b*sigma <= s <= a*sigma bracket. k <= 64.
 * scratch holds n doubles. *evaluated counts geo_distance_m calls. */
static inline size_t bracket(const struct tsite *t, const struct units *u, size_t n, double lat,
                             double lon, size_t k, geo_hit *out, double *scratch,
                             size_t *evaluated) {
        double q[3], kth[64];
        size_t nk = 0, got = 0;
        double limit;

        unit_vector(lat, lon, q);
        chords2(u, n, q, scratch);
        nk = smallest(t, n, scratch, k, kth);
        if (nk == 0)
                return 0;
        if (nk < k) {
                limit = INFINITY;
        } else {
                double sigma_k = 2 * asin(fmin(1.0, sqrt(kth[k - 1]) / 2));
                double upper = WGS84_A * sigma_k;                         /* >= the k-th answer */
                double sigma_max = (upper * (1 + 1e-9) + 1e-3) / WGS84_B; /* lower bound above it */
                limit = sigma_max >= M_PI ? INFINITY
                                          : pow(2 * sin(sigma_max / 2), 2) * (1 + 1e-12) + 1e-24;
        }
        for (size_t i = 0; i < n; i++) {
                if (!t[i].eligible || scratch[i] > limit)
                        continue;
                if (evaluated)
                        (*evaluated)++;
                keep_best(t, out, &got, k,
                          (geo_hit){ .site = i,
                                     .distance_m = geo_distance_m(lat, lon, t[i].lat, t[i].lon) });
        }
        return got;
}

/* A test catalog with what the oracles need. */
struct tcat {
        struct tsite *t;
        struct units u;
        size_t n;
        double *scratch;
};

static inline struct tcat tcat_of(struct tsite *t, size_t n) {
        return (struct tcat){
                .t = t, .u = units_of(t, n), .n = n, .scratch = malloc(n * sizeof(double))
        };
}

static inline void tcat_free(struct tcat *c) {
        units_free(&c->u);
        free(c->scratch);
        free(c->t);
}

/* Same hits, same order, same distances (bit for bit). */
static inline bool hits_equal(const geo_hit *a, size_t na, const geo_hit *b, size_t nb) {
        if (na != nb)
                return false;
        for (size_t i = 0; i < na; i++)
                if (a[i].site != b[i].site || a[i].distance_m != b[i].distance_m)
                        return false;
        return true;
}

static inline void hits_print(const char *what, const struct tsite *t, const geo_hit *h, size_t n) {
        printf("#   %s:", what);
        for (size_t i = 0; i < n; i++)
                printf(" %s@%.9f", t[h[i].site].id, h[i].distance_m);
        printf("\n");
}

/* ---- edge-case query points -------------------------------------------- */

/* Fills up to max points on poles, the antimeridian, at, next to and
 * opposite the first sites; returns how many. */
static inline size_t edge_points(const struct tsite *t, size_t n, double (*pts)[2], size_t max) {
        size_t m = 0;
#define ADD(a, b)                                         \
        do {                                              \
                if (m < max) {                            \
                        pts[m][0] = (a), pts[m][1] = (b); \
                        m++;                              \
                }                                         \
        } while (0)
        for (int lon = -180; lon <= 180; lon += 45) {
                ADD(90, lon);
                ADD(-90, lon);
                ADD(89.9999999, lon);
                ADD(-89.9999999, lon);
        }
        for (int lat = -90; lat <= 90; lat += 5) {
                ADD(lat, 180);
                ADD(lat, -180);
                ADD(lat, 179.9999999);
                ADD(lat, -179.9999999);
        }
        for (size_t i = 0; i < n && i < 300; i++) {
                double alon = t[i].lon > 0 ? t[i].lon - 180 : t[i].lon + 180;
                ADD(t[i].lat, t[i].lon);                                 /* at a site */
                ADD(-t[i].lat, alon);                                    /* its antipode */
                ADD(fmax(-90, fmin(90, -t[i].lat + 0.3)), alon * 0.999); /* near it */
                ADD(fmax(-90, fmin(90, t[i].lat + 1e-9)), t[i].lon);     /* a hair off */
        }
#undef ADD
        return m;
}
