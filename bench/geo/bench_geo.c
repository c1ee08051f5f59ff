/*
 * bench-geo — how fast the nearest-site index answers, against brute force,
 * at 10, 1,000 and 100,000 sites; and what a site costs in memory. It prints
 * numbers, it checks nothing (the unit tests do that). Sites and queries are
 * uniform on the sphere, from a fixed seed, so runs compare.
 *
 * usage: bench-geo [--quick]   (--quick: a tenth of the queries)
 */
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "geo/geo.h"

static uint64_t rng_next(uint64_t *s) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s) {
        return (double)(rng_next(s) >> 11) * 0x1p-53;
}

static void rng_point(uint64_t *s, double *lat, double *lon) {
        *lat = asin(2.0 * rng_unit(s) - 1.0) * (180.0 / M_PI);
        *lon = 360.0 * rng_unit(s) - 180.0;
}

static double now_ns(void) {
        return clock_mono_s() * 1e9;
}

/* Keeps the optimizer from dropping work whose result nobody reads. */
static volatile double sink;

static bool half_accept(void *userdata, const geo_index *ix, size_t site) {
        return site % 2 == 0;
}

static void bench(size_t n, size_t queries, size_t brute_queries) {
        geo_site *sites = calloc(n, sizeof(*sites));
        char(*ids)[24] = calloc(n, sizeof(*ids));
        double(*q)[2] = calloc(queries, sizeof(*q));
        geo_index *ix = NULL;
        geo_hit hits[8];
        uint64_t s = 42 + n;
        struct mallinfo2 before, after;
        double t0, build_ns, nearest_ns, k8_ns, filtered_ns, callback_ns, zone_ns, near_zone_ns,
                brute_ns, acc = 0;
        geo_filter active = { .statuses = GEO_STATUS_BIT(GEO_SITE_ACTIVE) };
        geo_filter callback = { .accept = half_accept };
        const char *europe[] = { "EUR" };
        geo_filter in_europe = { .zones = europe, .n_zones = 1 };
        geo_zone *zone = NULL;
        size_t zone_queries = queries / 10;

        for (size_t i = 0; i < n; i++) {
                snprintf(ids[i], sizeof(ids[i]), "site-%zu", i);
                sites[i].id = ids[i];
                rng_point(&s, &sites[i].lat, &sites[i].lon);
                sites[i].status = i % 2 ? GEO_SITE_DRAINING : GEO_SITE_ACTIVE;
        }
        for (size_t i = 0; i < queries; i++)
                rng_point(&s, &q[i][0], &q[i][1]);

        /* A box over Europe: about 2% of the sites, most queries far away. */
        if (geo_zone_new(
                    &zone, "EUR",
                    "{\"type\":\"Polygon\",\"coordinates\":[[[-10,35],[30,35],[30,70],[-10,70],[-10,35]]]}",
                    NULL, 0) < 0) {
                fprintf(stderr, "bench-geo: cannot read the zone\n");
                exit(1);
        }
        before = mallinfo2();
        t0 = now_ns();
        if (geo_index_new(&ix, sites, n, &zone, 1) < 0) {
                fprintf(stderr, "bench-geo: cannot build the index\n");
                exit(1);
        }
        build_ns = now_ns() - t0;
        after = mallinfo2();

        t0 = now_ns();
        for (size_t i = 0; i < queries; i++)
                acc += geo_index_nearest(ix, q[i][0], q[i][1], NULL, hits, 1) == 1
                               ? hits[0].distance_m
                               : 0;
        nearest_ns = (now_ns() - t0) / queries;

        t0 = now_ns();
        for (size_t i = 0; i < queries / 4; i++)
                acc += geo_index_nearest(ix, q[i][0], q[i][1], NULL, hits, 8) > 0
                               ? hits[0].distance_m
                               : 0;
        k8_ns = (now_ns() - t0) / (size_t)(queries / 4);

        t0 = now_ns();
        for (size_t i = 0; i < queries; i++)
                acc += geo_index_nearest(ix, q[i][0], q[i][1], &active, hits, 1) == 1
                               ? hits[0].distance_m
                               : 0;
        filtered_ns = (now_ns() - t0) / queries;

        t0 = now_ns();
        for (size_t i = 0; i < queries; i++)
                acc += geo_index_nearest(ix, q[i][0], q[i][1], &callback, hits, 1) == 1
                               ? hits[0].distance_m
                               : 0;
        callback_ns = (now_ns() - t0) / queries;

        t0 = now_ns();
        for (size_t i = 0; i < zone_queries; i++)
                acc += geo_index_nearest(ix, q[i][0], q[i][1], &in_europe, hits, 1) == 1
                               ? hits[0].distance_m
                               : 0;
        zone_ns = (now_ns() - t0) / zone_queries;

        /* The usual case: the user is in or near the zone (Europe and
         * around it: 25..75 N, 30 W..50 E). */
        for (size_t i = 0; i < zone_queries; i++) {
                q[i][0] = 25 + 50 * rng_unit(&s);
                q[i][1] = -30 + 80 * rng_unit(&s);
        }
        t0 = now_ns();
        for (size_t i = 0; i < zone_queries; i++)
                acc += geo_index_nearest(ix, q[i][0], q[i][1], &in_europe, hits, 1) == 1
                               ? hits[0].distance_m
                               : 0;
        near_zone_ns = (now_ns() - t0) / zone_queries;

        t0 = now_ns();
        for (size_t i = 0; i < brute_queries; i++) {
                double best = INFINITY;
                for (size_t j = 0; j < n; j++) {
                        double d = geo_distance_m(q[i][0], q[i][1], sites[j].lat, sites[j].lon);
                        if (d < best)
                                best = d;
                }
                acc += best;
        }
        brute_ns = (now_ns() - t0) / brute_queries;
        sink = acc;

        printf("%7zu sites | nearest %6.0f ns | k=8 %6.0f ns | active only %6.0f ns | callback %6.0f ns | "
               "2%% zone %6.0f ns, from nearby %6.0f ns | brute force %10.0f ns (%.0fx) | build %5.1f ms | %5.1f B/site "
               "(%zu B/site allocated)\n",
               n, nearest_ns, k8_ns, filtered_ns, callback_ns, zone_ns, near_zone_ns, brute_ns,
               brute_ns / nearest_ns, build_ns / 1e6,
               (double)geo_index_memory(ix) / n, /* large blocks are mmapped: hblkhd */
               (size_t)((after.uordblks + after.hblkhd) - (before.uordblks + before.hblkhd)) / n);
        fflush(stdout);
        geo_index_unref(ix);
        geo_zone_unref(zone);
        free(q);
        free(ids);
        free(sites);
}

int main(int argc, char **argv) {
        bool quick = argc > 1 && !strcmp(argv[1], "--quick");
        size_t d = quick ? 10 : 1;
        double t0 = now_ns(), acc = 0;
        uint64_t s = 1;
        enum { PAIRS = 1000000 };
        static double p[1000][4];

        for (size_t i = 0; i < 1000; i++) {
                rng_point(&s, &p[i][0], &p[i][1]);
                rng_point(&s, &p[i][2], &p[i][3]);
        }
        t0 = now_ns();
        for (size_t i = 0; i < PAIRS / d; i++)
                acc += geo_distance_m(p[i % 1000][0], p[i % 1000][1], p[i % 1000][2],
                                      p[i % 1000][3]);
        sink = acc;
        printf("geo_distance_m (geod_inverse): %.0f ns per call, random pairs\n",
               (now_ns() - t0) / (size_t)(PAIRS / d));
        printf("nearest: k=1, all sites; k=8; active only: half the sites are draining; callback: a predicate "
               "admits half;\n2%% zone: only sites in a box over Europe (about 2%% of them), queries from anywhere / from in or near it\n");

        bench(10, 1000000 / d, 100000 / d);
        bench(1000, 1000000 / d, 2000 / d);
        bench(100000, 1000000 / d, 20 / d ? 20 / d : 2);
        return 0;
}
