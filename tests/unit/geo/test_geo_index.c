/*
 * The nearest-site index against brute force: every answer must be the one
 * geo_distance_m over all sites gives, in the same order, with the same
 * distances bit for bit, ties broken by id. Catalogs of 10 and 1,000 sites
 * with 100,000 random queries each (uniform on the sphere) plus the edge
 * cases; the 100,000-site catalog is in test_geo_index_large.c.
 */
#include <errno.h>
#include <limits.h>

#include "geo-test.h"
#include "tap.h"

enum { QUERIES = 100000 };

TEST(rejects_bad_sites) {
        geo_site ok[2] = { { .id = "a", .lat = 1, .lon = 2 }, { .id = "b", .lat = 3, .lon = 4 } };
        geo_site s[2];
        geo_index *ix = NULL;

        CHECK(geo_index_new(&ix, ok, 2, NULL, 0) == 0);
        ix = geo_index_unref(ix);
        CHECK(ix == NULL);

        memcpy(s, ok, sizeof(s));
        s[1].id = "a";
        CHECK(geo_index_new(&ix, s, 2, NULL, 0) == -EEXIST);
        memcpy(s, ok, sizeof(s));
        s[1].id = "";
        CHECK(geo_index_new(&ix, s, 2, NULL, 0) == -EINVAL);
        s[1].id = NULL;
        CHECK(geo_index_new(&ix, s, 2, NULL, 0) == -EINVAL);
        memcpy(s, ok, sizeof(s));
        s[0].lat = 90.5;
        CHECK(geo_index_new(&ix, s, 2, NULL, 0) == -EINVAL);
        s[0].lat = NAN;
        CHECK(geo_index_new(&ix, s, 2, NULL, 0) == -EINVAL);
        memcpy(s, ok, sizeof(s));
        s[0].lon = -180.5;
        CHECK(geo_index_new(&ix, s, 2, NULL, 0) == -EINVAL);
        memcpy(s, ok, sizeof(s));
        s[0].status = (enum geo_status)7;
        CHECK(geo_index_new(&ix, s, 2, NULL, 0) == -EINVAL);
        CHECK(ix == NULL);
        CHECK(geo_index_unref(NULL) == NULL);
}

TEST(an_empty_index_answers_nothing) {
        geo_index *ix = NULL;
        geo_hit h[3], *all = NULL;
        size_t n = 99;

        CHECK(geo_index_new(&ix, NULL, 0, NULL, 0) == 0);
        CHECK(geo_index_nearest(ix, 1, 2, NULL, h, 3) == 0);
        CHECK(geo_index_within(ix, 1, 2, 1e9, NULL, &all, &n) == 0);
        CHECK(n == 0);
        free(all);
        geo_index_unref(ix);
}

TEST(rejects_bad_queries) {
        geo_site s[1] = { { .id = "a", .lat = 1, .lon = 2 } };
        const char *zones[] = { "nowhere" };
        geo_filter f = { .zones = zones, .n_zones = 1 };
        geo_index *ix = NULL;
        geo_hit h[1], *all = NULL;
        size_t n;

        CHECK(geo_index_new(&ix, s, 1, NULL, 0) == 0);
        CHECK(geo_index_nearest(ix, NAN, 0, NULL, h, 1) == -EINVAL);
        CHECK(geo_index_nearest(ix, 0, 180.0001, NULL, h, 1) == -EINVAL);
        CHECK(geo_index_nearest(ix, -90.0001, 0, NULL, h, 1) == -EINVAL);
        CHECK(geo_index_nearest(ix, 0, 0, NULL, h, (size_t)INT_MAX + 1) == -EINVAL);
        CHECK(geo_index_nearest(ix, 0, 0, &f, h, 1) == -ENOENT);
        CHECK(geo_index_nearest(ix, 0, 0, NULL, h, 0) == 0);
        CHECK(geo_index_within(ix, 0, 0, -1, NULL, &all, &n) == -EINVAL);
        CHECK(geo_index_within(ix, 0, 0, NAN, NULL, &all, &n) == -EINVAL);
        CHECK(geo_index_within(ix, 0, 0, 10, &f, &all, &n) == -ENOENT);
        geo_index_unref(ix);
}

TEST(sites_are_found_by_id_and_index) {
        geo_site s[3] = { { .id = "aws-eu-west-3", .lat = 48.86, .lon = 2.35, .free_bytes = 5 },
                          { .id = "gcp-europe-west9",
                            .lat = 48.86,
                            .lon = 2.35,
                            .status = GEO_SITE_DRAINING },
                          { .id = "x", .lat = -90, .lon = 180, .status = GEO_SITE_DOWN } };
        geo_index *ix = NULL;
        geo_site out;
        size_t i = 99;

        CHECK(geo_index_new(&ix, s, 3, NULL, 0) == 0);
        CHECK(geo_index_slots(ix) == 3);
        CHECK(geo_index_count(ix) == 3);
        CHECK(geo_index_version(ix) == 0);
        CHECK(geo_index_find(ix, "gcp-europe-west9", &i) == 0 && i == 1);
        CHECK(geo_index_find(ix, "gcp-europe-west", &i) == -ENOENT);
        CHECK(geo_index_find(ix, NULL, &i) == -ENOENT);
        CHECK_STR(geo_index_site_id(ix, 2), "x");
        CHECK(geo_index_site_id(ix, 3) == NULL);
        CHECK(geo_index_site(ix, 0, &out) == 0);
        CHECK_STR(out.id, "aws-eu-west-3");
        CHECK(out.lat == 48.86 && out.lon == 2.35 && out.free_bytes == 5 &&
              out.status == GEO_SITE_ACTIVE);
        CHECK(geo_index_site(ix, 1, &out) == 0 && out.status == GEO_SITE_DRAINING);
        CHECK(geo_index_site(ix, 3, &out) == -ENOENT);
        CHECK(geo_index_site_in_zone(ix, 0, "EU") == -ENOENT);
        CHECK(geo_index_memory(ix) > 3 * sizeof(double) * 3);
        geo_index_unref(ix);
}

TEST(ties_are_broken_by_id) {
        /* Three datacenters in one city, created out of id order, and two
         * sites exactly as far from the query (mirror images). */
        geo_site s[5] = { { .id = "b", .lat = 10, .lon = 20 },
                          { .id = "c", .lat = 10, .lon = 20 },
                          { .id = "a", .lat = 10, .lon = 20 },
                          { .id = "z", .lat = 0, .lon = 5 },
                          { .id = "y", .lat = 0, .lon = -5 } };
        geo_index *ix = NULL;
        geo_hit h[5];

        CHECK(geo_index_new(&ix, s, 5, NULL, 0) == 0);
        CHECK(geo_index_nearest(ix, 10, 20, NULL, h, 3) == 3);
        CHECK_STR(geo_index_site_id(ix, h[0].site), "a");
        CHECK_STR(geo_index_site_id(ix, h[1].site), "b");
        CHECK_STR(geo_index_site_id(ix, h[2].site), "c");
        CHECK(h[0].distance_m == 0 && h[2].distance_m == 0);
        CHECK(geo_index_nearest(ix, 10, 20, NULL, h, 1) == 1);
        CHECK_STR(geo_index_site_id(ix, h[0].site), "a");

        CHECK(geo_distance_m(0, 0, 0, 5) == geo_distance_m(0, 0, 0, -5));
        CHECK(geo_index_nearest(ix, 0, 0, NULL, h, 1) == 1);
        CHECK_STR(geo_index_site_id(ix, h[0].site), "y");
        CHECK(geo_index_nearest(ix, 0, 0, NULL, h, 5) == 5);
        CHECK_STR(geo_index_site_id(ix, h[0].site), "y");
        CHECK_STR(geo_index_site_id(ix, h[1].site), "z");
        CHECK(h[0].distance_m == h[1].distance_m);
        geo_index_unref(ix);
}

TEST(the_antimeridian_and_the_poles) {
        geo_site s[4] = { { .id = "fiji", .lat = -17.8, .lon = 178.4 },
                          { .id = "samoa", .lat = -13.8, .lon = -171.8 },
                          { .id = "north", .lat = 90, .lon = 0 },
                          { .id = "alert", .lat = 82.5, .lon = -62.3 } };
        geo_index *ix = NULL;
        geo_hit h[4];

        CHECK(geo_index_new(&ix, s, 4, NULL, 0) == 0);
        /* Just east of the antimeridian, Fiji (west of it) is nearer. */
        CHECK(geo_index_nearest(ix, -17.0, -179.9, NULL, h, 1) == 1);
        CHECK_STR(geo_index_site_id(ix, h[0].site), "fiji");
        CHECK(h[0].distance_m < 250000);
        CHECK(geo_index_nearest(ix, -16.5, 180, NULL, h, 1) == 1);
        CHECK_STR(geo_index_site_id(ix, h[0].site), "fiji");
        /* 180 and -180 are the same meridian: same answer, same distance. */
        geo_hit h2[4];
        CHECK(geo_index_nearest(ix, -16.5, -180, NULL, h2, 4) == 4);
        CHECK(geo_index_nearest(ix, -16.5, 180, NULL, h, 4) == 4);
        for (int i = 0; i < 4; i++)
                CHECK(h[i].site == h2[i].site && h[i].distance_m == h2[i].distance_m);
        /* At the pole every longitude is the same point. */
        CHECK(geo_index_nearest(ix, 90, 123, NULL, h, 1) == 1);
        CHECK_STR(geo_index_site_id(ix, h[0].site), "north");
        CHECK(h[0].distance_m == 0);
        CHECK(geo_index_nearest(ix, 89.9, -62.3, NULL, h, 2) == 2);
        CHECK_STR(geo_index_site_id(ix, h[0].site), "north");
        CHECK_STR(geo_index_site_id(ix, h[1].site), "alert");
        geo_index_unref(ix);
}

/* The index against brute() or bracket() on one query; prints the first
 * few differences. */
static bool agree(const struct tcat *c, const geo_index *ix, double lat, double lon, size_t k,
                  const geo_filter *f, bool full, size_t *shown) {
        const struct tsite *t = c->t;
        geo_hit got[64], want[64];
        int ng = geo_index_nearest(ix, lat, lon, f, got, k);
        size_t nw = full ? brute(t, c->n, lat, lon, k, want)
                         : bracket(t, &c->u, c->n, lat, lon, k, want, c->scratch, NULL);

        if (ng >= 0 && hits_equal(got, (size_t)ng, want, nw))
                return true;
        if ((*shown)++ < 5) {
                printf("#   query (%.17g, %.17g) k=%zu\n", lat, lon, k);
                if (ng >= 0)
                        hits_print("index", t, got, (size_t)ng);
                hits_print("brute", t, want, nw);
        }
        return false;
}

static void compare_random(int *tap_failed_, size_t n_sites, size_t queries, size_t k, bool full,
                           uint64_t seed) {
        struct tsite *t = make_sites(n_sites, seed);
        struct tcat c = tcat_of(t, n_sites);
        geo_index *ix = index_of(t, n_sites);
        double pts[1500][2];
        size_t bad = 0, shown = 0, m;
        uint64_t s = seed * 31 + 1;

        CHECK(ix != NULL);
        if (!ix)
                goto out;
        for (size_t i = 0; i < queries; i++) {
                double lat, lon;
                rng_point(&s, &lat, &lon);
                bad += !agree(&c, ix, lat, lon, k, NULL, full, &shown);
        }
        m = edge_points(t, n_sites, pts, 1500);
        for (size_t i = 0; i < m; i++)
                bad += !agree(&c, ix, pts[i][0], pts[i][1], k, NULL, full, &shown);
        printf("#   %zu sites, k=%zu: %zu random and %zu edge queries against %s: %zu mismatches\n",
               n_sites, k, queries, m, full ? "brute force" : "the bracket oracle", bad);
        CHECK(bad == 0);
out:
        geo_index_unref(ix);
        tcat_free(&c);
}

TEST(ten_sites_match_brute_force) {
        compare_random(tap_failed_, 10, QUERIES, 1, true, 1);
        compare_random(tap_failed_, 10, 10000, 3, true, 2);
        compare_random(tap_failed_, 10, 2000, 10, true, 3);
        compare_random(tap_failed_, 10, 2000, 12, true, 4); /* k beyond the catalog */
}

TEST(a_thousand_sites_match_brute_force) {
        compare_random(tap_failed_, 1000, QUERIES, 1, false, 5);
        compare_random(tap_failed_, 1000, 1000, 1, true, 5);
        compare_random(tap_failed_, 1000, 1000, 5, true, 6);
        compare_random(tap_failed_, 1000, 10000, 5, false, 6);
}

TEST(the_bracket_oracle_is_brute_force) {
        /* The oracle the large test leans on, checked where both run. */
        struct tsite *t = make_sites(1000, 9);
        struct tcat c = tcat_of(t, 1000);
        uint64_t s = 99;
        size_t bad = 0, evaluated = 0;

        for (int i = 0; i < 2000; i++) {
                geo_hit a[8], b[8];
                double lat, lon;
                size_t k = 1 + (size_t)i % 8;
                rng_point(&s, &lat, &lon);
                size_t na = brute(t, 1000, lat, lon, k, a);
                size_t nb = bracket(t, &c.u, 1000, lat, lon, k, b, c.scratch, &evaluated);
                bad += !hits_equal(a, na, b, nb);
        }
        printf("#   2000 queries: %zu mismatches, %.1f geodesics per query\n", bad,
               evaluated / 2000.0);
        CHECK(bad == 0);
        tcat_free(&c);
}

/* ---- eligibility ---------------------------------------------------------- */

static bool accept_eligible(void *userdata, const geo_index *ix, size_t site) {
        const struct tsite *t = userdata;
        return t[site].eligible;
}

TEST(eligibility_is_applied_inside_the_search) {
        enum { N = 1000 };
        struct tsite *t = make_sites(N, 11);
        struct tcat cat = tcat_of(t, N);
        geo_site *s = calloc(N, sizeof(*s));
        geo_index *ix = NULL;
        uint64_t r = 5;
        size_t bad = 0, shown = 0;

        /* A third of the sites down, a third short of space, the rest fine. */
        for (size_t i = 0; i < N; i++) {
                uint64_t c = rng_next(&r) % 3;
                s[i] = (geo_site){ .id = t[i].id,
                                   .lat = t[i].lat,
                                   .lon = t[i].lon,
                                   .status = c == 0 ? GEO_SITE_DOWN : GEO_SITE_ACTIVE,
                                   .free_bytes = c == 1 ? 10 : 1000 };
        }
        CHECK(geo_index_new(&ix, s, N, NULL, 0) == 0);

        geo_filter by_status = { .statuses = GEO_STATUS_BIT(GEO_SITE_ACTIVE) };
        geo_filter by_space = { .min_free_bytes = 100 };
        geo_filter by_both = { .statuses = GEO_STATUS_BIT(GEO_SITE_ACTIVE), .min_free_bytes = 100 };
        geo_filter by_callback = { .accept = accept_eligible, .userdata = t };
        const geo_filter *cases[4] = { &by_status, &by_space, &by_both, &by_callback };

        for (int c = 0; c < 4; c++) {
                for (size_t i = 0; i < N; i++) {
                        switch (c) {
                        case 0:
                                t[i].eligible = s[i].status == GEO_SITE_ACTIVE;
                                break;
                        case 1:
                                t[i].eligible = s[i].free_bytes >= 100;
                                break;
                        case 2:
                                t[i].eligible =
                                        s[i].status == GEO_SITE_ACTIVE && s[i].free_bytes >= 100;
                                break;
                        case 3:
                                t[i].eligible = i % 7 == 3;
                                break;
                        }
                }
                /* One site at a time, the query's judgement. */
                for (size_t i = 0; i < N; i++)
                        bad += geo_index_site_eligible(ix, i, cases[c]) != (int)t[i].eligible;
                for (int q = 0; q < 5000; q++) {
                        double lat, lon;
                        rng_point(&r, &lat, &lon);
                        bad += !agree(&cat, ix, lat, lon, 1 + (size_t)q % 4, cases[c], q < 500,
                                      &shown);
                }
                /* within, too */
                for (int q = 0; q < 200; q++) {
                        double lat, lon, radius = 3e6 * rng_unit(&r);
                        geo_hit *got = NULL, want[N];
                        size_t ng = 0, nw = 0;
                        rng_point(&r, &lat, &lon);
                        CHECK(geo_index_within(ix, lat, lon, radius, cases[c], &got, &ng) == 0);
                        for (size_t i = 0; i < N; i++) {
                                double d = geo_distance_m(lat, lon, t[i].lat, t[i].lon);
                                if (t[i].eligible && d <= radius)
                                        keep_best(t, want, &nw, N,
                                                  (geo_hit){ .site = i, .distance_m = d });
                        }
                        bad += !hits_equal(got, ng, want, nw);
                        free(got);
                }
        }
        printf("#   4 filters x 5200 queries: %zu mismatches\n", bad);
        CHECK(bad == 0);
        geo_index_unref(ix);
        free(s);
        tcat_free(&cat);
}

TEST(a_filter_that_admits_nothing_gives_nothing) {
        geo_site s[2] = { { .id = "a", .lat = 1, .lon = 2, .status = GEO_SITE_DOWN },
                          { .id = "b", .lat = 3, .lon = 4, .status = GEO_SITE_DRAINING } };
        geo_filter f = { .statuses = GEO_STATUS_BIT(GEO_SITE_ACTIVE) };
        geo_index *ix = NULL;
        geo_hit h[2];

        CHECK(geo_index_new(&ix, s, 2, NULL, 0) == 0);
        CHECK(geo_index_nearest(ix, 1, 2, &f, h, 2) == 0);
        f.statuses |= GEO_STATUS_BIT(GEO_SITE_DRAINING);
        CHECK(geo_index_nearest(ix, 1, 2, &f, h, 2) == 1);
        CHECK_STR(geo_index_site_id(ix, h[0].site), "b");
        geo_index_unref(ix);
}

/* ---- within ----------------------------------------------------------------- */

TEST(within_matches_brute_force) {
        enum { N = 1000 };
        struct tsite *t = make_sites(N, 21);
        geo_index *ix = index_of(t, N);
        uint64_t r = 77;
        size_t bad = 0, total = 0;

        for (int q = 0; q < 2000; q++) {
                double lat, lon, radius;
                geo_hit *got = NULL, want[N];
                size_t ng = 0, nw = 0;

                rng_point(&r, &lat, &lon);
                if (q % 10 == 0) { /* exactly at a site, with a radius that ends on another */
                        size_t a = rng_next(&r) % N, b = rng_next(&r) % N;
                        lat = t[a].lat, lon = t[a].lon;
                        radius = geo_distance_m(lat, lon, t[b].lat, t[b].lon);
                } else {
                        radius = q % 100 == 1 ? 2.1e7 : 4e6 * pow(rng_unit(&r), 2);
                }
                CHECK(geo_index_within(ix, lat, lon, radius, NULL, &got, &ng) == 0);
                for (size_t i = 0; i < N; i++) {
                        double d = geo_distance_m(lat, lon, t[i].lat, t[i].lon);
                        if (d <= radius)
                                keep_best(t, want, &nw, N, (geo_hit){ .site = i, .distance_m = d });
                }
                bad += !hits_equal(got, ng, want, nw);
                total += ng;
                free(got);
        }
        printf("#   2000 radius queries, %zu hits: %zu mismatches\n", total, bad);
        CHECK(bad == 0);
        geo_index_unref(ix);
        free(t);
}

/* ---- zones -------------------------------------------------------------------- */

TEST(zones_restrict_the_search) {
        /* A box over western Europe, and one across the antimeridian. */
        static const char *eu =
                "{\"type\":\"Polygon\",\"coordinates\":[[[-10,35],[30,35],[30,70],[-10,70],[-10,35]]]}";
        static const char *pacific =
                "{\"type\":\"Polygon\",\"coordinates\":[[[170,-30],[-170,-30],[-170,0],[170,0],[170,-30]]]}";
        enum { N = 1000 };
        struct tsite *t = make_sites(N, 31);
        struct tcat cat = tcat_of(t, N);
        geo_site *s = calloc(N, sizeof(*s));
        geo_zone *z[2] = { NULL, NULL };
        geo_index *ix = NULL;
        uint64_t r = 3;
        size_t bad = 0, shown = 0, in_eu = 0, in_pacific = 0;
        char err[256];

        CHECK(geo_zone_new(&z[0], "EU", eu, err, sizeof(err)) == 0);
        CHECK(geo_zone_new(&z[1], "PAC", pacific, err, sizeof(err)) == 0);
        if (!z[0] || !z[1])
                goto out;
        for (size_t i = 0; i < N; i++)
                s[i] = (geo_site){ .id = t[i].id, .lat = t[i].lat, .lon = t[i].lon };
        /* The index keeps its own references. */
        CHECK(geo_index_new(&ix, s, N, z, 2) == 0);
        if (!ix)
                goto out;

        const char *only_eu[] = { "EU" }, *either[] = { "PAC", "EU" };
        geo_filter f_eu = { .zones = only_eu, .n_zones = 1 };
        geo_filter f_either = { .zones = either, .n_zones = 2 };

        for (size_t i = 0; i < N; i++) {
                bool e = t[i].lat >= 35 && t[i].lat <= 70 && t[i].lon >= -10 && t[i].lon <= 30;
                bool p = t[i].lat >= -30 && t[i].lat <= 0 && (t[i].lon >= 170 || t[i].lon <= -170);
                CHECK(geo_index_site_in_zone(ix, i, "EU") == e);
                CHECK(geo_index_site_in_zone(ix, i, "PAC") == p);
                in_eu += e;
                in_pacific += p;
        }
        printf("#   %zu sites in EU, %zu in PAC\n", in_eu, in_pacific);
        CHECK(in_eu > 5 && in_pacific > 5);
        for (int c = 0; c < 2; c++) {
                for (size_t i = 0; i < N; i++)
                        t[i].eligible = geo_index_site_in_zone(ix, i, "EU") == 1 ||
                                        (c == 1 && geo_index_site_in_zone(ix, i, "PAC") == 1);
                for (size_t i = 0; i < N; i++)
                        bad += geo_index_site_eligible(ix, i, c ? &f_either : &f_eu) !=
                               (int)t[i].eligible;
                for (int q = 0; q < 3000; q++) {
                        double lat, lon;
                        rng_point(&r, &lat, &lon);
                        bad += !agree(&cat, ix, lat, lon, 1 + (size_t)q % 3, c ? &f_either : &f_eu,
                                      q < 300, &shown);
                }
        }
        CHECK(bad == 0);
        {
                /* An unknown zone fails the site as it fails the query. */
                const char *unknown[] = { "EU", "MARS" };
                geo_filter f_unknown = { .zones = unknown, .n_zones = 2 };
                CHECK(geo_index_site_eligible(ix, 0, &f_unknown) == -ENOENT);
                CHECK(geo_index_site_eligible(ix, N, NULL) == 0);
                CHECK(geo_index_site_eligible(ix, 0, NULL) == 1);
        }
out:
        geo_zone_unref(z[0]);
        geo_zone_unref(z[1]);
        geo_index_unref(ix);
        free(s);
        tcat_free(&cat);
}

TAP_MAIN(TAP_TEST(rejects_bad_sites), TAP_TEST(an_empty_index_answers_nothing),
         TAP_TEST(rejects_bad_queries), TAP_TEST(sites_are_found_by_id_and_index),
         TAP_TEST(ties_are_broken_by_id), TAP_TEST(the_antimeridian_and_the_poles),
         TAP_TEST(ten_sites_match_brute_force), TAP_TEST(a_thousand_sites_match_brute_force),
         TAP_TEST(the_bracket_oracle_is_brute_force),
         TAP_TEST(eligibility_is_applied_inside_the_search),
         TAP_TEST(a_filter_that_admits_nothing_gives_nothing), TAP_TEST(within_matches_brute_force),
         TAP_TEST(zones_restrict_the_search))
