/*
 * Warm replicas, placed and kept current. Every --replica-pass-s one
 * scheduler (a PostgreSQL advisory lock picks it) looks at every snapshot
 * whose priority level's protection policy asks for replicas, or that has
 * some: it releases the designated replicas that are no longer eligible or
 * no longer wanted, designates new ones where fewer are kept than wanted,
 * and queues a `replicate` transfer towards each replica whose copy is
 * missing or behind the snapshot's newest version.
 *
 * Eligible for a replica: an active datacenter other than the active site
 * and the target of a move in flight, inside the snapshot's zones, outside
 * the active site's failure domain (when both have one), with room for the
 * snapshot unless it already holds a copy of it. Among the eligible, sites
 * that already hold a copy (the replicas designated, the old active site,
 * any cached copy) come first, then the rest, each nearest first to the
 * user's last known location (the active site's when none is known): a
 * replica stays where it is while it stays eligible, the site a snapshot
 * just left becomes its replica for the price of a delta, and a fresh copy
 * goes as near the user as it can.
 *
 * Only the protection replicas (migration 029): a pre-staged copy for a
 * trip is prestage.c's, neither counted nor released here.
 *
 * Last, it marks the replicas whose lag (view replica_lag) first went
 * beyond their level's RPO, each with an io.homing.replica.rpo_breached
 * event, and unmarks those back within it.
 *
 * The pass reads the world the last catalog reload built; its choices are
 * pure functions of what it read, so a pass that fails is simply run again.
 *
 * Incremental. A snapshot's choice is a function of its own rows (level,
 * size, zones, version; active placement and cached copies; the move in
 * flight; its replicas and their copies), of the catalog (sites' status,
 * place, capacity, zones, failure domains; the protection policies), of
 * the user's location, and of the free room of sites without a copy. After
 * a pass has applied it, planning the snapshot again from the same inputs
 * changes nothing (the sites it designated are the holders it keeps). So a
 * pass plans only the snapshots whose inputs may have changed since the
 * last one began: rows stamped since then (migration 030 stamps
 * placements; failed replicates back five minutes more, the pause after
 * them), users whose devices reported and who moved as far as the
 * radius kept for the snapshot (reach.c: a move shorter than half the gap
 * between the farthest chosen holder and the nearest holder left out
 * overtakes none), and the snapshots planned with fewer sites than wanted
 * (the room they wait for is not watched). "Since" reaches back to the
 * start of the oldest transaction open when the last pass began, so a row
 * stamped before and committed after that pass read is still seen; and
 * 10 s at least, for the transactions of roles whose start PostgreSQL does
 * not show this one (the full pass is the net under a longer one). Every
 * snapshot is planned when the catalog's fingerprint changed (that pass
 * and the next: the world it plans with was loaded before), after a
 * failed pass, at the first pass and every ten minutes. The refreshes,
 * cancellations and RPO marks look at the same snapshots; the RPO marks
 * at every replica too once the earliest time one not looked at could go
 * beyond its RPO has come.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/log.h"
#include "geo/geo.h"
#include "scheduler/internal.h"
#include "scheduler/reach.h"
#include "scheduler/world.h"
#include "store/store.h"

#define MAX_REPLICAS 3 /* protection_policies.replicas, migration 020 */
#define MAX_HITS 16

/* Per snapshot: what it wants, where it is and what it holds. $1 the
 * snapshots to look at (NULL: all). */
static const char snapshots_sql[] =
        "SELECT s.id, pp.replicas, s.size_bytes, s.allowed_zones::text, a.datacenter_id,"
        "       loc.lat, loc.lon, mv.to_dc,"
        "       (SELECT string_agg(r.datacenter_id, ',') FROM replicas r"
        "         WHERE r.snapshot_id = s.id AND r.reason = 'protection'),"
        "       (SELECT string_agg(DISTINCT p.datacenter_id, ',') FROM placements p"
        "         WHERE p.snapshot_id = s.id AND NOT p.active AND p.evicted_at IS NULL)"
        " FROM snapshots s"
        " JOIN protection_policies pp ON pp.level = s.priority"
        " LEFT JOIN placements a ON a.snapshot_id = s.id AND a.active"
        " LEFT JOIN transfers mv ON mv.snapshot_id = s.id AND mv.kind = 'move'"
        "   AND mv.state IN ('queued', 'running')"
        " LEFT JOIN LATERAL (SELECT dl.lat, dl.lon FROM device_locations dl"
        "   WHERE dl.user_id = s.user_id ORDER BY dl.reported_at DESC LIMIT 1) loc ON true"
        " WHERE (pp.replicas > 0 OR EXISTS (SELECT 1 FROM replicas r WHERE r.snapshot_id = s.id"
        "   AND r.reason = 'protection'))"
        "   AND ($1::text[] IS NULL OR s.id = ANY ($1::text[]))"
        " ORDER BY s.id";

static const char domains_sql[] =
        "SELECT id, failure_domain FROM datacenters WHERE failure_domain IS NOT NULL";

/* $1 snapshots, $2 datacenters, $3 reasons (text arrays, in step); $4 the audit topic. */
static const char release_sql[] =
        "WITH x AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS x(s, d, why)),"
        " gone AS (DELETE FROM replicas r USING x"
        "   WHERE r.snapshot_id = x.s AND r.datacenter_id = x.d AND r.reason = 'protection'"
        "   RETURNING r.snapshot_id, r.datacenter_id, x.why)"
        " INSERT INTO outbox (topic, key, payload)"
        " SELECT $4, g.snapshot_id, homing_cloudevent("
        "   'replica-' || g.snapshot_id || '-' || g.datacenter_id || '-released-'"
        "     || (extract(epoch FROM now()) * 1000)::bigint,"
        "   '/homing/scheduler', 'io.homing.replica.released', now(), g.snapshot_id,"
        "   jsonb_build_object('snapshot_id', g.snapshot_id, 'datacenter_id', g.datacenter_id,"
        "     'reason', g.why))"
        " FROM gone g";

/* Replicate transfers towards sites that are no replica any more end
 * cancelled; $1 the snapshots looked at (NULL: all). */
static const char cancel_sql[] =
        "SELECT t.id, t.snapshot_id, t.to_dc, homing_transfer_ended(t.id, 'cancelled',"
        "  'the replica at ' || t.to_dc || ' was released')"
        " FROM transfers t"
        " WHERE t.kind = 'replicate' AND t.state IN ('queued', 'running')"
        "   AND NOT EXISTS (SELECT 1 FROM replicas r"
        "     WHERE r.snapshot_id = t.snapshot_id AND r.datacenter_id = t.to_dc)"
        "   AND ($1::text[] IS NULL OR t.snapshot_id = ANY ($1::text[]))";

/* The copy a new replica starts from: the newest verified one there, if any. A
 * site holding a pre-staged copy (prestage.c) keeps it as a protection one. */
static const char designate_sql[] =
        "WITH x AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS x(s, d, a)),"
        " made AS (INSERT INTO replicas (snapshot_id, datacenter_id, placement_id)"
        "   SELECT x.s, x.d, (SELECT p.id FROM placements p"
        "     WHERE p.snapshot_id = x.s AND p.datacenter_id = x.d AND NOT p.active"
        "       AND p.evicted_at IS NULL"
        "       AND NOT EXISTS (SELECT 1 FROM replicas o WHERE o.placement_id = p.id)"
        "     ORDER BY p.version DESC, p.id DESC LIMIT 1)"
        "   FROM x ON CONFLICT (snapshot_id, datacenter_id) DO UPDATE"
        "   SET reason = 'protection', trip_id = NULL, ends_at = NULL, updated_at = now()"
        "   WHERE replicas.reason = 'prestage'"
        "   RETURNING snapshot_id, datacenter_id, placement_id)"
        " INSERT INTO outbox (topic, key, payload)"
        " SELECT $4, m.snapshot_id, homing_cloudevent("
        "   'replica-' || m.snapshot_id || '-' || m.datacenter_id || '-designated-'"
        "     || (extract(epoch FROM now()) * 1000)::bigint,"
        "   '/homing/scheduler', 'io.homing.replica.designated', now(), m.snapshot_id,"
        "   jsonb_build_object('snapshot_id', m.snapshot_id, 'datacenter_id', m.datacenter_id,"
        "     'active_dc', x.a, 'has_copy', m.placement_id IS NOT NULL))"
        " FROM made m JOIN x ON x.s = m.snapshot_id AND x.d = m.datacenter_id";

/*
 * A replicate transfer for every replica whose copy is missing or older
 * than the snapshot's version (migration 031 says when one is held back),
 * its bytes reserved and its job on the transfers topic, as a move's. $1
 * the transfers topic, $2 the snapshots looked at (NULL: all).
 */
static const char refresh_sql[] =
        "SELECT count(*) FROM homing_queue_replica_refreshes('protection', $1, $2)";

/*
 * A replica whose lag first exceeds its level's RPO is marked breached,
 * with an audit event; one back within it is unmarked (a refresh that
 * succeeded unmarks it too). $1 the audit topic, $2 the snapshots looked at
 * (NULL: all).
 */
static const char rpo_sql[] =
        "WITH cleared AS (UPDATE replicas r SET rpo_breached_at = NULL FROM replica_lag l"
        "   WHERE l.snapshot_id = r.snapshot_id AND l.datacenter_id = r.datacenter_id"
        "     AND r.rpo_breached_at IS NOT NULL AND (l.rpo_s IS NULL OR l.lag_s <= l.rpo_s)"
        "     AND ($2::text[] IS NULL OR r.snapshot_id = ANY ($2::text[]))"
        "   RETURNING r.snapshot_id),"
        " breached AS (UPDATE replicas r SET rpo_breached_at = now() FROM replica_lag l"
        "   WHERE l.snapshot_id = r.snapshot_id AND l.datacenter_id = r.datacenter_id"
        "     AND r.rpo_breached_at IS NULL AND l.lag_s > l.rpo_s"
        "     AND ($2::text[] IS NULL OR r.snapshot_id = ANY ($2::text[]))"
        "   RETURNING r.snapshot_id, r.datacenter_id, l.priority, l.version, l.newest_version,"
        "     l.lag_s, l.bytes_behind, l.rpo_s)"
        " INSERT INTO outbox (topic, key, payload)"
        " SELECT $1, b.snapshot_id, homing_cloudevent("
        "   'replica-' || b.snapshot_id || '-' || b.datacenter_id || '-rpo-breached-'"
        "     || (extract(epoch FROM now()) * 1000)::bigint,"
        "   '/homing/scheduler', 'io.homing.replica.rpo_breached', now(), b.snapshot_id,"
        "   jsonb_build_object('snapshot_id', b.snapshot_id, 'datacenter_id', b.datacenter_id,"
        "     'priority', b.priority, 'version', b.version, 'newest_version', b.newest_version,"
        "     'lag_s', round(b.lag_s::numeric, 3), 'bytes_behind', b.bytes_behind,"
        "     'rpo_s', b.rpo_s))"
        " FROM breached b RETURNING key, payload->'data'->>'datacenter_id',"
        "   payload->'data'->>'lag_s', payload->'data'->>'rpo_s'";

/* A site's failure domain, by site index; NULL: its own. */
struct domains {
        const char **of;
        size_t n;
};

/* What a candidate must not be, for one snapshot. */
struct exclusion {
        const struct world *world;
        const struct domains *domains;
        uint32_t active, moving_to;
        const uint32_t *chosen;
        size_t n_chosen;
};

static bool same_domain(const struct domains *d, uint32_t a, uint32_t b) {
        const char *x = a < d->n ? d->of[a] : NULL, *y = b < d->n ? d->of[b] : NULL;
        return x && y && !strcmp(x, y);
}

static bool excluded(const struct exclusion *x, uint32_t site) {
        if (site == x->active || site == x->moving_to)
                return true;
        if (x->active != ENGINE_NO_SITE && same_domain(x->domains, x->active, site))
                return true;
        for (size_t i = 0; i < x->n_chosen; i++)
                if (x->chosen[i] == site)
                        return true;
        return false;
}

static bool accept_site(void *userdata, const geo_index *index, size_t site) {
        (void)index;
        return !excluded(userdata, (uint32_t)site);
}

/* A site that holds (or is about to hold) a copy: active, in zones, not excluded. */
static bool holder_eligible(const struct exclusion *x, uint16_t zones, uint32_t site) {
        const struct engine_context *ctx = world_context(x->world);
        geo_site info;

        return site != ENGINE_NO_SITE && geo_index_site(ctx->index, site, &info) == 0 &&
               info.status == GEO_SITE_ACTIVE && engine_site_allowed(ctx, zones, site) &&
               !excluded(x, site);
}

struct plan {
        struct store_array rel_snap, rel_dc, rel_why;
        struct store_array new_snap, new_dc, new_active;
        size_t released, designated;
        struct replica_reach *reach;  /* where each planned snapshot's choice stands */
        struct store_array unsettled; /* planned with fewer sites than wanted */
        size_t n_unsettled;
        int error; /* the first failure to remember */
};

/* Remembers how far the user may move before the snapshot's choice could differ. */
static void remember(struct plan *p, const char *id, double lat, double lon, double radius_m) {
        int r = replica_reach_put(p->reach, id, lat, lon, radius_m);
        if (r < 0 && p->error == 0)
                p->error = r;
}

static bool listed(const char *list, const char *id) {
        size_t n = strlen(id);
        for (const char *p = list; p && *p;) {
                size_t len = strcspn(p, ",");
                if (len == n && !memcmp(p, id, n))
                        return true;
                p += len;
                if (*p == ',')
                        p++;
        }
        return false;
}

/* Sites of a comma-separated list (ids have no commas), into out[0..max). */
static size_t sites_of(const struct world *w, const char *list, uint32_t *out, size_t max) {
        char id[128];
        size_t n = 0;

        for (const char *p = list; p && *p && n < max;) {
                size_t len = strcspn(p, ",");
                if (len < sizeof(id)) {
                        memcpy(id, p, len);
                        id[len] = '\0';
                        out[n++] = world_site(w, id);
                }
                p += len;
                if (*p == ',')
                        p++;
        }
        return n;
}

static double distance_from(const struct world *w, uint32_t site, double lat, double lon) {
        geo_site info;
        if (geo_index_site(world_context(w)->index, site, &info) < 0)
                return INFINITY;
        return geo_distance_m(lat, lon, info.lat, info.lon);
}

/* Decides for the snapshot of row i: its releases and designations into *p. */
static void plan_snapshot(struct upkeep *u, const struct domains *domains,
                          const struct store_result *res, size_t i, struct plan *p) {
        const struct world *w = u->world;
        const struct engine_context *ctx = world_context(w);
        const char *id = store_text(res, i, 0), *designated = store_text(res, i, 8),
                   *copies = store_text(res, i, 9);
        long wanted = (long)store_int(res, i, 1);
        uint64_t size = (uint64_t)store_int(res, i, 2);
        uint16_t zones = world_zone_set(u->world, store_text(res, i, 3));
        uint32_t active = world_site(w, store_text(res, i, 4));
        uint32_t kept[MAX_HITS], holders[2 * MAX_HITS], chosen[MAX_REPLICAS];
        size_t n_kept, n_holders, n_chosen = 0;
        struct exclusion x = { w, domains, active, world_site(w, store_text(res, i, 7)), NULL, 0 };
        double lat, lon, chosen_m[MAX_REPLICAS], left_m[2 * MAX_HITS];
        size_t n_left = 0;
        geo_site here;

        /* Where the user was last seen; else where the snapshot is (a first
         * location is a move from there). */
        if (store_text(res, i, 5)) {
                lat = store_double(res, i, 5);
                lon = store_double(res, i, 6);
                remember(p, id, lat, lon, 0);
        } else if (active != ENGINE_NO_SITE && geo_index_site(ctx->index, active, &here) == 0) {
                lat = here.lat;
                lon = here.lon;
                remember(p, id, lat, lon, 0);
        } else {
                lat = lon = NAN;
                remember(p, id, NAN, NAN, 0);
        }
        if (wanted > MAX_REPLICAS)
                wanted = MAX_REPLICAS;
        /* Without an active site (or a zone set it can keep) nothing is known to
         * choose by, and replicas are what a snapshot without an active copy
         * has left: they stay as they are. */
        if (active == ENGINE_NO_SITE || zones == UINT16_MAX || !geo_point_valid(lat, lon))
                return;

        /* Holders of a copy, designated ones first: the candidates that cost a delta. */
        n_kept = sites_of(w, designated, kept, MAX_HITS);
        n_holders = sites_of(w, designated, holders, MAX_HITS);
        n_holders += sites_of(w, copies, holders + n_holders, MAX_HITS);
        /* Nearest first, among the holders (a few: insertion sort). */
        for (size_t a = 1; a < n_holders && wanted > 0; a++)
                for (size_t b = a; b > 0 && distance_from(w, holders[b], lat, lon) <
                                                    distance_from(w, holders[b - 1], lat, lon);
                     b--) {
                        uint32_t t = holders[b];
                        holders[b] = holders[b - 1];
                        holders[b - 1] = t;
                }
        for (size_t h = 0; h < n_holders && n_chosen < (size_t)wanted; h++) {
                x.chosen = chosen;
                x.n_chosen = n_chosen;
                if (holder_eligible(&x, zones, holders[h]))
                        chosen[n_chosen++] = holders[h];
        }
        /* The rest from the nearest eligible sites with room. */
        if (n_chosen < (size_t)wanted) {
                const struct engine_zone_set *set = &ctx->zone_sets[zones];
                geo_hit hits[MAX_REPLICAS];
                geo_filter f = {
                        GEO_STATUS_BIT(GEO_SITE_ACTIVE), size, set->ids, set->n, accept_site, &x
                };
                int n;
                x.chosen = chosen;
                x.n_chosen = n_chosen;
                n = geo_index_nearest(ctx->index, lat, lon, &f, hits, (size_t)wanted - n_chosen);
                for (int h = 0; h < n; h++)
                        chosen[n_chosen++] = (uint32_t)hits[h].site;
        }

        /* Designated and not chosen: released, with why. */
        for (size_t k = 0; k < n_kept; k++) {
                bool still = false;
                for (size_t c = 0; c < n_chosen && !still; c++)
                        still = chosen[c] == kept[k];
                if (still)
                        continue;
                x.chosen = NULL;
                x.n_chosen = 0;
                store_array_add_text(&p->rel_snap, id);
                store_array_add_text(&p->rel_dc,
                                     kept[k] == ENGINE_NO_SITE ? NULL : world_site_id(w, kept[k]));
                store_array_add_text(&p->rel_why, holder_eligible(&x, zones, kept[k])
                                                          ? "not_wanted"
                                                          : "not_eligible");
                p->released++;
        }
        /* Chosen and not designated: designated. */
        for (size_t c = 0; c < n_chosen; c++) {
                const char *dc = world_site_id(w, chosen[c]);
                if (!dc || listed(designated, dc))
                        continue;
                store_array_add_text(&p->new_snap, id);
                store_array_add_text(&p->new_dc, dc);
                store_array_add_text(&p->new_active, world_site_id(w, active));
                p->designated++;
        }

        /* What would change the choice next pass, once these are applied: too
         * few sites, the room of sites without a copy (it is not watched), so
         * every pass plans it again; else the designated are the nearest
         * eligible holders, and a move overtaking one with a holder left out
         * is what changes them (none left out when the nearest sites filled
         * them: every eligible holder was taken first). */
        if (n_chosen < (size_t)wanted) {
                store_array_add_text(&p->unsettled, id);
                p->n_unsettled++;
                return;
        }
        x.chosen = NULL;
        x.n_chosen = 0;
        for (size_t h = 0; h < n_holders; h++) {
                bool taken = false;
                for (size_t c = 0; c < n_chosen && !taken; c++)
                        taken = chosen[c] == holders[h];
                if (!taken && holder_eligible(&x, zones, holders[h]))
                        left_m[n_left++] = distance_from(w, holders[h], lat, lon);
        }
        for (size_t c = 0; c < n_chosen; c++)
                chosen_m[c] = distance_from(w, chosen[c], lat, lon);
        remember(p, id, lat, lon, replica_reach_radius(chosen_m, n_chosen, left_m, n_left));
}

static int load_domains(struct upkeep *u, struct domains *d, struct store_result **res) {
        int r = store_exec(u->db, domains_sql, 0, NULL, res);

        if (r < 0)
                return r;
        d->n = geo_index_slots(world_context(u->world)->index);
        d->of = calloc(d->n + 1, sizeof(*d->of));
        if (!d->of)
                return -ENOMEM;
        for (size_t i = 0; i < store_rows(*res); i++) {
                uint32_t site = world_site(u->world, store_text(*res, i, 0));
                if (site < d->n)
                        d->of[site] = store_text(*res, i, 1);
        }
        return 0;
}

/* What the incremental passes compare with; see the top of the file. */
struct replica_memory {
        struct replica_reach *reach;
        char **unsettled; /* planned with too few sites: planned every pass */
        size_t n_unsettled;
        char *since;        /* PostgreSQL time: changes from then on are looked at */
        char *catalog;      /* the catalog's fingerprint at the last pass */
        bool full_again;    /* the next pass looks at every snapshot */
        int64_t full_at_ms; /* monotonic: the last full pass */
        int64_t rpo_due_us; /* PostgreSQL time: the earliest a replica not looked at may breach */
};

static void forget_unsettled(struct replica_memory *m) {
        m->unsettled = store_array_items_free(m->unsettled, m->n_unsettled);
        m->n_unsettled = 0;
}

struct replica_memory *scheduler_replica_memory_free(struct replica_memory *m) {
        if (!m)
                return NULL;
        m->reach = replica_reach_free(m->reach);
        forget_unsettled(m);
        free(m->since);
        free(m->catalog);
        free(m);
        return NULL;
}

/* The pass's start: its `since` for the next pass, PostgreSQL's now in µs,
 * the catalog's fingerprint. */
static const char start_sql[] =
        "SELECT least(now() - interval '10 seconds', (SELECT min(xact_start) FROM pg_stat_activity"
        "   WHERE backend_type = 'client backend'))::text,"
        " (extract(epoch FROM now()) * 1000000)::int8,"
        " md5(concat((SELECT string_agg(concat_ws('|', id, lat, lon, status, capacity_bytes,"
        "      failure_domain), ',' ORDER BY id) FROM datacenters), ';',"
        "   (SELECT string_agg(concat_ws('|', id, md5(geojson::text)), ',' ORDER BY id)"
        "      FROM zones),"
        "   ';', (SELECT string_agg(concat_ws('|', level, replicas, rpo_s), ',' ORDER BY level)"
        "      FROM protection_policies)))";

/*
 * The snapshots whose own rows changed since $1: the snapshot (made, a
 * version, its zones, level or size), a placement (made, activated,
 * deactivated, evicted), a transfer (queued, started, ended; a replicate
 * that failed or was cancelled back five minutes more: the pause after it
 * ends), a replica (designated, its copy landed); and the snapshots of a
 * user whose device changed hands or was deleted (migration 032).
 */
static const char changed_sql[] =
        "SELECT id FROM snapshots"
        "   WHERE updated_at >= $1::timestamptz OR created_at >= $1::timestamptz"
        " UNION SELECT snapshot_id FROM placements WHERE updated_at >= $1::timestamptz"
        "   OR created_at >= $1::timestamptz"
        " UNION SELECT snapshot_id FROM transfers"
        "   WHERE updated_at >= $1::timestamptz - interval '5 minutes'"
        "     AND (updated_at >= $1::timestamptz OR (kind = 'replicate'"
        "       AND state IN ('failed', 'cancelled')"
        "       AND finished_at >= $1::timestamptz - interval '5 minutes'))"
        " UNION SELECT snapshot_id FROM replicas WHERE updated_at >= $1::timestamptz"
        " UNION SELECT s.id FROM snapshots s JOIN device_user_changes c ON c.user_id = s.user_id"
        "   WHERE c.changed_at >= $1::timestamptz";

/* Of the snapshots $2 (those a move may change), the ones whose users'
 * devices reported since $1, with the user's location. */
static const char moved_sql[] =
        "SELECT s.id, loc.lat, loc.lon"
        " FROM snapshots s"
        " CROSS JOIN LATERAL (SELECT dl.lat, dl.lon FROM device_locations dl"
        "   WHERE dl.user_id = s.user_id ORDER BY dl.reported_at DESC LIMIT 1) loc"
        " WHERE s.id = ANY ($2::text[]) AND EXISTS (SELECT 1 FROM device_locations d"
        "   WHERE d.user_id = s.user_id AND d.updated_at >= $1::timestamptz)";

/* The earliest time (µs) one of the replicas of $1 (NULL: all) not marked
 * breached goes beyond its RPO if nothing changes; NULL: none will. */
static const char rpo_due_sql[] =
        "SELECT (extract(epoch FROM min(now() + make_interval(secs => l.rpo_s - l.lag_s)))"
        "   * 1000000)::int8"
        " FROM replica_lag l"
        " WHERE l.rpo_breached_at IS NULL AND l.rpo_s IS NOT NULL"
        "   AND coalesce(l.version, 0) < l.newest_version"
        "   AND ($1::text[] IS NULL OR l.snapshot_id = ANY ($1::text[]))";

#define FULL_PASS_MS (10 * 60 * 1000) /* the safety net: every snapshot, this often */
#define ANALYZE_AFTER 1000            /* rows a pass added that make the statistics stale */

static void add_watched(void *userdata, const char *snapshot) {
        store_array_add_text(userdata, snapshot);
}

/* The snapshots to look at since m->since into *out: changed, moved, unsettled. */
static int gather(struct upkeep *u, struct replica_memory *m, struct store_array *out, size_t *n) {
        struct store_result *changed = NULL, *moved = NULL;
        struct store_array watched;
        const char *since[2] = { m->since, NULL };
        size_t n_watched = 0;
        int r = store_exec(u->db, changed_sql, 1, since, &changed);

        /* Every snapshot that replicas concern was planned since the last full
         * pass (or changed since, and is looked at above): the ones whose
         * reach is infinite no move changes, and their users are not read. */
        store_array_init(&watched);
        replica_reach_each_watched(m->reach, add_watched, &watched);
        n_watched = watched.n;
        since[1] = store_array_text(&watched);
        if (r >= 0 && !since[1])
                r = -ENOMEM;
        if (r >= 0 && n_watched > 0)
                r = store_exec(u->db, moved_sql, 2, since, &moved);
        store_array_fini(&watched);
        *n = 0;
        for (size_t i = 0; r >= 0 && i < store_rows(changed); i++, (*n)++)
                store_array_add_text(out, store_text(changed, i, 0));
        for (size_t i = 0; r >= 0 && moved && i < store_rows(moved); i++) {
                double lat = store_double(moved, i, 1), lon = store_double(moved, i, 2);
                if (replica_reach_moved(m->reach, store_text(moved, i, 0), lat, lon)) {
                        store_array_add_text(out, store_text(moved, i, 0));
                        (*n)++;
                }
        }
        for (size_t i = 0; r >= 0 && i < m->n_unsettled; i++, (*n)++)
                store_array_add_text(out, m->unsettled[i]);
        store_result_free(changed);
        store_result_free(moved);
        return r;
}

/* Keeps what the committed pass leaves for the next one. */
static int settle(struct replica_memory *m, const struct plan *p, const char *since,
                  const char *catalog) {
        char **items = NULL;
        size_t n = 0;
        const char *text = store_array_text((struct store_array *)&p->unsettled);
        char *s = strdup(since), *c = strdup(catalog);

        if (!s || !c || !text || store_array_parse(text, &items, &n) < 0) {
                free(s);
                free(c);
                return -ENOMEM;
        }
        forget_unsettled(m);
        m->unsettled = items;
        m->n_unsettled = n;
        free(m->since);
        m->since = s;
        free(m->catalog);
        m->catalog = c;
        return 0;
}

void scheduler_keep_replicas(struct upkeep *u) {
        struct store_result *res = NULL, *lock = NULL, *dom = NULL, *cancelled = NULL,
                            *queued = NULL, *breached = NULL, *start = NULL, *due = NULL;
        struct domains domains = { NULL, 0 };
        struct replica_memory *m = u->replicas;
        struct store_array look;
        struct plan p;
        const char *topic[2] = { u->cfg->topic_transfers, NULL };
        const char *only[1] = { NULL }; /* NULL: every snapshot */
        const char *since = NULL, *catalog = NULL;
        bool full = true, rpo_full = true;
        size_t n_look = 0;
        int64_t now_us = 0, t0 = clock_mono_ms();
        int r;

        memset(&p, 0, sizeof(p));
        store_array_init(&look);
        store_array_init(&p.rel_snap);
        store_array_init(&p.rel_dc);
        store_array_init(&p.rel_why);
        store_array_init(&p.new_snap);
        store_array_init(&p.new_dc);
        store_array_init(&p.new_active);
        store_array_init(&p.unsettled);
        if (!m) {
                m = u->replicas = calloc(1, sizeof(*m));
                r = m ? replica_reach_new(&m->reach) : -ENOMEM;
                if (r < 0) {
                        u->replicas = scheduler_replica_memory_free(m);
                        log_error("scheduler", "the replica pass: %s", strerror(-r));
                        return;
                }
        }
        r = store_begin(u->db);
        if (r < 0)
                goto out;
        /* One scheduler at a time; the others skip this pass. */
        r = store_exec(u->db, "SELECT pg_try_advisory_xact_lock(hashtext('homing.replicas'))", 0,
                       NULL, &lock);
        if (r < 0 || !store_bool(lock, 0, 0))
                goto out;
        r = store_exec(u->db, start_sql, 0, NULL, &start);
        if (r < 0)
                goto fail;
        since = store_text(start, 0, 0);
        now_us = store_int(start, 0, 1);
        catalog = store_text(start, 0, 2);
        /* The world planned with was read before this pass; when the catalog
         * changed, the next pass looks at everything again with it reloaded. */
        full = !m->since || !m->catalog || m->full_again || strcmp(m->catalog, catalog) != 0 ||
               t0 - m->full_at_ms >= FULL_PASS_MS;
        m->full_again = m->catalog && strcmp(m->catalog, catalog) != 0;
        if (full) {
                replica_reach_clear(m->reach);
        } else {
                r = gather(u, m, &look, &n_look);
                only[0] = store_array_text(&look);
                if (r >= 0 && !only[0])
                        r = -ENOMEM;
        }
        rpo_full = full || now_us >= m->rpo_due_us;
        p.reach = m->reach;
        if (r >= 0)
                r = load_domains(u, &domains, &dom);
        if (r >= 0)
                r = store_exec(u->db, snapshots_sql, 1, only, &res);
        for (size_t i = 0; r >= 0 && i < store_rows(res); i++)
                plan_snapshot(u, &domains, res, i, &p);
        if (r >= 0 && p.error < 0)
                r = p.error;
        if (r >= 0 && p.released) {
                const char *params[4] = { store_array_text(&p.rel_snap),
                                          store_array_text(&p.rel_dc), store_array_text(&p.rel_why),
                                          u->cfg->topic_audit };
                r = params[0] && params[1] && params[2]
                            ? store_exec(u->db, release_sql, 4, params, NULL)
                            : -ENOMEM;
        }
        if (r >= 0)
                r = store_exec(u->db, cancel_sql, 1, only, &cancelled);
        if (r >= 0 && p.designated) {
                const char *params[4] = { store_array_text(&p.new_snap),
                                          store_array_text(&p.new_dc),
                                          store_array_text(&p.new_active), u->cfg->topic_audit };
                r = params[0] && params[1] && params[2]
                            ? store_exec(u->db, designate_sql, 4, params, NULL)
                            : -ENOMEM;
        }
        topic[1] = only[0];
        if (r >= 0)
                r = store_exec(u->db, refresh_sql, 2, topic, &queued);
        if (r >= 0) {
                const char *audit[2] = { u->cfg->topic_audit, rpo_full ? NULL : only[0] };
                r = store_exec(u->db, rpo_sql, 2, audit, &breached);
        }
        if (r >= 0) {
                const char *which[1] = { rpo_full ? NULL : only[0] };
                r = store_exec(u->db, rpo_due_sql, 1, which, &due);
        }
        if (r >= 0) {
                /* The notes of devices that changed hands before what this
                 * pass covers (all of them, or since the last pass) are done
                 * with: an earlier pass, or this one, planned their users. */
                const char *seen[1] = { full ? since : m->since };
                r = store_exec(u->db,
                               "DELETE FROM device_user_changes WHERE changed_at < $1::timestamptz",
                               1, seen, NULL);
        }
        if (r >= 0)
                r = store_commit(u->db);
fail:
        if (r < 0) {
                log_error("scheduler", "the replica pass failed (%s); next pass tries again",
                          store_error(u->db));
                m->full_again = true;
                goto out;
        }
        /* A replica not looked at breaches no sooner than it would have last time. */
        if (store_rows(due) && store_text(due, 0, 0)) {
                int64_t at = store_int(due, 0, 0);
                m->rpo_due_us = rpo_full || at < m->rpo_due_us ? at : m->rpo_due_us;
        } else if (rpo_full) {
                m->rpo_due_us = INT64_MAX;
        }
        if (settle(m, &p, since, catalog) < 0)
                m->full_again = true;
        if (full)
                m->full_at_ms = t0;
        for (size_t i = 0; i < store_rows(cancelled); i++)
                log_info("scheduler", "replicate transfer %s of %s cancelled: %s is no replica",
                         store_text(cancelled, i, 0), store_text(cancelled, i, 1),
                         store_text(cancelled, i, 2));
        for (size_t i = 0; i < store_rows(breached); i++)
                log_warn("scheduler",
                         "the replica of %s at %s is %s s behind: beyond its RPO of %s s",
                         store_text(breached, i, 0), store_text(breached, i, 1),
                         store_text(breached, i, 2), store_text(breached, i, 3));
        if (p.released || p.designated || store_int(queued, 0, 0) > 0)
                log_info("scheduler",
                         "replicas: %zu designated, %zu released, %lld replicate transfers "
                         "queued",
                         p.designated, p.released, (long long)store_int(queued, 0, 0));
        log_debug("scheduler", "replica pass (%s): %zu snapshots planned of %zu looked at, %lld ms",
                  full ? "full" : "incremental", store_rows(res), full ? store_rows(res) : n_look,
                  (long long)(clock_mono_ms() - t0));
        /* Thousands of rows just added: the next pass's plans need them counted. */
        if (p.designated + (size_t)store_int(queued, 0, 0) >= ANALYZE_AFTER &&
            store_run(u->db, "ANALYZE replicas, transfers") < 0)
                log_warn("scheduler", "ANALYZE after the replica pass failed (%s)",
                         store_error(u->db));
out:
        if (r < 0 || !lock || !store_bool(lock, 0, 0))
                store_rollback(u->db);
        free(domains.of);
        store_result_free(dom);
        store_result_free(lock);
        store_result_free(start);
        store_result_free(due);
        store_result_free(res);
        store_result_free(cancelled);
        store_result_free(queued);
        store_result_free(breached);
        store_array_fini(&look);
        store_array_fini(&p.rel_snap);
        store_array_fini(&p.rel_dc);
        store_array_fini(&p.rel_why);
        store_array_fini(&p.new_snap);
        store_array_fini(&p.new_dc);
        store_array_fini(&p.new_active);
        store_array_fini(&p.unsettled);
}
