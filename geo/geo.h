/*
 * geo — where things are on the Earth, and how far apart.
 *
 * Pure computation, no I/O. Distances are geodesics on the WGS84 ellipsoid by
 * Karney's algorithm (PROJ's geodesic.h): exact to the nanometre, correct
 * across the antimeridian and at the poles.
 */
#pragma once

#include <stdbool.h>

/* True when lat is in [-90, 90], lon in [-180, 180] and both are finite. */
bool geo_point_valid(double lat, double lon);

/* The geodesic distance in metres between two valid points. */
double geo_distance_m(double lat1, double lon1, double lat2, double lon2);
