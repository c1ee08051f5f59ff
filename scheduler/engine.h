/*
 * engine — the placement decision, as a pure function: given where a
 * snapshot is, the datacenters it may move to and where its user just was,
 * stay or move, and why. No I/O, no clock: the caller brings everything.
 */
#pragma once

#include <stddef.h>

/* A datacenter a snapshot may move to (active, with room). Borrowed. */
struct engine_site {
        const char *id;
        double lat, lon;
};

struct engine_policy {
        double margin_m; /* the target must be closer than the current site by more */
};

enum engine_outcome { ENGINE_STAY, ENGINE_MOVE };

struct engine_decision {
        enum engine_outcome outcome;
        const char *reason;   /* a stable word: "closer", "already_nearest", ... */
        int target;           /* index into sites of the nearest eligible site, or -1 */
        double current_m;     /* distance from the report to the current site */
        double target_m;      /* distance to the nearest eligible site */
};

/*
 * Decides for one snapshot held at `current_id` (located at cur_lat, cur_lon)
 * and a report at (lat, lon). `sites` may or may not include the current
 * site. Ties between sites go to the smaller id, so the answer is the same
 * on every scheduler.
 */
void engine_decide(const struct engine_policy *policy, const struct engine_site *sites,
                   size_t n_sites, const char *current_id, double cur_lat, double cur_lon,
                   double lat, double lon, struct engine_decision *out);
