/*
 * geo — where things are on the Earth, and how far apart.
 *
 * Pure computation, no I/O. Distances are geodesics on the WGS84 ellipsoid by
 * Karney's algorithm (PROJ's geodesic.h): exact to the nanometre, correct
 * across the antimeridian and at the poles.
 *
 * Three kinds of object live here:
 *
 *  - geo_zone: a residency zone, read from GeoJSON (Polygon, MultiPolygon, or
 *    Features of them), that says whether a point is inside. Antimeridian-
 *    and pole-safe; a point on the border is inside.
 *  - geo_index: one immutable version of the datacenter catalog with a
 *    nearest-site index. It answers the nearest, the k nearest and every site
 *    within a radius, exactly as brute force over all sites with geod_inverse
 *    would (ties broken by site id), in microseconds. Any number of threads
 *    may query one index at once.
 *  - geo_catalog: the catalog that changes at run time. A writer edits it and
 *    publishes a new geo_index; readers acquire the current one without ever
 *    waiting for a writer, and keep a consistent version for as long as they
 *    hold it.
 *
 * Conventions: functions that can fail return 0 (or a count) on success and a
 * negative errno on failure; nothing is changed on failure. Reference-counted
 * objects have _ref/_unref; _unref accepts NULL and returns NULL, so
 * `ix = geo_index_unref(ix);` is one line. Strings passed in are borrowed for
 * the call and copied; strings handed out are borrowed from their object and
 * live as long as it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fallible calls whose result must be looked at. */
#define GEO_MUST_USE __attribute__((warn_unused_result))

/* ---- points and distances --------------------------------------------- */

/* True when lat is in [-90, 90], lon in [-180, 180] and both are finite.
 * Longitudes 180 and -180 name the same meridian. */
bool geo_point_valid(double lat, double lon);

/* The geodesic distance in metres between two valid points (identical points
 * are 0 m apart); NaN when either point is not valid. */
double geo_distance_m(double lat1, double lon1, double lat2, double lon2);

/*
 * Whether geo_distance_m(lat1, lon1, lat2, lon2) > limit_m, always the same
 * answer, but decided from bounds on the straight-line distance when they
 * settle it (nearly always), so that geod_inverse runs only near the limit
 * (within 0.34 % for limits of up to a few hundred km). False when either
 * point is not valid, as NaN > limit is.
 */
bool geo_distance_exceeds(double lat1, double lon1, double lat2, double lon2, double limit_m);

/* ---- residency zones ---------------------------------------------------- */

typedef struct geo_zone geo_zone;

/*
 * Reads a zone called id from GeoJSON text: a Polygon, a MultiPolygon, a
 * GeometryCollection of them, a Feature or a FeatureCollection whose
 * geometries are (Multi)Polygons. The zone is the union of its polygons.
 * Edges are straight lines in longitude/latitude (RFC 7946); a ring with an
 * edge longer than 180 degrees of longitude is read as crossing the
 * antimeridian. On failure, when err is not NULL, a reason is written there.
 * Returns 0 and the zone with one reference in *out, -EINVAL for text that is
 * not such GeoJSON or holds an invalid polygon, -ENOMEM.
 */
GEO_MUST_USE int geo_zone_new(geo_zone **out, const char *id, const char *geojson, char *err,
                              size_t err_size);
geo_zone *geo_zone_ref(geo_zone *zone);
geo_zone *geo_zone_unref(geo_zone *zone);

/* The zone's id, borrowed from the zone. */
const char *geo_zone_id(const geo_zone *zone);

/* 1 when the point is inside the zone or on its border, 0 when outside,
 * -EINVAL for an invalid point, -ENOMEM, -EIO when GEOS fails. Safe from any
 * thread (tests of one zone take turns). */
int geo_zone_covers(const geo_zone *zone, double lat, double lon);

/* ---- sites -------------------------------------------------------------- */

enum geo_status {
        GEO_SITE_ACTIVE = 0,
        GEO_SITE_DRAINING = 1,
        GEO_SITE_DOWN = 2,
};

/* One datacenter. id is borrowed (copied by whoever keeps the site). */
typedef struct geo_site {
        const char *id;  /* unique, non-empty, e.g. "aws-eu-west-3" */
        double lat, lon; /* a valid point */
        enum geo_status status;
        uint64_t free_bytes; /* free capacity as of this version */
} geo_site;

/* ---- the index: one immutable version of the catalog --------------------- */

typedef struct geo_index geo_index;

/* One answer: a site (its integer index in the geo_index) and its geodesic
 * distance from the query point. */
typedef struct geo_hit {
        size_t site;
        double distance_m;
} geo_hit;

#define GEO_STATUS_BIT(status) (1u << (status))

/*
 * Which sites a query may answer with; all conditions must hold. A zeroed
 * filter (or a NULL one) lets every site through. Applied inside the search,
 * so "nearest eligible" costs about what "nearest" costs.
 */
typedef struct geo_filter {
        /* Bit set of GEO_STATUS_BIT(GEO_SITE_...); 0 means any status. */
        unsigned statuses;
        /* Only sites with at least this much free capacity. */
        uint64_t min_free_bytes;
        /* Only sites inside at least one of these zones (by id); n_zones == 0
         * means anywhere. An id the index does not know fails the query with
         * -ENOENT. Borrowed for the call. */
        const char *const *zones;
        size_t n_zones;
        /* Called last, for sites that pass everything else and could be in
         * the answer; return false to skip the site. It must be a pure
         * function of (userdata, site) during one query, and must not block.
         */
        bool (*accept)(void *userdata, const geo_index *index, size_t site);
        void *userdata;
} geo_filter;

/*
 * Builds an index over sites[0..n_sites); site i gets integer index i. Each
 * site's membership of each zone is computed here. The index takes its own
 * reference on every zone. Returns 0 and the index with one reference in
 * *out, -EINVAL for a site with an empty id, an invalid point or an unknown
 * status, -EEXIST for a repeated site or zone id, -ENOMEM.
 */
GEO_MUST_USE int geo_index_new(geo_index **out, const geo_site *sites, size_t n_sites,
                               geo_zone *const *zones, size_t n_zones);
geo_index *geo_index_ref(geo_index *index);
geo_index *geo_index_unref(geo_index *index);

/* The version a catalog gave this index (0 for geo_index_new). */
uint64_t geo_index_version(const geo_index *index);

/* Site indexes are below geo_index_slots(); some may be empty slots in an
 * index published by a catalog. geo_index_count() counts the sites. */
size_t geo_index_slots(const geo_index *index);
size_t geo_index_count(const geo_index *index);

/* The site with this id: 0 and its index in *site, or -ENOENT. */
int geo_index_find(const geo_index *index, const char *id, size_t *site);

/* Fills *out with the site (out->id is borrowed from the index): 0, or
 * -ENOENT for an empty slot or an index out of range. */
int geo_index_site(const geo_index *index, size_t site, geo_site *out);

/* The site's id, borrowed from the index; NULL for an empty slot. */
const char *geo_index_site_id(const geo_index *index, size_t site);

/* 1 when the site lies in the zone (as computed when the index was built),
 * 0 when not, -ENOENT for an unknown site or zone. */
int geo_index_site_in_zone(const geo_index *index, size_t site, const char *zone_id);

/*
 * Whether the site passes the filter as a query would judge it: 1 when it
 * is eligible, 0 when not (or an empty slot), -ENOENT for a zone the index
 * does not know (as the query fails), -EINVAL for zones without their ids.
 * The nearest site of all, when eligible, is the nearest eligible one: this
 * saves the second query.
 */
int geo_index_site_eligible(const geo_index *index, size_t site, const geo_filter *filter);

/*
 * The k eligible sites nearest to (lat, lon), nearest first, into hits[0..k).
 * Equal distances are ordered by site id (strcmp). Returns the number of hits
 * (fewer than k when fewer sites are eligible), -EINVAL for an invalid point
 * or k > INT_MAX, -ENOENT for an unknown zone in the filter.
 */
GEO_MUST_USE int geo_index_nearest(const geo_index *index, double lat, double lon,
                                   const geo_filter *filter, geo_hit *hits, size_t k);

/*
 * Every eligible site within radius_m metres (inclusive) of (lat, lon),
 * nearest first, ties by id. *hits is allocated with malloc (the caller frees
 * it; NULL when none) and *n_hits is set. Returns 0, -EINVAL for an invalid
 * point or a negative or non-finite radius, -ENOENT, -ENOMEM.
 */
GEO_MUST_USE int geo_index_within(const geo_index *index, double lat, double lon, double radius_m,
                                  const geo_filter *filter, geo_hit **hits, size_t *n_hits);

/* Bytes of memory the index holds (not counting the zones). */
size_t geo_index_memory(const geo_index *index);

/* ---- the catalog: changes at run time, read without waiting --------------- */

typedef struct geo_catalog geo_catalog;

/* An empty catalog whose current index (version 0) has no site. */
GEO_MUST_USE int geo_catalog_new(geo_catalog **out);

/* Frees the catalog; indexes that readers still hold stay valid. No thread
 * may use the catalog itself during or after the call. */
geo_catalog *geo_catalog_free(geo_catalog *catalog);

/*
 * Edits to the next version; none is visible to readers before
 * geo_catalog_publish(). Edits and publish are serialized by the catalog,
 * and never make a reader wait.
 *
 * put_site adds a site or replaces the one with the same id; a site keeps its
 * integer index for as long as it stays in the catalog (the index of a removed
 * site may be given to a site added later). put_zone adds or replaces a zone
 * by id and takes its own reference.
 * Returns 0, -EINVAL for an invalid site, -ENOENT for removing an unknown id,
 * -ENOMEM.
 */
GEO_MUST_USE int geo_catalog_put_site(geo_catalog *catalog, const geo_site *site);
int geo_catalog_remove_site(geo_catalog *catalog, const char *id);
GEO_MUST_USE int geo_catalog_put_zone(geo_catalog *catalog, geo_zone *zone);
int geo_catalog_remove_zone(geo_catalog *catalog, const char *id);

/* Builds an index of the edited catalog with the next version number and
 * makes it current. Returns 0, or a negative errno (-ENOMEM, or -EIO from a
 * zone) and the current index stays. */
GEO_MUST_USE int geo_catalog_publish(geo_catalog *catalog);

/* The current index, with a reference the caller drops with
 * geo_index_unref(). Wait-free; never NULL. */
geo_index *geo_catalog_acquire(geo_catalog *catalog);
