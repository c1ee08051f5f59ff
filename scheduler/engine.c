/*
 * The skeleton's policy: move when the nearest eligible datacenter is closer
 * than the current one by more than a margin. The richer policy (dwell,
 * cooldown, credibility, cost) grows here, still pure.
 */
#include "scheduler/engine.h"

#include <string.h>

#include "geo/geo.h"

void engine_decide(const struct engine_policy *policy, const struct engine_site *sites,
                   size_t n_sites, const char *current_id, double cur_lat, double cur_lon,
                   double lat, double lon, struct engine_decision *out) {
        int best = -1;
        double best_m = 0.0;

        for (size_t i = 0; i < n_sites; i++) {
                double d = geo_distance_m(lat, lon, sites[i].lat, sites[i].lon);
                if (best < 0 || d < best_m ||
                    (d == best_m && strcmp(sites[i].id, sites[best].id) < 0)) {
                        best = (int)i;
                        best_m = d;
                }
        }

        out->target = best;
        out->target_m = best_m;
        out->current_m = geo_distance_m(lat, lon, cur_lat, cur_lon);
        out->outcome = ENGINE_STAY;

        if (best < 0)
                out->reason = "no_eligible_site";
        else if (!strcmp(sites[best].id, current_id))
                out->reason = "already_nearest";
        else if (out->current_m - best_m <= policy->margin_m)
                out->reason = "within_margin";
        else {
                out->outcome = ENGINE_MOVE;
                out->reason = "closer";
        }
}
