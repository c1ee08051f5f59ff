/*
 * Pre-staging in the live scheduler: a warm copy of a user's snapshot at the
 * datacenter nearest where an announced trip (table trips, POST /v1/trips)
 * takes them, made before they land and released when the trip is over, so
 * that the move on arrival finds the copy there (an agent builds the version
 * from the blocks it holds: the copy is one of the target's have_versions)
 * and sends only a delta. Every --prestage-pass-s, in the upkeep thread, one
 * scheduler (a PostgreSQL advisory lock picks it):
 *
 * - looks at every pre-staged copy (replicas with reason 'prestage',
 *   migration 029) and releases it when its trip is over or withdrawn, or
 *   when its site is no longer eligible (not active, outside the
 *   snapshot's zones) or no longer serves the trip (no nearer the
 *   destination than where the snapshot is now, by the move's margins),
 *   unless a move onto it is in flight (that move ends the designation);
 *   a kept copy's end moves on while the user's last fix is near it and
 *   the trip has no return;
 * - for each snapshot without one, takes its user's trips whose copy may be
 *   due (their arrival within a transfer's time and the lead) and asks the
 *   engine (engine_prestage_decide, as `homing replay`'s homing+prestage
 *   does): the first trip, by arrival, whose copy is due and would serve
 *   the move on arrival (engine_prestage_serves) gets its site designated;
 * - queues a `replicate` transfer towards each pre-staged copy missing or
 *   behind the snapshot's version, as the replica pass does for its own.
 *
 * One pre-staged copy per snapshot at a time. The eligible sites are the
 * engine's (active, with room as of the last catalog reload, inside the
 * snapshot's zones). Recurring trips (engine_recurring_trip) are not
 * pre-staged live: they need the user's arrivals, which PostgreSQL does not
 * keep (device_locations holds each device's last fix only).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/log.h"
#include "geo/geo.h"
#include "scheduler/internal.h"
#include "scheduler/world.h"
#include "store/store.h"

/* What a snapshot's engine state needs, columns 0 to 5 of both queries below. */
#define SNAPSHOT_COLUMNS                                                             \
        "s.id, s.template_id, s.size_bytes, s.allowed_zones::text, a.datacenter_id," \
        " mv.to_dc"
#define SNAPSHOT_JOINS                                                          \
        " LEFT JOIN placements a ON a.snapshot_id = s.id AND a.active"          \
        " LEFT JOIN transfers mv ON mv.snapshot_id = s.id AND mv.kind = 'move'" \
        "   AND mv.state IN ('queued', 'running')"

/* The pre-staged copies, with their trips (NULL: withdrawn) and the user's
 * last fix; times in ms since the epoch. */
static const char staged_sql[] =
        "SELECT " SNAPSHOT_COLUMNS ", r.datacenter_id, r.trip_id, tr.lat, tr.lon,"
        "  round(extract(epoch FROM tr.arrive_at) * 1000),"
        "  round(extract(epoch FROM tr.return_at) * 1000),"
        "  round(extract(epoch FROM r.ends_at) * 1000),"
        "  loc.lat, loc.lon, round(extract(epoch FROM loc.reported_at) * 1000)"
        " FROM replicas r"
        " JOIN snapshots s ON s.id = r.snapshot_id"
        " LEFT JOIN trips tr ON tr.id = r.trip_id" SNAPSHOT_JOINS
        " LEFT JOIN LATERAL (SELECT dl.lat, dl.lon, dl.reported_at FROM device_locations dl"
        "   WHERE dl.user_id = s.user_id ORDER BY dl.reported_at DESC LIMIT 1) loc ON true"
        " WHERE r.reason = 'prestage'"
        " ORDER BY s.id";

/*
 * The trips whose copy may be due, of snapshots without a pre-staged copy:
 * not over, and arriving within the time the snapshot and its template take
 * at $1 bytes a second, plus the lead ($2 s). $3 the linger (s) of a trip
 * without a return. Per snapshot, by arrival. The first two conditions are
 * on trips_by_arrival's range: no stay is longer than 90 days (POST
 * /v1/trips), none takes longer than the largest snapshot and template.
 */
static const char due_sql[] =
        "SELECT " SNAPSHOT_COLUMNS ", tr.id, tr.lat, tr.lon,"
        "  round(extract(epoch FROM tr.arrive_at) * 1000),"
        "  round(extract(epoch FROM tr.return_at) * 1000)"
        " FROM trips tr"
        " JOIN snapshots s ON s.user_id = tr.user_id"
        " JOIN templates tpl ON tpl.id = s.template_id" SNAPSHOT_JOINS
        " WHERE tr.arrive_at > now() - interval '90 days' - make_interval(secs => $3::float8)"
        "   AND tr.arrive_at <= now() + make_interval(secs => ((SELECT max(size_bytes)"
        "     FROM snapshots) + (SELECT max(size_bytes) FROM templates)) / $1::float8 + $2::float8)"
        "   AND coalesce(tr.return_at, tr.arrive_at + make_interval(secs => $3::float8)) > now()"
        "   AND tr.arrive_at <= now() + make_interval(secs =>"
        "     (s.size_bytes + tpl.size_bytes) / $1::float8 + $2::float8)"
        "   AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.snapshot_id = s.id"
        "     AND r.reason = 'prestage')"
        " ORDER BY s.id, tr.arrive_at, tr.id";

/*
 * Releases: $1 snapshots, $2 datacenters, $3 reasons; $4 the audit topic.
 * The copy becomes a cached one; a replicate still open towards it is
 * cancelled.
 */
static const char release_sql[] =
        "WITH x AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS x(s, d, why)),"
        " gone AS (DELETE FROM replicas r USING x"
        "   WHERE r.snapshot_id = x.s AND r.datacenter_id = x.d AND r.reason = 'prestage'"
        "   RETURNING r.snapshot_id, r.datacenter_id, r.trip_id, x.why),"
        " ev AS (INSERT INTO outbox (topic, key, payload)"
        "   SELECT $4, g.snapshot_id, homing_cloudevent("
        "     'prestage-' || g.snapshot_id || '-' || g.datacenter_id || '-released-'"
        "       || (extract(epoch FROM now()) * 1000)::bigint,"
        "     '/homing/scheduler', 'io.homing.prestage.released', now(), g.snapshot_id,"
        "     jsonb_build_object('snapshot_id', g.snapshot_id, 'datacenter_id', g.datacenter_id,"
        "       'trip_id', g.trip_id, 'reason', g.why))"
        "   FROM gone g)"
        " SELECT t.id, homing_transfer_ended(t.id, 'cancelled',"
        "   'the pre-staged copy at ' || t.to_dc || ' was released')"
        " FROM transfers t JOIN gone g ON g.snapshot_id = t.snapshot_id AND g.datacenter_id = t.to_dc"
        " WHERE t.kind = 'replicate' AND t.state IN ('queued', 'running')";

/* Ends moved on: $1 snapshots, $2 datacenters, $3 ends (ms since the epoch). */
static const char extend_sql[] =
        "UPDATE replicas r SET ends_at = to_timestamp(x.e / 1000.0), updated_at = now()"
        " FROM unnest($1::text[], $2::text[], $3::int8[]) AS x(s, d, e)"
        " WHERE r.snapshot_id = x.s AND r.datacenter_id = x.d AND r.reason = 'prestage'";

/*
 * Designations: $1 snapshots, $2 datacenters, $3 trips, $4 ends (ms), $5
 * arrivals (ms), $6 the active sites; $7 the audit topic. The copy starts
 * from the newest verified one there, if any; a site already designated
 * (a protection replica) is left as it is.
 */
static const char stage_sql[] =
        "WITH x AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[],"
        "   $5::int8[], $6::text[]) AS x(s, d, trip, e, arrive, a)),"
        " made AS (INSERT INTO replicas (snapshot_id, datacenter_id, placement_id, reason,"
        "   trip_id, ends_at)"
        "   SELECT x.s, x.d, (SELECT p.id FROM placements p"
        "     WHERE p.snapshot_id = x.s AND p.datacenter_id = x.d AND NOT p.active"
        "       AND p.evicted_at IS NULL"
        "       AND NOT EXISTS (SELECT 1 FROM replicas o WHERE o.placement_id = p.id)"
        "     ORDER BY p.version DESC, p.id DESC LIMIT 1),"
        "     'prestage', x.trip, to_timestamp(x.e / 1000.0)"
        "   FROM x ON CONFLICT DO NOTHING"
        "   RETURNING snapshot_id, datacenter_id, placement_id, trip_id, ends_at)"
        " INSERT INTO outbox (topic, key, payload)"
        " SELECT $7, m.snapshot_id, homing_cloudevent("
        "   'prestage-' || m.snapshot_id || '-' || m.datacenter_id || '-staged-'"
        "     || (extract(epoch FROM now()) * 1000)::bigint,"
        "   '/homing/scheduler', 'io.homing.prestage.staged', now(), m.snapshot_id,"
        "   jsonb_build_object('snapshot_id', m.snapshot_id, 'datacenter_id', m.datacenter_id,"
        "     'trip_id', m.trip_id, 'active_dc', x.a,"
        "     'arrive_at', homing_time(to_timestamp(x.arrive / 1000.0)),"
        "     'ends_at', homing_time(m.ends_at), 'has_copy', m.placement_id IS NOT NULL))"
        " FROM made m JOIN x ON x.s = m.snapshot_id AND x.d = m.datacenter_id"
        " RETURNING key, payload->'data'->>'datacenter_id', payload->'data'->>'trip_id'";

/*
 * A replicate transfer (reason 'prestage') for every pre-staged copy missing
 * or older than the snapshot's version, as the replica pass queues its own
 * (migration 031); its job on the transfers topic ($1).
 */
static const char refresh_sql[] =
        "SELECT * FROM homing_queue_replica_refreshes('prestage', $1, NULL)";

/* What one pass decided, as the columns of the statements above. */
struct decided {
        struct store_columns release, extend, stage;
        size_t released, extended, staged;
};

/* The engine's view of the snapshot of row i (columns 0 to 5). */
static void snapshot_of(struct world *w, const struct store_result *res, size_t i,
                        struct engine_snapshot *s) {
        engine_snapshot_init(s, world_site(w, store_text(res, i, 4)),
                             world_template(w, store_text(res, i, 1)),
                             (uint64_t)store_int(res, i, 2),
                             world_zone_set(w, store_text(res, i, 3)));
        s->pending = world_site(w, store_text(res, i, 5));
}

static int64_t ms_or_0(const struct store_result *res, size_t i, int col) {
        return store_text(res, i, col) ? store_int(res, i, col) : 0;
}

static void release(struct decided *d, const char *snapshot, const char *dc, const char *why) {
        store_array_add_text(&d->release.col[0], snapshot);
        store_array_add_text(&d->release.col[1], dc);
        store_array_add_text(&d->release.col[2], why);
        d->released++;
}

/* Row i of staged_sql: kept (its end moved on, maybe) or released. */
static int judge_staged(struct upkeep *u, const struct engine_policy *policy,
                        const struct engine_prestage_policy *pp, const struct store_result *res,
                        size_t i, int64_t now_ms, struct decided *d) {
        const struct engine_context *ctx = world_context(u->world);
        const char *id = store_text(res, i, 0), *dc = store_text(res, i, 6);
        uint32_t site = world_site(u->world, dc);
        int64_t ends_ms = ms_or_0(res, i, 12), last_near_ms = 0;
        struct engine_snapshot s;
        struct engine_trip trip;
        struct engine_prestage out;
        geo_site info;
        int r;

        if (!store_text(res, i, 7)) {
                release(d, id, dc, "trip_withdrawn");
                return 0;
        }
        snapshot_of(u->world, res, i, &s);
        trip = (struct engine_trip){ store_double(res, i, 8), store_double(res, i, 9),
                                     ms_or_0(res, i, 10), ms_or_0(res, i, 11) };
        /* The user's last fix near the copy keeps a trip without a return going;
         * the end already moved on by earlier passes says when they were last seen. */
        if (store_text(res, i, 13) && site != ENGINE_NO_SITE &&
            geo_index_site(ctx->index, site, &info) == 0 &&
            geo_distance_m(store_double(res, i, 13), store_double(res, i, 14), info.lat,
                           info.lon) <= pp->near_m)
                last_near_ms = ms_or_0(res, i, 15);
        if (!trip.return_ms && ends_ms - pp->linger_ms > last_near_ms)
                last_near_ms = ends_ms - pp->linger_ms;
        r = engine_prestage_decide(pp, ctx, &s, &trip, last_near_ms, now_ms, &out);
        if (r < 0)
                return r;
        if (out.action == ENGINE_PRESTAGE_RELEASE) {
                release(d, id, dc, "trip_over");
                return 0;
        }
        /* A copy stays while its site stays eligible and serves the trip, as a
         * replica does, not only while it is the nearest: its own bytes would
         * otherwise count against its room. A move onto it in flight ends the
         * designation itself. */
        if (site == ENGINE_NO_SITE ||
            (site != s.pending &&
             (site == s.current || geo_index_site(ctx->index, site, &info) < 0 ||
              info.status != GEO_SITE_ACTIVE || !engine_site_allowed(ctx, s.zone_set, site) ||
              !engine_prestage_serves(policy, ctx, &s, &trip, site)))) {
                release(d, id, dc, "not_eligible");
                return 0;
        }
        if (out.end_ms / 1000 != ends_ms / 1000) {
                store_array_add_text(&d->extend.col[0], id);
                store_array_add_text(&d->extend.col[1], dc);
                store_array_add_int(&d->extend.col[2], out.end_ms);
                d->extended++;
        }
        return 0;
}

/* Rows [i, end) of due_sql, one snapshot's trips by arrival: the first due one staged. */
static int stage_snapshot(struct upkeep *u, const struct engine_policy *policy,
                          const struct engine_prestage_policy *pp, const struct store_result *res,
                          size_t i, size_t end, int64_t now_ms, struct decided *d) {
        const struct engine_context *ctx = world_context(u->world);
        struct engine_snapshot s;

        snapshot_of(u->world, res, i, &s);
        if (s.current == ENGINE_NO_SITE)
                return 0; /* nowhere to copy from */
        for (size_t k = i; k < end; k++) {
                struct engine_trip trip = { store_double(res, k, 7), store_double(res, k, 8),
                                            ms_or_0(res, k, 9), ms_or_0(res, k, 10) };
                struct engine_prestage out;
                int r = engine_prestage_decide(pp, ctx, &s, &trip, 0, now_ms, &out);

                if (r < 0)
                        return r;
                if (out.action != ENGINE_PRESTAGE_STAGE ||
                    !engine_prestage_serves(policy, ctx, &s, &trip, out.site))
                        continue;
                store_array_add_text(&d->stage.col[0], store_text(res, k, 0));
                store_array_add_text(&d->stage.col[1], world_site_id(u->world, out.site));
                store_array_add_text(&d->stage.col[2], store_text(res, k, 6));
                store_array_add_int(&d->stage.col[3], out.end_ms);
                store_array_add_int(&d->stage.col[4], trip.arrive_ms);
                store_array_add_text(&d->stage.col[5], world_site_id(u->world, s.current));
                d->staged++;
                return 0;
        }
        return 0;
}

void scheduler_prestage(struct upkeep *u) {
        struct store_result *lock = NULL, *now = NULL, *staged = NULL, *due = NULL,
                            *cancelled = NULL, *made = NULL, *queued = NULL;
        struct engine_policy policy;
        struct engine_prestage_policy pp;
        struct decided d;
        char bw[32], lead[32], linger[32];
        const char *due_params[3] = { bw, lead, linger };
        int64_t now_ms = 0;
        int r;

        memset(&d, 0, sizeof(d));
        store_columns_init(&d.release, 3);
        store_columns_init(&d.extend, 3);
        store_columns_init(&d.stage, 6);
        scheduler_policy_from_config(&policy, u->cfg);
        engine_prestage_defaults(&pp);
        pp.lead_ms = u->cfg->prestage_lead_s * 1000;
        snprintf(bw, sizeof(bw), "%.17g", pp.bandwidth_bps);
        snprintf(lead, sizeof(lead), "%lld", (long long)u->cfg->prestage_lead_s);
        snprintf(linger, sizeof(linger), "%lld", (long long)(pp.linger_ms / 1000));

        r = store_begin(u->db);
        if (r < 0)
                goto out;
        /* One scheduler at a time; the others skip this pass. */
        r = store_exec(u->db, "SELECT pg_try_advisory_xact_lock(hashtext('homing.prestage'))", 0,
                       NULL, &lock);
        if (r < 0 || !store_bool(lock, 0, 0))
                goto out;
        r = store_exec(u->db, "SELECT round(extract(epoch FROM now()) * 1000)", 0, NULL, &now);
        if (r >= 0) {
                now_ms = store_int(now, 0, 0);
                r = store_exec(u->db, staged_sql, 0, NULL, &staged);
        }
        for (size_t i = 0; r >= 0 && staged && i < store_rows(staged); i++)
                r = judge_staged(u, &policy, &pp, staged, i, now_ms, &d);
        if (r >= 0 && d.released) {
                const char *topic[1] = { u->cfg->topic_audit };
                r = store_exec_columns(u->db, release_sql, &d.release, 1, topic, &cancelled);
        }
        if (r >= 0 && d.extended)
                r = store_exec_columns(u->db, extend_sql, &d.extend, 0, NULL, NULL);
        /* After the releases: a snapshot whose copy was released may stage anew. */
        if (r >= 0)
                r = store_exec(u->db, due_sql, 3, due_params, &due);
        for (size_t i = 0, end; r >= 0 && due && i < store_rows(due); i = end) {
                for (end = i + 1; end < store_rows(due) &&
                                  !strcmp(store_text(due, end, 0), store_text(due, i, 0));
                     end++)
                        ;
                r = stage_snapshot(u, &policy, &pp, due, i, end, now_ms, &d);
        }
        if (r >= 0 && d.staged) {
                const char *topic[1] = { u->cfg->topic_audit };
                r = store_exec_columns(u->db, stage_sql, &d.stage, 1, topic, &made);
        }
        if (r >= 0) {
                const char *topic[1] = { u->cfg->topic_transfers };
                r = store_exec(u->db, refresh_sql, 1, topic, &queued);
        }
        if (r >= 0)
                r = store_commit(u->db);
        if (r < 0) {
                log_error("scheduler", "the pre-staging pass failed (%s); next pass tries again",
                          store_error(u->db));
                goto out;
        }
        for (size_t i = 0; made && i < store_rows(made); i++)
                log_info("scheduler", "pre-staged %s at %s for trip %s", store_text(made, i, 0),
                         store_text(made, i, 1), store_text(made, i, 2));
        for (size_t i = 0; queued && i < store_rows(queued); i++)
                log_info("scheduler", "pre-staging %s at %s: replicate transfer %s queued",
                         store_text(queued, i, 0), store_text(queued, i, 1),
                         store_text(queued, i, 2));
        if (d.released)
                log_info("scheduler", "pre-staging: %zu copies released, %zu transfers cancelled",
                         d.released, cancelled ? store_rows(cancelled) : 0);
out:
        if (r < 0 || !lock || !store_bool(lock, 0, 0))
                store_rollback(u->db);
        store_columns_fini(&d.release);
        store_columns_fini(&d.extend);
        store_columns_fini(&d.stage);
        store_result_free(lock);
        store_result_free(now);
        store_result_free(staged);
        store_result_free(due);
        store_result_free(cancelled);
        store_result_free(made);
        store_result_free(queued);
}
