/*
 * The index over 100,000 sites against exact oracles.
 *
 * Brute force here is 100,000 geod_inverse calls (about 0.1 s) per query, so
 * it runs on 200 random queries only. The 100,000 random queries and the
 * edge cases are judged by the bracket oracle (geo-test.h): it looks at every
 * site, and calls geod_inverse on every one that the ellipsoid-vs-sphere
 * bracket b*sigma <= s <= a*sigma cannot rule out. It shares neither code nor
 * bound with the index, and is itself checked against brute force (here on
 * the 200 queries, and in test_geo_index.c). Two threads share the one index,
 * as the scheduler's would.
 */
#include <pthread.h>

#include "geo-test.h"
#include "tap.h"

enum { SITES = 100000, QUERIES = 100000, BRUTE_QUERIES = 200, THREADS = 2 };

struct job {
        const struct tsite *t;
        const struct units *u;
        const geo_index *ix;
        const geo_filter *filter;
        double (*pts)[2];
        size_t from, to, k;
        bool full;
        size_t bad, evaluated, shown;
};

static void *run(void *arg) {
        struct job *j = arg;
        double *scratch = malloc(SITES * sizeof(*scratch));

        for (size_t i = j->from; i < j->to; i++) {
                double lat = j->pts[i][0], lon = j->pts[i][1];
                geo_hit got[16], want[16];
                size_t k = j->k ? j->k : 1 + i % 5;
                int ng = geo_index_nearest(j->ix, lat, lon, j->filter, got, k);
                size_t nw;

                if (j->full) {
                        geo_hit via_bracket[16];
                        size_t nb = bracket(j->t, j->u, SITES, lat, lon, k, via_bracket, scratch,
                                            &j->evaluated);
                        nw = brute(j->t, SITES, lat, lon, k, want);
                        if (!hits_equal(via_bracket, nb, want, nw)) {
                                printf("#   the bracket oracle is wrong at (%.17g, %.17g)\n", lat,
                                       lon);
                                j->bad++;
                        }
                } else {
                        nw = bracket(j->t, j->u, SITES, lat, lon, k, want, scratch, &j->evaluated);
                }
                if (ng < 0 || !hits_equal(got, (size_t)ng, want, nw)) {
                        j->bad++;
                        if (j->shown++ < 3) {
                                printf("#   query (%.17g, %.17g) k=%zu\n", lat, lon, k);
                                if (ng >= 0)
                                        hits_print("index", j->t, got, (size_t)ng);
                                hits_print("oracle", j->t, want, nw);
                        }
                }
        }
        free(scratch);
        return NULL;
}

/* Runs pts[0..n) on THREADS threads; returns the mismatches. */
static size_t run_all(const struct tsite *t, const struct units *u, const geo_index *ix,
                      const geo_filter *filter, double (*pts)[2], size_t n, size_t k, bool full,
                      size_t *evaluated) {
        struct job jobs[THREADS];
        pthread_t th[THREADS];
        size_t bad = 0;

        for (int i = 0; i < THREADS; i++) {
                jobs[i] = (struct job){ .t = t,
                                        .u = u,
                                        .ix = ix,
                                        .filter = filter,
                                        .pts = pts,
                                        .k = k,
                                        .full = full,
                                        .from = n * (size_t)i / THREADS,
                                        .to = n * (size_t)(i + 1) / THREADS };
                pthread_create(&th[i], NULL, run, &jobs[i]);
        }
        for (int i = 0; i < THREADS; i++) {
                pthread_join(th[i], NULL);
                bad += jobs[i].bad;
                if (evaluated)
                        *evaluated += jobs[i].evaluated;
        }
        return bad;
}

TEST(a_hundred_thousand_sites_match_the_oracles) {
        struct tsite *t = make_sites(SITES, 2026);
        struct units u = units_of(t, SITES);
        geo_index *ix = index_of(t, SITES);
        double(*pts)[2] = calloc(QUERIES, sizeof(*pts));
        uint64_t s = 4711;
        size_t bad, m, evaluated = 0;

        CHECK(ix != NULL);
        if (!ix)
                goto out;

        for (size_t i = 0; i < BRUTE_QUERIES; i++)
                rng_point(&s, &pts[i][0], &pts[i][1]);
        bad = run_all(t, &u, ix, NULL, pts, BRUTE_QUERIES, 0, true, NULL);
        printf("#   %d random queries (k = 1..5) against brute force: %zu mismatches\n",
               BRUTE_QUERIES, bad);
        CHECK(bad == 0);

        for (size_t i = 0; i < QUERIES; i++)
                rng_point(&s, &pts[i][0], &pts[i][1]);
        bad = run_all(t, &u, ix, NULL, pts, QUERIES, 1, false, &evaluated);
        printf("#   %d random queries (k = 1) against the bracket oracle: %zu mismatches "
               "(the oracle ran %.2f geodesics per query)\n",
               QUERIES, bad, (double)evaluated / QUERIES);
        CHECK(bad == 0);

        m = edge_points(t, SITES, pts, QUERIES);
        bad = run_all(t, &u, ix, NULL, pts, m, 0, false, NULL);
        printf("#   %zu edge queries (k = 1..5) against the bracket oracle: %zu mismatches\n", m,
               bad);
        CHECK(bad == 0);
out:
        geo_index_unref(ix);
        units_free(&u);
        free(pts);
        free(t);
}

TEST(filtered_queries_from_anywhere_match_the_oracle) {
        /* Only active sites in a box over Europe (about 2% of them, a third
         * draining): from most of the world the answer is thousands of km
         * away, where the index prunes with the stretched-sphere bound. */
        enum { FILTERED = 20000 };
        struct tsite *t = make_sites(SITES, 2027);
        struct units u = units_of(t, SITES);
        geo_site *s = calloc(SITES, sizeof(*s));
        double(*pts)[2] = calloc(FILTERED, sizeof(*pts));
        const char *europe[] = { "EUR" };
        geo_filter f = { .statuses = GEO_STATUS_BIT(GEO_SITE_ACTIVE),
                         .zones = europe,
                         .n_zones = 1 };
        geo_zone *z = NULL;
        geo_index *ix = NULL;
        uint64_t r = 99;
        size_t bad, eligible = 0;

        CHECK(geo_zone_new(
                      &z, "EUR",
                      "{\"type\":\"Polygon\",\"coordinates\":[[[-10,35],[30,35],[30,70],[-10,70],[-10,35]]]}",
                      NULL, 0) == 0);
        for (size_t i = 0; i < SITES; i++) {
                bool active = i % 3 != 0;
                s[i] = (geo_site){ .id = t[i].id,
                                   .lat = t[i].lat,
                                   .lon = t[i].lon,
                                   .status = active ? GEO_SITE_ACTIVE : GEO_SITE_DRAINING };
                t[i].eligible = active && t[i].lat >= 35 && t[i].lat <= 70 && t[i].lon >= -10 &&
                                t[i].lon <= 30;
                eligible += t[i].eligible;
        }
        CHECK(geo_index_new(&ix, s, SITES, &z, 1) == 0);
        z = geo_zone_unref(z);
        if (!ix)
                goto out;
        for (size_t i = 0; i < FILTERED; i++)
                rng_point(&r, &pts[i][0], &pts[i][1]);
        bad = run_all(t, &u, ix, &f, pts, FILTERED, 0, false, NULL);
        printf("#   %zu eligible sites, %d queries (k = 1..5) against the bracket oracle: %zu mismatches\n",
               eligible, FILTERED, bad);
        CHECK(bad == 0);
out:
        geo_index_unref(ix);
        units_free(&u);
        free(pts);
        free(s);
        free(t);
}

TAP_MAIN(TAP_TEST(a_hundred_thousand_sites_match_the_oracles),
         TAP_TEST(filtered_queries_from_anywhere_match_the_oracle))
