/*
 * Geodesic distance on WGS84. The ellipsoid is set up once; geod_inverse is
 * reentrant on a const geod_geodesic, so any thread may call in.
 */
#include "geo/geo.h"

#include <geodesic.h>
#include <math.h>
#include <pthread.h>

static struct geod_geodesic wgs84;
static pthread_once_t wgs84_once = PTHREAD_ONCE_INIT;

static void wgs84_init(void) {
        geod_init(&wgs84, 6378137.0, 1.0 / 298.257223563);
}

bool geo_point_valid(double lat, double lon) {
        return isfinite(lat) && isfinite(lon) && lat >= -90.0 && lat <= 90.0 &&
               lon >= -180.0 && lon <= 180.0;
}

double geo_distance_m(double lat1, double lon1, double lat2, double lon2) {
        double s12;

        pthread_once(&wgs84_once, wgs84_init);
        geod_inverse(&wgs84, lat1, lon1, lat2, lon2, &s12, NULL, NULL);
        return s12;
}
