/*
 * What the files of geo/ share and nobody else sees: the ellipsoid's
 * constants, the Cartesian form of a point, and the builder the catalog uses
 * to publish an index with empty slots and zone memberships it already knows.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "geo/geo.h"

#define GEO_WGS84_A 6378137.0
#define GEO_WGS84_F (1.0 / 298.257223563)
#define GEO_WGS84_B (GEO_WGS84_A * (1.0 - GEO_WGS84_F))

/*
 * FNV-1a (64 bits) of a site or zone id, for the id tables of the index and
 * the catalog. geo uses nothing of homing's, so it keeps this copy of
 * base/hash.h's hash_fnv1a (same constants, same values).
 */
static inline uint64_t geo_hash_id(const char *s) {
        uint64_t h = 14695981039346656037ULL;
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h;
}

/* Earth-centred, earth-fixed coordinates of a valid point, in metres. */
void geo_ecef(double lat, double lon, double xyz[3]);

/* 0 when the site can go into an index, -EINVAL when not. */
int geo_site_check(const geo_site *site);

/*
 * Builds an index over slots[0..n_slots); a slot whose id is NULL is empty.
 * zones[0..n_zones) must be sorted by id, without repeats. When member is not
 * NULL, member[i][0..n_member[i]) are the indexes (into zones) of the zones
 * slot i lies in, sorted; otherwise they are computed here. Sites must have
 * been checked and their ids be unique.
 */
int geo_index_build(geo_index **out, const geo_site *slots, size_t n_slots, geo_zone *const *zones,
                    size_t n_zones, uint32_t *const *member, const uint32_t *n_member,
                    uint64_t version);
