/*
 * Residency zones from hand-made GeoJSON (tests/fixtures/geo): inside,
 * outside, on the border, holes, polygons across the antimeridian (drawn
 * across it, or cut at it), polar caps, and what is not a zone. Boxes make
 * the right answer easy to compute, so random points check it too.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "geo-test.h"
#include "tap.h"

static char *fixture(const char *name) {
        const char *dir = getenv("GEO_FIXTURES");
        char path[1024];
        FILE *f;
        char *buf;
        long n;

        snprintf(path, sizeof(path), "%s/%s", dir ? dir : "tests/fixtures/geo", name);
        f = fopen(path, "rb");
        if (!f) {
                printf("#   cannot open %s\n", path);
                return NULL;
        }
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        rewind(f);
        buf = malloc((size_t)n + 1);
        if (fread(buf, 1, (size_t)n, f) != (size_t)n)
                n = 0;
        buf[n] = '\0';
        fclose(f);
        return buf;
}

static geo_zone *load(const char *id, const char *name) {
        char *text = fixture(name), err[256] = "";
        geo_zone *z = NULL;

        if (text && geo_zone_new(&z, id, text, err, sizeof(err)) < 0)
                printf("#   %s: %s\n", name, err);
        free(text);
        return z;
}

TEST(reads_polygons_multipolygons_and_features) {
        static const char *names[] = {
                "square-with-hole.geojson",   "fiji-crossing.geojson",
                "crossing-with-hole.geojson", "russia-east-split.geojson",
                "new-zealand.geojson",        "arctic-cap.geojson",
                "antarctic-planar.geojson",   "antarctic-spherical.geojson"
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                geo_zone *z = load("Z", names[i]);
                CHECK(z != NULL);
                if (z)
                        CHECK_STR(geo_zone_id(z), "Z");
                geo_zone_unref(z);
        }
        /* A GeometryCollection of polygons is a zone too. */
        geo_zone *z = NULL;
        CHECK(geo_zone_new(&z, "gc",
                           "{\"type\":\"GeometryCollection\",\"geometries\":[{\"type\":\"Polygon\","
                           "\"coordinates\":[[[0,0],[1,0],[1,1],[0,0]]]}]}",
                           NULL, 0) == 0);
        CHECK(geo_zone_covers(z, 0.25, 0.5) == 1);
        geo_zone_unref(z);
}

TEST(rejects_what_is_not_a_zone) {
        static const char *bad[] = {
                "{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[1,1],[0,0]]", /* truncated */
                "not json",
                "{\"type\":\"Point\",\"coordinates\":[1,2]}",
                "{\"type\":\"LineString\",\"coordinates\":[[1,2],[3,4]]}",
                "{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[1,95],[0,0]]]}", /* latitude 95 */
                "{\"type\":\"FeatureCollection\",\"features\":[]}",
                "{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[10,10],[10,0],[0,10],[0,0]]]}", /* bowtie */
        };
        geo_zone *z = NULL;
        char err[256];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = '\0';
                CHECK(geo_zone_new(&z, "bad", bad[i], err, sizeof(err)) == -EINVAL);
                CHECK(z == NULL);
                CHECK(err[0] != '\0');
                printf("#   %s\n", err);
        }
        CHECK(geo_zone_new(&z, "",
                           "{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[1,1],[0,0]]]}",
                           NULL, 0) == -EINVAL);
        CHECK(geo_zone_new(&z, NULL, "{}", NULL, 0) == -EINVAL);
        CHECK(geo_zone_new(&z, "x", NULL, NULL, 0) == -EINVAL);
        z = load("bowtie", "bowtie.geojson");
        CHECK(z == NULL);
        CHECK(geo_zone_unref(NULL) == NULL);
}

TEST(an_empty_position_is_refused_before_geos_reads_it) {
        /* GEOS 3.11's GeoJSON reader reads two numbers from an empty position
         * and crashed the process (a zone PUT by an admin took the API down). */
        static const char *bad[] = {
                "{\"type\":\"Polygon\",\"coordinates\":[[[],[10,0],[10,10],[0,10],[0,0]]]}",
                "{\"type\":\"MultiPolygon\",\"coordinates\":[[[[0,0],[1,0],[1,1],[]]]]}",
                "{\"type\":\"GeometryCollection\",\"geometries\":[{\"type\":\"LineString\","
                "\"coordinates\":[[]]}]}",
                "{\"type\":\"Feature\",\"properties\":{},\"geometry\":{\"type\":\"MultiPoint\","
                "\"coordinates\":[[1,2],[]]}}",
                "{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",\"geometry\":"
                "{\"type\":\"MultiLineString\",\"coordinates\":[[[1,2],[]]]}}]}",
        };
        geo_zone *z = NULL;
        char err[256];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = '\0';
                CHECK(geo_zone_new(&z, "bad", bad[i], err, sizeof(err)) == -EINVAL);
                CHECK(z == NULL);
                CHECK(err[0] != '\0');
                printf("#   %s\n", err);
        }
}

TEST(inside_outside_border_and_holes) {
        geo_zone *z = load("sq", "square-with-hole.geojson");
        uint64_t s = 1;
        size_t bad = 0;

        CHECK(z != NULL);
        if (!z)
                return;
        CHECK(geo_zone_covers(z, 2, 2) == 1);      /* inside */
        CHECK(geo_zone_covers(z, 5, 5) == 0);      /* in the hole */
        CHECK(geo_zone_covers(z, 11, 5) == 0);     /* outside */
        CHECK(geo_zone_covers(z, -0.001, 5) == 0); /* just outside */
        CHECK(geo_zone_covers(z, 5, 0) == 1);      /* on the outer border */
        CHECK(geo_zone_covers(z, 0, 0) == 1);      /* on a corner */
        CHECK(geo_zone_covers(z, 10, 10) == 1);
        CHECK(geo_zone_covers(z, 4, 5) == 1);     /* on the hole's border */
        CHECK(geo_zone_covers(z, 6, 6) == 1);     /* on the hole's corner */
        CHECK(geo_zone_covers(z, 5, 4.001) == 0); /* just inside the hole */
        CHECK(geo_zone_covers(z, 90, 5) == 0);
        CHECK(geo_zone_covers(z, NAN, 5) == -EINVAL);
        CHECK(geo_zone_covers(z, 5, 181) == -EINVAL);
        CHECK(geo_zone_covers(NULL, 5, 5) == -EINVAL);

        for (int i = 0; i < 20000; i++) {
                double lat = -2 + 14 * rng_unit(&s), lon = -2 + 14 * rng_unit(&s);
                bool in_outer = lat >= 0 && lat <= 10 && lon >= 0 && lon <= 10;
                bool in_hole = lat > 4 && lat < 6 && lon > 4 && lon < 6;
                bad += geo_zone_covers(z, lat, lon) != (in_outer && !in_hole);
        }
        CHECK(bad == 0);
        geo_zone_unref(z);
}

/* Whether lon is in [west, east] going east from west, across 180 if so. */
static bool lon_between(double lon, double west, double east) {
        double span = fmod(east - west + 720, 360), off = fmod(lon - west + 720, 360);
        return off <= span || (lon == 180 && fmod(-180 - west + 720, 360) <= span) ||
               (lon == -180 && fmod(180 - west + 720, 360) <= span);
}

TEST(a_polygon_drawn_across_the_antimeridian) {
        geo_zone *z = load("fj", "fiji-crossing.geojson");
        uint64_t s = 2;
        size_t bad = 0;

        CHECK(z != NULL);
        if (!z)
                return;
        CHECK(geo_zone_covers(z, -17, 178) == 1);
        CHECK(geo_zone_covers(z, -17, -179.5) == 1);
        CHECK(geo_zone_covers(z, -17, 180) == 1);
        CHECK(geo_zone_covers(z, -17, -180) == 1);
        CHECK(geo_zone_covers(z, -17, 0) == 0); /* not the other way round the world */
        CHECK(geo_zone_covers(z, -17, 176.9) == 0);
        CHECK(geo_zone_covers(z, -17, -178.9) == 0);
        CHECK(geo_zone_covers(z, -19, 178) == 1); /* borders */
        CHECK(geo_zone_covers(z, -17, -179) == 1);
        CHECK(geo_zone_covers(z, -15, 180) == 1);
        CHECK(geo_zone_covers(z, -20, 180) == 0);

        for (int i = 0; i < 20000; i++) {
                double lat = -21 + 8 * rng_unit(&s), lon = 174 + 10 * rng_unit(&s);
                if (lon > 180)
                        lon -= 360;
                bool want = lat >= -19 && lat <= -15 && lon_between(lon, 177, -179);
                bad += geo_zone_covers(z, lat, lon) != want;
        }
        CHECK(bad == 0);
        geo_zone_unref(z);
}

TEST(a_hole_across_the_antimeridian) {
        geo_zone *z = load("ring", "crossing-with-hole.geojson");
        uint64_t s = 3;
        size_t bad = 0;

        CHECK(z != NULL);
        if (!z)
                return;
        CHECK(geo_zone_covers(z, 0, 175) == 1);
        CHECK(geo_zone_covers(z, 0, 180) == 0); /* in the hole */
        CHECK(geo_zone_covers(z, 0, -180) == 0);
        CHECK(geo_zone_covers(z, 0, 179) == 0);
        CHECK(geo_zone_covers(z, 0, -179) == 0);
        CHECK(geo_zone_covers(z, 5, 180) == 1); /* the hole's border */
        CHECK(geo_zone_covers(z, 0, -175) == 1);
        CHECK(geo_zone_covers(z, 0, 0) == 0);
        for (int i = 0; i < 20000; i++) {
                double lat = -12 + 24 * rng_unit(&s), lon = 165 + 30 * rng_unit(&s);
                if (lon > 180)
                        lon -= 360;
                bool outer = lat >= -10 && lat <= 10 && lon_between(lon, 170, -170);
                bool hole = lat > -5 && lat < 5 && lon_between(lon, 178, -178) && lon != 178 &&
                            lon != -178;
                bad += geo_zone_covers(z, lat, lon) != (outer && !hole);
        }
        CHECK(bad == 0);
        geo_zone_unref(z);
}

TEST(a_zone_cut_at_the_antimeridian) {
        geo_zone *ru = load("ru", "russia-east-split.geojson"),
                 *nz = load("nz", "new-zealand.geojson");

        CHECK(ru && nz);
        if (!ru || !nz)
                goto out;
        CHECK(geo_zone_covers(ru, 65, 175) == 1);
        CHECK(geo_zone_covers(ru, 65, -175) == 1);
        CHECK(geo_zone_covers(ru, 65, 180) == 1);
        CHECK(geo_zone_covers(ru, 65, -180) == 1);
        CHECK(geo_zone_covers(ru, 65, -169) == 0);
        CHECK(geo_zone_covers(ru, 65, 0) == 0);
        CHECK(geo_zone_covers(ru, 71, 180) == 0);

        CHECK(geo_zone_covers(nz, -41.3, 174.8) == 1);    /* Wellington */
        CHECK(geo_zone_covers(nz, -43.95, -176.55) == 1); /* Chatham Islands */
        CHECK(geo_zone_covers(nz, -43.95, 178) == 1);
        CHECK(geo_zone_covers(nz, -43.95, -178) == 0);   /* the sea between */
        CHECK(geo_zone_covers(nz, -33.87, 151.21) == 0); /* Sydney */
out:
        geo_zone_unref(ru);
        geo_zone_unref(nz);
}

TEST(the_poles) {
        geo_zone *arctic = load("arctic", "arctic-cap.geojson");
        geo_zone *planar = load("aq1", "antarctic-planar.geojson");
        geo_zone *spherical = load("aq2", "antarctic-spherical.geojson");
        geo_zone *sq = load("sq", "square-with-hole.geojson");

        CHECK(arctic && planar && spherical && sq);
        if (!arctic || !planar || !spherical || !sq)
                goto out;
        /* A ring around the pole with no vertex on it encloses the pole. */
        CHECK(geo_zone_covers(arctic, 90, 0) == 1);
        CHECK(geo_zone_covers(arctic, 90, -123) == 1);
        CHECK(geo_zone_covers(arctic, 85, 45) == 1);
        CHECK(geo_zone_covers(arctic, 85, -180) == 1);
        CHECK(geo_zone_covers(arctic, 85, 180) == 1);
        CHECK(geo_zone_covers(arctic, 80, 45) == 1); /* on the edge */
        CHECK(geo_zone_covers(arctic, 79, 45) == 0);
        CHECK(geo_zone_covers(arctic, -90, 0) == 0);
        /* Drawn on the map, down to the pole. */
        CHECK(geo_zone_covers(planar, -90, 0) == 1);
        CHECK(geo_zone_covers(planar, -90, 180) == 1);
        CHECK(geo_zone_covers(planar, -80, 100) == 1);
        CHECK(geo_zone_covers(planar, -80, -180) == 1);
        CHECK(geo_zone_covers(planar, -60, 0) == 0);
        CHECK(geo_zone_covers(planar, 90, 0) == 0);
        /* Drawn as d3 and world-atlas draw Antarctica. */
        CHECK(geo_zone_covers(spherical, -80, 100) == 1);
        CHECK(geo_zone_covers(spherical, -80, 180) == 1);
        CHECK(geo_zone_covers(spherical, -80, -179.5) == 1);
        CHECK(geo_zone_covers(spherical, -60, 0) == 0);
        CHECK(geo_zone_covers(spherical, -90, 0) == 1);
        CHECK(geo_zone_covers(spherical, 0, 0) == 0);
        /* A zone far from the poles does not reach them. */
        CHECK(geo_zone_covers(sq, 90, 5) == 0);
        CHECK(geo_zone_covers(sq, -90, 5) == 0);
out:
        geo_zone_unref(arctic);
        geo_zone_unref(planar);
        geo_zone_unref(spherical);
        geo_zone_unref(sq);
}

struct worker {
        geo_zone *z;
        uint64_t seed;
        size_t bad;
};

static void *hammer(void *arg) {
        struct worker *w = arg;
        for (int i = 0; i < 20000; i++) {
                double lat = -21 + 8 * rng_unit(&w->seed), lon = 174 + 10 * rng_unit(&w->seed);
                if (lon > 180)
                        lon -= 360;
                bool want = lat >= -19 && lat <= -15 && lon_between(lon, 177, -179);
                w->bad += geo_zone_covers(w->z, lat, lon) != want;
        }
        return NULL;
}

TEST(one_zone_serves_many_threads) {
        geo_zone *z = load("fj", "fiji-crossing.geojson");
        struct worker w[4];
        pthread_t th[4];

        CHECK(z != NULL);
        if (!z)
                return;
        /* The zone outlives the caller's reference while others hold one. */
        for (int i = 0; i < 4; i++) {
                w[i] = (struct worker){ .z = geo_zone_ref(z), .seed = (uint64_t)i + 10 };
                pthread_create(&th[i], NULL, hammer, &w[i]);
        }
        z = geo_zone_unref(z);
        for (int i = 0; i < 4; i++) {
                pthread_join(th[i], NULL);
                CHECK(w[i].bad == 0);
                geo_zone_unref(w[i].z);
        }
}

TEST(a_ring_around_the_earth_more_than_once_is_refused) {
        /* Once unwrapped, these span more than 360 degrees of longitude: no
         * shift by 360 brings all of a ring to the point, and 180 and -180
         * answered differently. */
        static const char *bad[] = {
                /* found by tests/fuzz/zone.c: winds twice */
                "{\"type\":\"Polygon\",\"coordinates\":[[[-181,60],[90,60],[0,60],[0,60],[182,-86],"
                "[-332,-86],[0,59],[182,40],[-181,60]]]}",
                /* drawn unwrapped, from -500 to 500 in steps of less than 180 */
                "{\"type\":\"Polygon\",\"coordinates\":[[[-500,0],[-340,0],[-180,0],[0,0],[180,0],"
                "[340,0],[500,0],[500,10],[340,10],[180,10],[0,10],[-180,10],[-340,10],[-500,10],"
                "[-500,0]]]}",
        };
        geo_zone *z = NULL;
        char err[256];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = '\0';
                CHECK(geo_zone_new(&z, "bad", bad[i], err, sizeof(err)) == -EINVAL);
                CHECK(z == NULL);
                printf("#   %s\n", err);
        }
}

TAP_MAIN(TAP_TEST(reads_polygons_multipolygons_and_features), TAP_TEST(rejects_what_is_not_a_zone),
         TAP_TEST(inside_outside_border_and_holes),
         TAP_TEST(a_polygon_drawn_across_the_antimeridian),
         TAP_TEST(a_hole_across_the_antimeridian), TAP_TEST(a_zone_cut_at_the_antimeridian),
         TAP_TEST(the_poles), TAP_TEST(one_zone_serves_many_threads),
         TAP_TEST(an_empty_position_is_refused_before_geos_reads_it),
         TAP_TEST(a_ring_around_the_earth_more_than_once_is_refused))
