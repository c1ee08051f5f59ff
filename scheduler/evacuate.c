/*
 * Planned evacuations: the plan, and its execution. The plan names for
 * every snapshot active at the evacuated datacenter where it goes: its
 * designated replica's site when that site is active (the copy is there,
 * only a delta travels), else the nearest active datacenter to its user's
 * last known location (the source's when none is known) inside its zones
 * with room for it, counting what the plan already sends there. A snapshot
 * with no such site is blocked, and why: capacity (sites in its zones exist
 * but none has room), zones (sites exist, none in its zones) or
 * no-eligible-site. The plan's bytes are priced in SQL from the copies the
 * targets hold (homing_evacuation_price, migration 022).
 *
 * Execution is homing_evacuation_step, run about every second by one
 * scheduler (an advisory lock picks it, as for replicas): the switchover of
 * each VM, level by level, capacity never exceeded.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/config.h"
#include "base/log.h"
#include "geo/geo.h"
#include "scheduler/internal.h"
#include "scheduler/scheduler.h"
#include "scheduler/world.h"
#include "store/store.h"

/* Per snapshot active at the source: what the plan needs to choose. */
static const char snapshots_sql[] =
        "SELECT s.id, s.priority, s.size_bytes, s.allowed_zones::text, s.version, loc.lat, loc.lon,"
        "  (SELECT r.datacenter_id FROM replicas r JOIN datacenters d ON d.id = r.datacenter_id"
        "    WHERE r.snapshot_id = s.id AND d.status = 'active' AND d.id <> e.datacenter_id"
        "    ORDER BY r.reason <> 'protection', r.placement_id IS NULL, r.datacenter_id LIMIT 1)"
        " FROM evacuations e"
        " JOIN placements p ON p.datacenter_id = e.datacenter_id AND p.active"
        " JOIN snapshots s ON s.id = p.snapshot_id"
        " LEFT JOIN LATERAL (SELECT dl.lat, dl.lon FROM device_locations dl"
        "   WHERE dl.user_id = s.user_id ORDER BY dl.reported_at DESC LIMIT 1) loc ON true"
        " WHERE e.id = $1::bigint"
        " ORDER BY s.priority, s.id";

/* $1 the evacuation; the rest text arrays in step. */
static const char items_sql[] =
        "INSERT INTO evacuation_items (evacuation_id, snapshot_id, priority, target_dc,"
        "  target_kind, blocked_reason, version, distance_m, state)"
        " SELECT $1::bigint, x.s, x.p::int, x.t, x.k, x.b, x.v::bigint, x.m::float8,"
        "   CASE WHEN x.b IS NULL THEN 'pending' ELSE 'blocked' END"
        " FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"
        "   $8::text[]) AS x(s, p, t, k, b, v, m)";

struct planner {
        const struct world *w;
        uint32_t source;
        uint64_t need;
        uint64_t *planned; /* bytes this plan sends to each site */
        size_t n_sites;
        bool count_planned;
};

static bool accept_site(void *userdata, const geo_index *index, size_t site) {
        const struct planner *p = userdata;
        geo_site info;

        if (site == p->source)
                return false;
        if (!p->count_planned || site >= p->n_sites)
                return true;
        return geo_index_site(index, site, &info) == 0 &&
               info.free_bytes >= p->planned[site] + p->need;
}

/* The nearest eligible site (or ENGINE_NO_SITE), and its distance. */
static uint32_t nearest(struct planner *p, double lat, double lon, uint16_t zones, bool room,
                        bool in_zones, double *distance_m) {
        const struct engine_context *ctx = world_context(p->w);
        const struct engine_zone_set *set =
                zones < ctx->n_zone_sets ? &ctx->zone_sets[zones] : &ctx->zone_sets[0];
        geo_filter f = { GEO_STATUS_BIT(GEO_SITE_ACTIVE), 0,           in_zones ? set->ids : NULL,
                         in_zones ? set->n : 0,           accept_site, p };
        geo_hit hit;

        p->count_planned = room;
        if (geo_index_nearest(ctx->index, lat, lon, &f, &hit, 1) != 1)
                return ENGINE_NO_SITE;
        *distance_m = hit.distance_m;
        return (uint32_t)hit.site;
}

int scheduler_evacuation_plan(const struct config *cfg, struct store *db,
                              const char *evacuation_id) {
        struct store_result *res = NULL, *src = NULL;
        struct store_array a[7];
        struct world *w = NULL;
        struct planner p = { 0 };
        geo_site here;
        int r;

        (void)cfg;
        for (size_t k = 0; k < 7; k++)
                store_array_init(&a[k]);
        r = world_new(&w);
        if (r == 0)
                r = world_load(w, db);
        if (r == 0) {
                const char *params[1] = { evacuation_id };
                r = store_exec(db, "SELECT datacenter_id FROM evacuations WHERE id = $1::bigint", 1,
                               params, &src);
                if (r >= 0 && store_rows(src) != 1)
                        r = -ENOENT;
                if (r >= 0)
                        r = store_exec(db, snapshots_sql, 1, params, &res);
        }
        if (r < 0)
                goto out;
        p.w = w;
        p.source = world_site(w, store_text(src, 0, 0));
        p.n_sites = geo_index_slots(world_context(w)->index);
        p.planned = calloc(p.n_sites + 1, sizeof(*p.planned));
        if (!p.planned) {
                r = -ENOMEM;
                goto out;
        }
        if (geo_index_site(world_context(w)->index, p.source, &here) < 0) {
                r = -ENOENT;
                goto out;
        }

        for (size_t i = 0; i < store_rows(res); i++) {
                const char *replica = store_text(res, i, 7), *target = NULL, *kind = NULL,
                           *blocked = NULL;
                uint16_t zones = world_zone_set(w, store_text(res, i, 3));
                double lat = here.lat, lon = here.lon, distance = NAN;
                char distance_text[32] = "";

                if (store_text(res, i, 5)) {
                        lat = store_double(res, i, 5);
                        lon = store_double(res, i, 6);
                }
                p.need = (uint64_t)store_int(res, i, 2);
                if (replica) {
                        geo_site info;
                        target = replica;
                        kind = "replica";
                        if (geo_index_site(world_context(w)->index, world_site(w, replica),
                                           &info) == 0)
                                distance = geo_distance_m(lat, lon, info.lat, info.lon);
                } else if (zones != UINT16_MAX) {
                        uint32_t site = nearest(&p, lat, lon, zones, true, true, &distance);
                        if (site != ENGINE_NO_SITE) {
                                target = world_site_id(w, site);
                                kind = "nearest";
                                p.planned[site] += p.need;
                        } else if (nearest(&p, lat, lon, zones, false, true, &distance) !=
                                   ENGINE_NO_SITE) {
                                blocked = "capacity";
                        } else if (nearest(&p, lat, lon, zones, false, false, &distance) !=
                                   ENGINE_NO_SITE) {
                                blocked = "zones";
                        } else {
                                blocked = "no-eligible-site";
                        }
                        if (blocked)
                                distance = NAN;
                } else {
                        blocked = "zones"; /* a zone set the world could not keep */
                }
                if (isfinite(distance))
                        snprintf(distance_text, sizeof(distance_text), "%.3f", distance);
                store_array_add_text(&a[0], store_text(res, i, 0));
                store_array_add_text(&a[1], store_text(res, i, 1));
                store_array_add_text(&a[2], target);
                store_array_add_text(&a[3], kind);
                store_array_add_text(&a[4], blocked);
                store_array_add_text(&a[5], store_text(res, i, 4));
                store_array_add_text(&a[6], distance_text[0] ? distance_text : NULL);
        }
        if (store_rows(res) > 0) {
                const char *params[8] = { evacuation_id };
                for (size_t k = 0; k < 7; k++)
                        if (!(params[k + 1] = store_array_text(&a[k])))
                                r = -ENOMEM;
                if (r >= 0)
                        r = store_exec(db, items_sql, 8, params, NULL);
                if (r >= 0)
                        r = store_exec(db, "SELECT homing_evacuation_price($1::bigint)", 1, params,
                                       NULL);
        }
out:
        if (r < 0 && r != -ENOENT)
                log_error("scheduler", "cannot plan evacuation %s: %s", evacuation_id,
                          store_error(db));
        free(p.planned);
        for (size_t k = 0; k < 7; k++)
                store_array_fini(&a[k]);
        store_result_free(res);
        store_result_free(src);
        world_free(w);
        return r;
}

void scheduler_run_evacuations(struct upkeep *u) {
        struct store_result *lock = NULL, *changed = NULL;
        const char *params[2] = { u->cfg->topic_transfers, u->cfg->topic_audit };
        int r = store_begin(u->db);

        if (r >= 0)
                r = store_exec(u->db,
                               "SELECT pg_try_advisory_xact_lock(hashtext('homing.evacuations'))",
                               0, NULL, &lock);
        if (r < 0 || !store_bool(lock, 0, 0))
                goto out;
        r = store_exec(u->db, "SELECT homing_evacuation_step($1, $2)", 2, params, &changed);
        if (r >= 0)
                r = store_commit(u->db);
        if (r < 0)
                log_error("scheduler", "the evacuation step failed (%s); the next one tries again",
                          store_error(u->db));
        else if (store_int(changed, 0, 0) > 0)
                log_info("scheduler", "evacuations: %lld switchover steps",
                         (long long)store_int(changed, 0, 0));
out:
        if (r < 0 || !lock || !store_bool(lock, 0, 0))
                store_rollback(u->db);
        store_result_free(lock);
        store_result_free(changed);
}
