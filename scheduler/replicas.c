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
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/log.h"
#include "geo/geo.h"
#include "scheduler/internal.h"
#include "scheduler/world.h"
#include "store/store.h"

#define MAX_REPLICAS 3 /* protection_policies.replicas, migration 020 */
#define MAX_HITS 16

/* Per snapshot: what it wants, where it is and what it holds. */
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
        " WHERE pp.replicas > 0 OR EXISTS (SELECT 1 FROM replicas r WHERE r.snapshot_id = s.id"
        "   AND r.reason = 'protection')"
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

/* Replicate transfers towards sites that are no replica any more end cancelled. */
static const char cancel_sql[] =
        "SELECT t.id, t.snapshot_id, t.to_dc, homing_transfer_ended(t.id, 'cancelled',"
        "  'the replica at ' || t.to_dc || ' was released')"
        " FROM transfers t"
        " WHERE t.kind = 'replicate' AND t.state IN ('queued', 'running')"
        "   AND NOT EXISTS (SELECT 1 FROM replicas r"
        "     WHERE r.snapshot_id = t.snapshot_id AND r.datacenter_id = t.to_dc)";

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
 * than the snapshot's version, unless one is open, or one to the same site
 * failed or was cancelled in the last five minutes (a site that cannot
 * take it is not asked every pass). Its bytes are reserved at the target
 * and its job goes to the transfers topic, as a move's.
 */
static const char refresh_sql[] =
        "WITH due AS ("
        "  SELECT r.snapshot_id, a.datacenter_id AS from_dc, r.datacenter_id AS to_dc,"
        "    s.template_id, s.priority, s.version, c.id IS NULL AS missing,"
        "    s.size_bytes + CASE WHEN x.present THEN 0 ELSE tpl.size_bytes END AS bytes,"
        "    x.present"
        "  FROM replicas r"
        "  JOIN snapshots s ON s.id = r.snapshot_id"
        "  JOIN templates tpl ON tpl.id = s.template_id"
        "  JOIN placements a ON a.snapshot_id = r.snapshot_id AND a.active"
        "  JOIN datacenters src ON src.id = a.datacenter_id AND src.status <> 'down'"
        "  JOIN datacenters dst ON dst.id = r.datacenter_id AND dst.status <> 'down'"
        "  LEFT JOIN placements c ON c.id = r.placement_id"
        "  CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM template_replicas tr"
        "    WHERE tr.template_id = s.template_id AND tr.datacenter_id = r.datacenter_id)"
        "    AS present) x"
        "  WHERE r.reason = 'protection'"
        "    AND (c.id IS NULL OR c.version < s.version) AND a.datacenter_id <> r.datacenter_id"
        "    AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.snapshot_id = r.snapshot_id"
        "      AND t.to_dc = r.datacenter_id AND t.kind = 'replicate'"
        "      AND (t.state IN ('queued', 'running') OR (t.state IN ('failed', 'cancelled')"
        "           AND t.finished_at > now() - interval '5 minutes')))),"
        " t AS ("
        "  INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id, template_present,"
        "    priority, reason, idempotency_key, bytes_total, kind, version)"
        "  SELECT snapshot_id, from_dc, to_dc, template_id, present, priority,"
        "    CASE WHEN missing THEN 'replica-missing' ELSE 'replica-behind' END,"
        "    'replicate/' || snapshot_id || '/' || to_dc || '/v' || version || '/'"
        "      || (extract(epoch FROM now()) * 1000)::bigint,"
        "    bytes, 'replicate', version FROM due"
        "  ON CONFLICT DO NOTHING RETURNING *),"
        " reserve AS ("
        "  UPDATE datacenters d SET reserved_bytes = d.reserved_bytes + s.bytes,"
        "    updated_at = now()"
        "  FROM (SELECT to_dc, sum(bytes_total) AS bytes FROM t GROUP BY to_dc) s"
        "  WHERE d.id = s.to_dc),"
        " job AS ("
        "  INSERT INTO outbox (topic, key, payload)"
        "  SELECT $1, t.snapshot_id, jsonb_build_object("
        "    'transfer_id', t.id, 'kind', t.kind, 'snapshot_id', t.snapshot_id,"
        "    'from_dc', t.from_dc, 'to_dc', t.to_dc, 'template_id', t.template_id,"
        "    'template_present', t.template_present, 'priority', t.priority,"
        "    'reason', t.reason, 'bytes_total', t.bytes_total, 'version', t.version,"
        "    'idempotency_key', t.idempotency_key) FROM t)"
        " SELECT count(*) FROM t";

/*
 * A replica whose lag first exceeds its level's RPO is marked breached,
 * with an audit event; one back within it is unmarked (a refresh that
 * succeeded unmarks it too). $1 the audit topic.
 */
static const char rpo_sql[] =
        "WITH cleared AS (UPDATE replicas r SET rpo_breached_at = NULL FROM replica_lag l"
        "   WHERE l.snapshot_id = r.snapshot_id AND l.datacenter_id = r.datacenter_id"
        "     AND r.rpo_breached_at IS NOT NULL AND (l.rpo_s IS NULL OR l.lag_s <= l.rpo_s)"
        "   RETURNING r.snapshot_id),"
        " breached AS (UPDATE replicas r SET rpo_breached_at = now() FROM replica_lag l"
        "   WHERE l.snapshot_id = r.snapshot_id AND l.datacenter_id = r.datacenter_id"
        "     AND r.rpo_breached_at IS NULL AND l.lag_s > l.rpo_s"
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
};

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
        double lat, lon;
        geo_site here;

        /* Where the user was last seen; else where the snapshot is. */
        if (store_text(res, i, 5)) {
                lat = store_double(res, i, 5);
                lon = store_double(res, i, 6);
        } else if (active != ENGINE_NO_SITE && geo_index_site(ctx->index, active, &here) == 0) {
                lat = here.lat;
                lon = here.lon;
        } else {
                lat = lon = NAN;
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

void scheduler_keep_replicas(struct upkeep *u) {
        struct store_result *res = NULL, *lock = NULL, *dom = NULL, *cancelled = NULL,
                            *queued = NULL, *breached = NULL;
        struct domains domains = { NULL, 0 };
        struct plan p;
        const char *topic[1] = { u->cfg->topic_transfers };
        int r;

        memset(&p, 0, sizeof(p));
        store_array_init(&p.rel_snap);
        store_array_init(&p.rel_dc);
        store_array_init(&p.rel_why);
        store_array_init(&p.new_snap);
        store_array_init(&p.new_dc);
        store_array_init(&p.new_active);
        r = store_begin(u->db);
        if (r < 0)
                goto out;
        /* One scheduler at a time; the others skip this pass. */
        r = store_exec(u->db, "SELECT pg_try_advisory_xact_lock(hashtext('homing.replicas'))", 0,
                       NULL, &lock);
        if (r < 0 || !store_bool(lock, 0, 0))
                goto out;
        r = load_domains(u, &domains, &dom);
        if (r >= 0)
                r = store_exec(u->db, snapshots_sql, 0, NULL, &res);
        for (size_t i = 0; r >= 0 && i < store_rows(res); i++)
                plan_snapshot(u, &domains, res, i, &p);
        if (r >= 0 && p.released) {
                const char *params[4] = { store_array_text(&p.rel_snap),
                                          store_array_text(&p.rel_dc), store_array_text(&p.rel_why),
                                          u->cfg->topic_audit };
                r = params[0] && params[1] && params[2]
                            ? store_exec(u->db, release_sql, 4, params, NULL)
                            : -ENOMEM;
        }
        if (r >= 0)
                r = store_exec(u->db, cancel_sql, 0, NULL, &cancelled);
        if (r >= 0 && p.designated) {
                const char *params[4] = { store_array_text(&p.new_snap),
                                          store_array_text(&p.new_dc),
                                          store_array_text(&p.new_active), u->cfg->topic_audit };
                r = params[0] && params[1] && params[2]
                            ? store_exec(u->db, designate_sql, 4, params, NULL)
                            : -ENOMEM;
        }
        if (r >= 0)
                r = store_exec(u->db, refresh_sql, 1, topic, &queued);
        if (r >= 0) {
                const char *audit[1] = { u->cfg->topic_audit };
                r = store_exec(u->db, rpo_sql, 1, audit, &breached);
        }
        if (r >= 0)
                r = store_commit(u->db);
        if (r < 0) {
                log_error("scheduler", "the replica pass failed (%s); next pass tries again",
                          store_error(u->db));
                goto out;
        }
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
out:
        if (r < 0 || !lock || !store_bool(lock, 0, 0))
                store_rollback(u->db);
        free(domains.of);
        store_result_free(dom);
        store_result_free(lock);
        store_result_free(res);
        store_result_free(cancelled);
        store_result_free(queued);
        store_result_free(breached);
        store_array_fini(&p.rel_snap);
        store_array_fini(&p.rel_dc);
        store_array_fini(&p.rel_why);
        store_array_fini(&p.new_snap);
        store_array_fini(&p.new_dc);
        store_array_fini(&p.new_active);
}
