/*
 * Geodesic distance on WGS84. The ellipsoid is set up once; geod_inverse is
 * reentrant on a const geod_geodesic, so any thread may call in.
 *
 * This is the distance of record: the index (index.c) answers with exactly
 * the value this function returns, so that an answer can always be checked
 * against brute force.
 */
#include "geo/geo.h"

#include <geodesic.h>
#include <math.h>
#include <pthread.h>

#include "geo/geo-internal.h"

static struct geod_geodesic wgs84;
static pthread_once_t wgs84_once = PTHREAD_ONCE_INIT;

static void wgs84_init(void) {
        geod_init(&wgs84, GEO_WGS84_A, GEO_WGS84_F);
}

bool geo_point_valid(double lat, double lon) {
        return isfinite(lat) && isfinite(lon) && lat >= -90.0 && lat <= 90.0 && lon >= -180.0 &&
               lon <= 180.0;
}

double geo_distance_m(double lat1, double lon1, double lat2, double lon2) {
        double s12;

        if (!geo_point_valid(lat1, lon1) || !geo_point_valid(lat2, lon2))
                return NAN;
        pthread_once(&wgs84_once, wgs84_init);
        geod_inverse(&wgs84, lat1, lon1, lat2, lon2, &s12, NULL, NULL);
        return s12;
}

/*
 * For points P, Q of the ellipsoid with chord c = |P - Q| and geodesic s:
 * s >= c (no curve is shorter than the segment), and s <= 2a asin(c / 2b)
 * (the ellipsoid is the unit sphere stretched by at least b and at most a:
 * c >= 2b sin(sigma / 2) for the preimages' angle sigma, and the stretched
 * great circle between them, at most a sigma long, joins P and Q). The
 * slack (a millimetre and 1e-9 of the limit) is far above the rounding of
 * the chord (1e-8 m) and geod_inverse's error (15 nm): only a geodesic
 * within it of the limit, or just above it (0.34 % for short chords,
 * growing to about 5 % as the chord nears b; beyond b the upper bound is
 * not tried), gets computed.
 */
bool geo_distance_exceeds(double lat1, double lon1, double lat2, double lon2, double limit_m) {
        double p[3], q[3], dx, dy, dz, c, slack;

        if (!geo_point_valid(lat1, lon1) || !geo_point_valid(lat2, lon2))
                return false;
        if (!isfinite(limit_m) || limit_m < 0)
                return geo_distance_m(lat1, lon1, lat2, lon2) > limit_m;
        geo_ecef(lat1, lon1, p);
        geo_ecef(lat2, lon2, q);
        dx = p[0] - q[0];
        dy = p[1] - q[1];
        dz = p[2] - q[2];
        c = sqrt(dx * dx + dy * dy + dz * dz);
        slack = limit_m * 1e-9 + 1e-3;
        if (c > limit_m + slack)
                return true;
        if (c < GEO_WGS84_B && 2 * GEO_WGS84_A * asin(c / (2 * GEO_WGS84_B)) + slack < limit_m)
                return false;
        return geo_distance_m(lat1, lon1, lat2, lon2) > limit_m;
}

void geo_ecef(double lat, double lon, double xyz[3]) {
        /* Geodetic to earth-centred Cartesian, in metres. */
        double e2 = GEO_WGS84_F * (2.0 - GEO_WGS84_F);
        double phi = lat * (M_PI / 180.0), lam = lon * (M_PI / 180.0);
        double sphi = sin(phi), cphi = cos(phi);
        double n = GEO_WGS84_A / sqrt(1.0 - e2 * sphi * sphi);

        xyz[0] = n * cphi * cos(lam);
        xyz[1] = n * cphi * sin(lam);
        xyz[2] = n * (1.0 - e2) * sphi;
}
