/*
 * The distance of record against GeographicLib's own GeodSolve (Debian
 * geographiclib-tools), run once over every pair: random pairs uniform on the
 * sphere, short ones, near-antipodal ones, and the edge cases by name. The
 * largest difference must be at most a micrometre. GeodSolve missing is a
 * failure, not a skip: deploy/install-deps installs it.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "geo-test.h"
#include "tap.h"

TEST(valid_points_are_finite_and_in_range) {
        CHECK(geo_point_valid(0, 0));
        CHECK(geo_point_valid(90, 180));
        CHECK(geo_point_valid(-90, -180));
        CHECK(!geo_point_valid(90.000000001, 0));
        CHECK(!geo_point_valid(-90.000000001, 0));
        CHECK(!geo_point_valid(0, 180.000000001));
        CHECK(!geo_point_valid(0, -180.000000001));
        CHECK(!geo_point_valid(NAN, 0));
        CHECK(!geo_point_valid(0, NAN));
        CHECK(!geo_point_valid(INFINITY, 0));
        CHECK(!geo_point_valid(0, -INFINITY));
}

TEST(invalid_points_have_no_distance) {
        CHECK(isnan(geo_distance_m(NAN, 0, 0, 0)));
        CHECK(isnan(geo_distance_m(0, 0, 91, 0)));
        CHECK(isnan(geo_distance_m(0, 0, 0, 181)));
        CHECK(isnan(geo_distance_m(0, -INFINITY, 0, 0)));
}

TEST(identical_points_are_zero_apart) {
        uint64_t s = 7;
        for (int i = 0; i < 1000; i++) {
                double lat, lon;
                rng_point(&s, &lat, &lon);
                CHECK(geo_distance_m(lat, lon, lat, lon) == 0);
        }
        /* the same point under two names */
        CHECK(geo_distance_m(12.5, 180, 12.5, -180) == 0);
        CHECK(geo_distance_m(-89.5, -180, -89.5, 180) == 0);
        CHECK(geo_distance_m(90, 0, 90, 123) == 0);
        CHECK(geo_distance_m(-90, -180, -90, 45) == 0);
}

TEST(known_distances) {
        /* Antipodes on the equator: half the meridian ellipse, by GeodSolve. */
        CHECK_NEAR(geo_distance_m(0, 0, 0, 180), 20003931.458625447, 1e-6);
        /* Pole to pole. */
        CHECK_NEAR(geo_distance_m(90, 0, -90, 0), 20003931.458625447, 1e-6);
        /* Across the antimeridian is short, not around the world. */
        CHECK(geo_distance_m(0, 179.9, 0, -179.9) < 23000);
}

struct pair {
        char text[128];
        double lat1, lon1, lat2, lon2;
};

/* Writes the pair as GeodSolve will read it (fixed notation: it takes "e"
 * for east) and reads the very same decimals back for us. */
static void pair_set(struct pair *p, double lat1, double lon1, double lat2, double lon2) {
        snprintf(p->text, sizeof(p->text), "%.17f %.17f %.17f %.17f", lat1, lon1, lat2, lon2);
        if (sscanf(p->text, "%lf %lf %lf %lf", &p->lat1, &p->lon1, &p->lat2, &p->lon2) != 4)
                abort();
}

static double clamp_lat(double lat) {
        return fmax(-90, fmin(90, lat));
}

static double wrap_lon(double lon) {
        while (lon > 180)
                lon -= 360;
        while (lon < -180)
                lon += 360;
        return lon;
}

TEST(agrees_with_geodsolve_to_a_micrometre) {
        enum { RANDOM = 10000, SHORT = 2000, ANTIPODAL = 2000 };
        static const double edges[][4] = {
                { 0, 0, 0, 0 },
                { 0, 0, 0, 180 },
                { 0, 0, 0, -180 },
                { 0, 180, 0, -180 },
                { 90, 0, -90, 0 },
                { 90, 0, 90, 90 },
                { -90, 180, -90, -180 },
                { 90, 10, 45, -170 },
                { -90, 0, 0, 0 },
                { 0, 0, 0.5, 179.5 },
                { 0, 0, -0.5, 179.7 },
                { 30, 0, -30, 180 },
                { 30, 0, -29.9, 179.9 },
                { 1e-9, 0, 0, 0 },
                { 0, 179.9999999, 0, -179.9999999 },
                { 45, 180, 45, -180 },
                { -45, 179, -45, -179 },
                { 89.9999999, 0, 89.9999999, 180 },
                { 0, 0, 0, 179.999 },
                { 0, 0, 0.001, 179.9 },
                { 10, 20, 10, 20 },
                { -33.87, 151.21, 51.51, -0.13 },
        };
        size_t n_edges = sizeof(edges) / sizeof(edges[0]);
        size_t n = RANDOM + SHORT + ANTIPODAL + n_edges, m = 0, bad = 0, lines = 0;
        struct pair *p = calloc(n, sizeof(*p));
        const char *tmp = getenv("TMPDIR");
        char path[512], cmd[700], buf[256];
        double worst = 0;
        uint64_t s = 20261125;
        FILE *in, *out;
        int fd;

        for (size_t i = 0; i < RANDOM; i++) {
                double a, b, c, d;
                rng_point(&s, &a, &b);
                rng_point(&s, &c, &d);
                pair_set(&p[m++], a, b, c, d);
        }
        for (size_t i = 0; i < SHORT; i++) { /* metres to a few km */
                double a, b, r = pow(10, -5 + 4 * rng_unit(&s));
                rng_point(&s, &a, &b);
                pair_set(&p[m++], a, b, clamp_lat(a + r * (rng_unit(&s) - 0.5)),
                         wrap_lon(b + r * (rng_unit(&s) - 0.5)));
        }
        for (size_t i = 0; i < ANTIPODAL; i++) { /* within a degree of antipodal */
                double a, b;
                rng_point(&s, &a, &b);
                pair_set(&p[m++], a, b, clamp_lat(-a + (rng_unit(&s) - 0.5)),
                         wrap_lon(b + 180 + (rng_unit(&s) - 0.5)));
        }
        for (size_t i = 0; i < n_edges; i++)
                pair_set(&p[m++], edges[i][0], edges[i][1], edges[i][2], edges[i][3]);

        snprintf(path, sizeof(path), "%s/geo-geodsolve-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        fd = mkstemp(path);
        CHECK(fd >= 0);
        if (fd < 0)
                goto out;
        in = fdopen(fd, "w");
        for (size_t i = 0; i < m; i++)
                fprintf(in, "%s\n", p[i].text);
        fclose(in);

        if (system("command -v GeodSolve >/dev/null 2>&1") != 0) {
                printf("#   GeodSolve is not installed (Debian geographiclib-tools; deploy/install-deps)\n");
                CHECK(!"GeodSolve found");
                goto out;
        }
        snprintf(cmd, sizeof(cmd), "GeodSolve -i -p 9 --input-file %s", path);
        out = popen(cmd, "r");
        CHECK(out != NULL);
        if (!out)
                goto out;
        while (fgets(buf, sizeof(buf), out)) {
                double azi1, azi2, ref, got, err;
                if (lines >= m || sscanf(buf, "%lf %lf %lf", &azi1, &azi2, &ref) != 3) {
                        bad++;
                        lines++;
                        continue;
                }
                got = geo_distance_m(p[lines].lat1, p[lines].lon1, p[lines].lat2, p[lines].lon2);
                err = fabs(got - ref);
                if (!(err <= 1e-6)) {
                        if (bad < 10)
                                printf("#   %s: ours %.9f, GeodSolve %.9f\n", p[lines].text, got,
                                       ref);
                        bad++;
                }
                if (err > worst)
                        worst = err;
                lines++;
        }
        CHECK(pclose(out) == 0);
        printf("#   %zu pairs, largest difference %.3g m\n", lines, worst);
        CHECK(lines == m);
        CHECK(bad == 0);
        CHECK(worst <= 1e-6);
out:
        unlink(path);
        free(p);
}

/* A pair of each kind the bounds must get right: far, near, antipodal, polar. */
static void some_pair(uint64_t *s, int i, double p[4]) {
        rng_point(s, &p[0], &p[1]);
        switch (i % 4) {
        case 0:
                rng_point(s, &p[2], &p[3]);
                break;
        case 1: /* within a few kilometres, as a device's next fix mostly is */
                p[2] = fmax(-90, fmin(90, p[0] + (rng_unit(s) - 0.5) * 0.1));
                p[3] = remainder(p[1] + (rng_unit(s) - 0.5) * 0.1, 360.0);
                break;
        case 2: /* nearly antipodal, where the chord is useless */
                p[2] = -p[0] + (rng_unit(s) - 0.5) * 1e-3;
                p[3] = remainder(p[1] + 180 + (rng_unit(s) - 0.5) * 1e-3, 360.0);
                break;
        default: /* near a pole */
                p[0] = 89.99 + rng_unit(s) * 0.01;
                p[2] = 89.9 + rng_unit(s) * 0.1;
                p[3] = 360.0 * rng_unit(s) - 180.0;
                break;
        }
}

TEST(exceeds_answers_as_the_distance_does) {
        static const double rel[] = { -0.5,  -0.01, -0.0034, -1e-6, -1e-12, 0,
                                      1e-12, 1e-6,  0.0034,  0.01,  0.5 };
        uint64_t s = 11;
        int wrong = 0, checked = 0;

        for (int i = 0; i < 20000; i++) {
                double p[4], d;
                some_pair(&s, i, p);
                d = geo_distance_m(p[0], p[1], p[2], p[3]);
                for (size_t k = 0; k < sizeof(rel) / sizeof(rel[0]); k++) {
                        double limit = d * (1 + rel[k]) + rel[k] * 1e-3;
                        wrong += geo_distance_exceeds(p[0], p[1], p[2], p[3], limit) != (d > limit);
                        checked++;
                }
                /* at the distance itself, and a hair below it */
                wrong += geo_distance_exceeds(p[0], p[1], p[2], p[3], d);
                wrong += !geo_distance_exceeds(p[0], p[1], p[2], p[3], nextafter(d, 0)) && d > 0;
                checked += 2;
        }
        printf("#   %d limits checked\n", checked);
        CHECK(wrong == 0);
}

TEST(exceeds_at_the_edges) {
        CHECK(!geo_distance_exceeds(NAN, 0, 0, 0, 1));
        CHECK(!geo_distance_exceeds(0, 0, 91, 0, 1));
        CHECK(!geo_distance_exceeds(0, 0, 0, 0, 0));
        CHECK(geo_distance_exceeds(0, 0, 0, 0, -1));
        CHECK(!geo_distance_exceeds(0, 0, 0, 180, INFINITY));
        CHECK(!geo_distance_exceeds(0, 0, 0, 180, NAN));
        CHECK(geo_distance_exceeds(0, 0, 0, 180, 20003931.45862));
        CHECK(!geo_distance_exceeds(0, 0, 0, 180, 20003931.45863));
        CHECK(!geo_distance_exceeds(12.5, 180, 12.5, -180, 0));
}

TAP_MAIN(TAP_TEST(valid_points_are_finite_and_in_range), TAP_TEST(invalid_points_have_no_distance),
         TAP_TEST(identical_points_are_zero_apart), TAP_TEST(known_distances),
         TAP_TEST(agrees_with_geodsolve_to_a_micrometre),
         TAP_TEST(exceeds_answers_as_the_distance_does), TAP_TEST(exceeds_at_the_edges))
