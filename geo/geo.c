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
