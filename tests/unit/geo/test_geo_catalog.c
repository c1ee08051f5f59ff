/*
 * The catalog that changes at run time: edits are invisible until published,
 * a reader keeps the version it acquired, site indexes stay put, zones are
 * honoured, answers after any edits are brute force's, and readers on other
 * threads always see one whole version while a writer publishes (run it
 * under ASan: a reader that lost its index would be a use after free).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "geo-test.h"
#include "tap.h"

static const char *box(double west, double south, double east, double north) {
        static char buf[256];
        snprintf(
                buf, sizeof(buf),
                "{\"type\":\"Polygon\",\"coordinates\":[[[%g,%g],[%g,%g],[%g,%g],[%g,%g],[%g,%g]]]}",
                west, south, east, south, east, north, west, north, west, south);
        return buf;
}

TEST(edits_show_only_once_published) {
        geo_catalog *c = NULL;
        geo_index *v0, *v1, *v2;
        geo_hit h[2];
        size_t i;

        CHECK(geo_catalog_new(&c) == 0);
        v0 = geo_catalog_acquire(c);
        CHECK(geo_index_version(v0) == 0 && geo_index_count(v0) == 0);

        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "paris", .lat = 48.86, .lon = 2.35 }) ==
              0);
        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "tokyo", .lat = 35.68, .lon = 139.77 }) ==
              0);
        v1 = geo_catalog_acquire(c); /* not yet */
        CHECK(geo_index_version(v1) == 0 && geo_index_count(v1) == 0);
        geo_index_unref(v1);
        CHECK(geo_catalog_publish(c) == 0);
        v1 = geo_catalog_acquire(c);
        CHECK(geo_index_version(v1) == 1 && geo_index_count(v1) == 2);
        CHECK(geo_index_count(v0) == 0); /* the old version is as it was */

        /* Drain Paris, move Tokyo, add Sydney: one new version. */
        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "paris",
                                                   .lat = 48.86,
                                                   .lon = 2.35,
                                                   .status = GEO_SITE_DRAINING }) == 0);
        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "tokyo", .lat = 34.69, .lon = 135.50 }) ==
              0);
        CHECK(geo_catalog_put_site(c, &(geo_site){
                                              .id = "sydney", .lat = -33.87, .lon = 151.21 }) == 0);
        CHECK(geo_catalog_publish(c) == 0);
        v2 = geo_catalog_acquire(c);
        CHECK(geo_index_version(v2) == 2 && geo_index_count(v2) == 3);

        geo_filter active = { .statuses = GEO_STATUS_BIT(GEO_SITE_ACTIVE) };
        CHECK(geo_index_nearest(v2, 48.86, 2.35, &active, h, 1) == 1);
        CHECK_STR(geo_index_site_id(v2, h[0].site), "tokyo");
        CHECK(geo_index_nearest(v1, 48.86, 2.35, &active, h, 1) == 1);
        CHECK_STR(geo_index_site_id(v1, h[0].site), "paris");
        /* Indexes stay with their sites across versions. */
        CHECK(geo_index_find(v1, "tokyo", &i) == 0 && i == 1);
        CHECK(geo_index_find(v2, "tokyo", &i) == 0 && i == 1);
        CHECK(geo_index_find(v2, "sydney", &i) == 0 && i == 2);

        geo_index_unref(v0);
        geo_index_unref(v1);
        geo_index_unref(v2);
        c = geo_catalog_free(c);
        CHECK(c == NULL);
        CHECK(geo_catalog_free(NULL) == NULL);
}

TEST(removed_sites_leave_their_index_empty) {
        geo_catalog *c = NULL;
        geo_index *ix;
        geo_site out;
        size_t i;

        CHECK(geo_catalog_new(&c) == 0);
        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "a", .lat = 1, .lon = 1 }) == 0);
        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "b", .lat = 2, .lon = 2 }) == 0);
        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "c", .lat = 3, .lon = 3 }) == 0);
        CHECK(geo_catalog_remove_site(c, "b") == 0);
        CHECK(geo_catalog_remove_site(c, "b") == -ENOENT);
        CHECK(geo_catalog_remove_site(c, NULL) == -ENOENT);
        CHECK(geo_catalog_publish(c) == 0);
        ix = geo_catalog_acquire(c);
        CHECK(geo_index_slots(ix) == 3 && geo_index_count(ix) == 2);
        CHECK(geo_index_site_id(ix, 1) == NULL);
        CHECK(geo_index_site(ix, 1, &out) == -ENOENT);
        CHECK(geo_index_find(ix, "b", &i) == -ENOENT);
        CHECK(geo_index_find(ix, "c", &i) == 0 && i == 2);
        geo_hit h[3];
        CHECK(geo_index_nearest(ix, 2, 2, NULL, h, 3) == 2);
        ix = geo_index_unref(ix);

        /* A site added later may take the empty index. */
        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "d", .lat = 4, .lon = 4 }) == 0);
        CHECK(geo_catalog_publish(c) == 0);
        ix = geo_catalog_acquire(c);
        CHECK(geo_index_slots(ix) == 3 && geo_index_count(ix) == 3);
        CHECK(geo_index_find(ix, "d", &i) == 0 && i == 1);
        geo_index_unref(ix);

        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "", .lat = 4, .lon = 4 }) == -EINVAL);
        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "e", .lat = 91, .lon = 4 }) == -EINVAL);
        CHECK(geo_catalog_put_site(c, NULL) == -EINVAL);
        geo_catalog_free(c);
}

TEST(zones_follow_the_catalog) {
        geo_catalog *c = NULL;
        geo_zone *z = NULL, *z2 = NULL;
        geo_index *ix;
        const char *eu[] = { "EU" };
        geo_filter in_eu = { .zones = eu, .n_zones = 1 };
        geo_hit h[2];

        CHECK(geo_catalog_new(&c) == 0);
        CHECK(geo_zone_new(&z, "EU", box(-10, 35, 30, 70), NULL, 0) == 0);
        CHECK(geo_catalog_put_zone(c, z) == 0);
        z = geo_zone_unref(z); /* the catalog holds its own */
        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "london", .lat = 51.5, .lon = -0.13 }) ==
              0);
        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "paris", .lat = 48.86, .lon = 2.35 }) ==
              0);
        CHECK(geo_catalog_publish(c) == 0);
        ix = geo_catalog_acquire(c);
        CHECK(geo_index_site_in_zone(ix, 0, "EU") == 1 && geo_index_site_in_zone(ix, 1, "EU") == 1);
        CHECK(geo_index_nearest(ix, 52, 0, &in_eu, h, 1) == 1);
        CHECK_STR(geo_index_site_id(ix, h[0].site), "london");
        ix = geo_index_unref(ix);

        /* The zone is redrawn without Britain: memberships are recomputed. */
        CHECK(geo_zone_new(&z2, "EU", box(-5, 35, 30, 50.5), NULL, 0) == 0);
        CHECK(geo_catalog_put_zone(c, z2) == 0);
        geo_zone_unref(z2);
        CHECK(geo_catalog_publish(c) == 0);
        ix = geo_catalog_acquire(c);
        CHECK(geo_index_site_in_zone(ix, 0, "EU") == 0 && geo_index_site_in_zone(ix, 1, "EU") == 1);
        CHECK(geo_index_nearest(ix, 52, 0, &in_eu, h, 2) == 1);
        CHECK_STR(geo_index_site_id(ix, h[0].site), "paris");
        ix = geo_index_unref(ix);

        /* A moved site is tested again. */
        CHECK(geo_catalog_put_site(c, &(geo_site){ .id = "london", .lat = 45, .lon = 5 }) == 0);
        CHECK(geo_catalog_publish(c) == 0);
        ix = geo_catalog_acquire(c);
        CHECK(geo_index_site_in_zone(ix, 0, "EU") == 1);
        ix = geo_index_unref(ix);

        CHECK(geo_catalog_remove_zone(c, "EU") == 0);
        CHECK(geo_catalog_remove_zone(c, "EU") == -ENOENT);
        CHECK(geo_catalog_put_zone(c, NULL) == -EINVAL);
        CHECK(geo_catalog_publish(c) == 0);
        ix = geo_catalog_acquire(c);
        CHECK(geo_index_nearest(ix, 52, 0, &in_eu, h, 1) == -ENOENT);
        geo_index_unref(ix);
        geo_catalog_free(c);
}

TEST(answers_after_many_edits_are_brute_forces) {
        enum { N = 3000 };
        struct tsite *t = make_sites(N, 77);
        bool present[N] = { 0 };
        geo_catalog *c = NULL;
        uint64_t r = 8;
        size_t bad = 0;

        CHECK(geo_catalog_new(&c) == 0);
        for (int round = 0; round < 5; round++) {
                /* Add, move and remove at random; publish; compare. */
                for (int e = 0; e < 2000; e++) {
                        size_t i = rng_next(&r) % N;
                        if (present[i] && rng_unit(&r) < 0.4) {
                                CHECK(geo_catalog_remove_site(c, t[i].id) == 0);
                                present[i] = false;
                        } else {
                                if (present[i] && rng_unit(&r) < 0.5)
                                        rng_point(&r, &t[i].lat, &t[i].lon);
                                CHECK(geo_catalog_put_site(c, &(geo_site){ .id = t[i].id,
                                                                           .lat = t[i].lat,
                                                                           .lon = t[i].lon }) == 0);
                                present[i] = true;
                        }
                }
                CHECK(geo_catalog_publish(c) == 0);
                geo_index *ix = geo_catalog_acquire(c);
                size_t count = 0;
                for (size_t i = 0; i < N; i++) {
                        t[i].eligible = present[i];
                        count += present[i];
                }
                CHECK(geo_index_count(ix) == count);
                for (int q = 0; q < 300; q++) {
                        double lat, lon;
                        geo_hit got[3], want[3];
                        size_t k = 1 + (size_t)q % 3, nw;
                        int ng;

                        rng_point(&r, &lat, &lon);
                        ng = geo_index_nearest(ix, lat, lon, NULL, got, k);
                        nw = brute(t, N, lat, lon, k, want);
                        /* Catalog indexes are not test indexes: compare ids. */
                        bool same = ng >= 0 && (size_t)ng == nw;
                        for (size_t h = 0; same && h < nw; h++)
                                same = !strcmp(geo_index_site_id(ix, got[h].site),
                                               t[want[h].site].id) &&
                                       got[h].distance_m == want[h].distance_m;
                        bad += !same;
                }
                geo_index_unref(ix);
        }
        CHECK(bad == 0);
        geo_catalog_free(c);
        free(t);
}

/* ---- readers against a writer ------------------------------------------- */

enum { VERSIONS = 300, SITES_PER_VERSION = 200 };

struct shared {
        geo_catalog *c;
        atomic_bool done;
};

struct reader {
        struct shared *sh;
        uint64_t seed;
        size_t reads, torn, last_version, went_back;
};

static void *read_loop(void *arg) {
        struct reader *rd = arg;

        while (!atomic_load(&rd->sh->done)) {
                geo_index *ix = geo_catalog_acquire(rd->sh->c);
                uint64_t v = geo_index_version(ix);
                geo_hit h[4];
                double lat, lon;
                int n;

                /* Version v has sites whose free space is v, and
                 * v % SITES_PER_VERSION + 1 of them. */
                if (v < rd->last_version)
                        rd->went_back++;
                rd->last_version = v;
                if (v > 0 && geo_index_count(ix) != v % SITES_PER_VERSION + 1)
                        rd->torn++;
                for (size_t s = 0; s < geo_index_slots(ix); s++) {
                        geo_site site;
                        if (geo_index_site(ix, s, &site) == 0 && site.free_bytes != v)
                                rd->torn++;
                }
                rng_point(&rd->seed, &lat, &lon);
                n = geo_index_nearest(ix, lat, lon, NULL, h, 4);
                for (int i = 0; i < n; i++) {
                        geo_site site;
                        if (geo_index_site(ix, h[i].site, &site) < 0 || site.free_bytes != v)
                                rd->torn++;
                }
                geo_index_unref(ix);
                rd->reads++;
        }
        return NULL;
}

TEST(readers_see_whole_versions_while_a_writer_publishes) {
        struct shared sh = { 0 };
        struct reader rd[2];
        pthread_t th[2];
        char id[32];
        uint64_t r = 1;

        CHECK(geo_catalog_new(&sh.c) == 0);
        for (int i = 0; i < 2; i++) {
                rd[i] = (struct reader){ .sh = &sh, .seed = (uint64_t)i + 1 };
                pthread_create(&th[i], NULL, read_loop, &rd[i]);
        }
        for (uint64_t v = 1; v <= VERSIONS; v++) {
                size_t want = v % SITES_PER_VERSION + 1;
                /* Rewrite every site with this version's free space; drop
                 * the ones beyond this version's count. */
                for (size_t s = 0; s < SITES_PER_VERSION + 1; s++) {
                        snprintf(id, sizeof(id), "dc-%zu", s);
                        if (s < want) {
                                double lat, lon;
                                rng_point(&r, &lat, &lon);
                                CHECK(geo_catalog_put_site(sh.c, &(geo_site){ .id = id,
                                                                              .lat = lat,
                                                                              .lon = lon,
                                                                              .free_bytes = v }) ==
                                      0);
                        } else {
                                geo_catalog_remove_site(sh.c, id); /* may be absent */
                        }
                }
                CHECK(geo_catalog_publish(sh.c) == 0);
        }
        atomic_store(&sh.done, true);
        for (int i = 0; i < 2; i++) {
                pthread_join(th[i], NULL);
                printf("#   reader %d: %zu reads, %zu torn, last version %zu\n", i, rd[i].reads,
                       rd[i].torn, rd[i].last_version);
                CHECK(rd[i].torn == 0);
                CHECK(rd[i].went_back == 0);
                CHECK(rd[i].reads > 0);
        }
        geo_catalog_free(sh.c);
}

TAP_MAIN(TAP_TEST(edits_show_only_once_published), TAP_TEST(removed_sites_leave_their_index_empty),
         TAP_TEST(zones_follow_the_catalog), TAP_TEST(answers_after_many_edits_are_brute_forces),
         TAP_TEST(readers_see_whole_versions_while_a_writer_publishes))
