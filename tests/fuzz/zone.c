/*
 * Residency zones from arbitrary GeoJSON text (geo_zone_new), then tested
 * at a few points on both sides of the antimeridian, at the poles and on
 * the equator (geo_zone_covers).
 *
 * Properties: no crash or leak, in homing or in how it drives GEOS; an
 * accepted zone answers 0 or 1 for every valid point and -EINVAL for an
 * invalid one; 180 and -180 are the same meridian.
 */
#include <errno.h>
#include <math.h>

#include "fuzz.h"
#include "geo/geo.h"

static const double points[][2] = {
        { 0, 0 },  { 10, 10 }, { -10, -10 }, { 45, 179.5 },    { 45, -179.5 }, { -17, 178 },
        { 90, 0 }, { -90, 0 }, { 60, 25 },   { -33.9, 151.2 }, { 0.5, 0.5 },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = fuzz_strndup(data, size), err[256];
        geo_zone *z = NULL;
        int r = geo_zone_new(&z, "fuzz", text, err, sizeof(err));

        FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
        FUZZ_CHECK(r == 0 || err[0]);
        if (r == 0) {
                for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
                        int c = geo_zone_covers(z, points[i][0], points[i][1]);
                        FUZZ_CHECK(c == 0 || c == 1);
                }
                for (int lat = -60; lat <= 60; lat += 30)
                        FUZZ_CHECK(geo_zone_covers(z, lat, 180) == geo_zone_covers(z, lat, -180));
                FUZZ_CHECK(geo_zone_covers(z, NAN, 0) == -EINVAL);
                FUZZ_CHECK(geo_zone_covers(z, 0, 180.5) == -EINVAL);
                z = geo_zone_unref(z);
        }
        free(text);
        return 0;
}
