/*
 * Users from PostgreSQL into memory: a batch's users not yet known, with
 * their snapshots' state and their devices' last fixes, and the forgetting
 * of those that changed under us. The what-if reads a snapshot's state the
 * same way, with the policy from the same configuration.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/log.h"
#include "scheduler/internal.h"
#include "scheduler/world.h"
#include "store/store.h"

void scheduler_policy_from_config(struct engine_policy *p, const struct config *cfg) {
        engine_policy_defaults(p);
        p->margin_m = cfg->move_margin_m;
        p->margin_ratio = cfg->move_margin_ratio;
        p->max_accuracy_m = cfg->max_accuracy_m;
        p->max_speed_mps = cfg->max_speed_mps;
        p->max_future_skew_ms = cfg->max_future_skew_s * 1000;
        p->dwell_ms = cfg->dwell_s * 1000;
        p->min_reports = (int32_t)cfg->dwell_reports;
        p->cooldown_ms = cfg->cooldown_s * 1000;
        p->max_moves_per_day = (int32_t)cfg->max_moves_per_day;
        p->km_per_gib = cfg->km_per_gib;
}

static int64_t epoch_ms(const struct store_result *res, size_t row, int col) {
        return store_text(res, row, col) ? store_int(res, row, col) : 0;
}

/*
 * The columns of a snapshot's state, in the order load_users reads them.
 *
 * The last two are the snapshot's copy at another site (engine_snapshot's
 * copy_site and copy_lacks_bytes): a verified copy there that is not evicted (an
 * inactive placement, as the agents' have_versions), the pre-staged one
 * first (it was made for the next move), then the newest, a designated one
 * (never evicted) before a cached one; and what it lacks of the snapshot's
 * version: the bytes each newer version changed, as the agents recorded
 * them (snapshot_versions.changed_bytes), or, not recorded, 2 % of the
 * version's size (homing replay's --delta-share); at most the snapshot's
 * size. README "Cost model".
 */
#define COPY_UNKNOWN_CHANGE_DIVISOR "50"
const char scheduler_load_snapshots_sql[] =
        "SELECT s.user_id, s.id, s.template_id, s.size_bytes, s.allowed_zones::text,"
        "       p.datacenter_id, t.id, t.to_dc,"
        "       ps.candidate_dc, round(extract(epoch FROM ps.candidate_since) * 1000),"
        "       ps.candidate_reports, round(extract(epoch FROM ps.last_move_at) * 1000),"
        "       round(extract(epoch FROM ps.window_start) * 1000), ps.window_moves,"
        "       ps.last_outcome, ps.last_reason, cp.datacenter_id, cp.lacks"
        " FROM snapshots s"
        " LEFT JOIN placements p ON p.snapshot_id = s.id AND p.active"
        " LEFT JOIN transfers t ON t.snapshot_id = s.id AND t.kind = 'move'"
        "   AND t.state IN ('queued', 'running')"
        " LEFT JOIN snapshot_policy_state ps ON ps.snapshot_id = s.id"
        " LEFT JOIN LATERAL ("
        "   SELECT c.datacenter_id, CASE WHEN c.version >= s.version THEN 0"
        "     ELSE least(s.size_bytes, ("
        "       SELECT coalesce(sum(coalesce(v.changed_bytes,"
        "                       v.size_bytes / " COPY_UNKNOWN_CHANGE_DIVISOR ")), 0)"
        "         + (s.version - c.version - count(*))"
        "           * (s.size_bytes / " COPY_UNKNOWN_CHANGE_DIVISOR ")"
        "       FROM snapshot_versions v WHERE v.snapshot_id = s.id"
        "         AND v.version > c.version AND v.version <= s.version))::bigint END AS lacks"
        "   FROM placements c LEFT JOIN replicas r ON r.placement_id = c.id"
        "   WHERE c.snapshot_id = s.id AND NOT c.active AND c.evicted_at IS NULL"
        "     AND c.datacenter_id IS DISTINCT FROM p.datacenter_id"
        "   ORDER BY r.reason IS NOT DISTINCT FROM 'prestage' DESC, c.version DESC,"
        "     r.reason IS NOT NULL DESC, c.datacenter_id COLLATE \"C\""
        "   LIMIT 1) cp ON true"
        " WHERE s.user_id = ANY ($1::text[])"
        " ORDER BY s.user_id COLLATE \"C\", s.id";

static uint8_t reason_from_name(const char *name) {
        for (int r = 0; name && r < ENGINE_REASON_COUNT; r++)
                if (!strcmp(engine_reason_name((enum engine_reason)r), name))
                        return (uint8_t)r;
        return ENGINE_OK;
}

void scheduler_fill_snapshot(struct world *w, struct tracked_snapshot *snap,
                             const struct store_result *res, size_t row) {
        struct engine_snapshot *p = &snap->policy;
        engine_snapshot_init(p, world_site(w, store_text(res, row, 5)),
                             world_template(w, store_text(res, row, 2)),
                             (uint64_t)store_int(res, row, 3),
                             world_zone_set(w, store_text(res, row, 4)));
        snap->pending_transfer = store_int(res, row, 6);
        p->pending = world_site(w, store_text(res, row, 7));
        p->candidate = world_site(w, store_text(res, row, 8));
        p->candidate_since_ms = epoch_ms(res, row, 9);
        p->candidate_reports = (int32_t)store_int(res, row, 10);
        p->last_move_ms = epoch_ms(res, row, 11);
        p->window_start_ms = epoch_ms(res, row, 12);
        p->window_moves = (uint16_t)store_int(res, row, 13);
        snap->last_outcome = store_text(res, row, 14) && !strcmp(store_text(res, row, 14), "move")
                                     ? ENGINE_MOVE
                                     : ENGINE_STAY;
        snap->last_reason = reason_from_name(store_text(res, row, 15));
        p->copy_site = world_site(w, store_text(res, row, 16));
        p->copy_lacks_bytes =
                p->copy_site != ENGINE_NO_SITE ? (uint64_t)store_int(res, row, 17) : 0;
}

/* A user of the batch to load, and the partition its reports come from. */
struct missing_user {
        const char *id;
        int16_t partition;
};

static int cmp_missing(const void *a, const void *b) {
        return strcmp(((const struct missing_user *)a)->id, ((const struct missing_user *)b)->id);
}

/* The rows of `res` whose column 0 is `id`, from *row on (rows sorted by column 0). */
static size_t rows_of(const struct store_result *res, size_t *row, const char *id) {
        size_t n = 0;
        while (*row < store_rows(res) && strcmp(store_text(res, *row, 0), id) < 0)
                (*row)++;
        while (*row + n < store_rows(res) && !strcmp(store_text(res, *row + n, 0), id))
                n++;
        return n;
}

/*
 * Loads every user of the batch that is not in memory yet, with two
 * queries; rows come sorted by user id (byte order), as the missing ids are.
 */
int scheduler_load_users(struct scheduler *s) {
        struct missing_user *missing = calloc(s->n_messages + 1, sizeof(*missing));
        const char **snap_ids = NULL, **dev_ids = NULL;
        struct store_array ids;
        struct store_result *snaps = NULL, *devices = NULL;
        const char *param[1];
        size_t n_missing = 0, snap_row = 0, dev_row = 0;
        int r = 0;

        store_array_init(&ids);
        if (!missing)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_messages; i++) {
                const struct batch_report *b = &s->reports[i];
                if (b->report.user_id[0] && !user_table_find(s->users, b->report.user_id))
                        missing[n_missing++] =
                                (struct missing_user){ b->report.user_id, (int16_t)b->partition };
        }
        qsort(missing, n_missing, sizeof(*missing), cmp_missing);
        for (size_t i = 0; i < n_missing; i++)
                if (i == 0 || strcmp(missing[i].id, missing[i - 1].id) != 0)
                        store_array_add_text(&ids, missing[i].id);
        if (ids.n == 0)
                goto out;
        param[0] = store_array_text(&ids);
        if (!param[0]) {
                r = -ENOMEM;
                goto out;
        }
        r = store_exec(s->db, scheduler_load_snapshots_sql, 1, param, &snaps);
        if (r < 0)
                goto out;
        r = store_exec(s->db,
                       "SELECT user_id, device_id,"
                       "       round(extract(epoch FROM reported_at) * 1000), lat, lon"
                       " FROM device_locations WHERE user_id = ANY ($1::text[])"
                       " ORDER BY user_id COLLATE \"C\", device_id",
                       1, param, &devices);
        if (r < 0)
                goto out;
        snap_ids = calloc(store_rows(snaps) + 1, sizeof(*snap_ids));
        dev_ids = calloc(store_rows(devices) + 1, sizeof(*dev_ids));
        if (!snap_ids || !dev_ids)
                r = -ENOMEM;

        for (size_t i = 0; i < n_missing && r == 0; i++) {
                const char *id = missing[i].id;
                size_t n_snaps, n_devs;
                struct tracked_user *u;

                if (i > 0 && !strcmp(id, missing[i - 1].id))
                        continue;
                n_snaps = rows_of(snaps, &snap_row, id);
                n_devs = rows_of(devices, &dev_row, id);
                for (size_t k = 0; k < n_snaps; k++)
                        snap_ids[k] = store_text(snaps, snap_row + k, 1);
                for (size_t k = 0; k < n_devs; k++)
                        dev_ids[k] = store_text(devices, dev_row + k, 1);
                u = user_table_add(s->users, id, missing[i].partition, snap_ids, n_snaps, dev_ids,
                                   n_devs);
                if (!u) {
                        r = -ENOMEM;
                        break;
                }
                for (size_t k = 0; k < n_snaps; k++)
                        scheduler_fill_snapshot(s->world, &user_snapshots(u)[k], snaps,
                                                snap_row + k);
                for (size_t k = 0; k < n_devs; k++) {
                        struct engine_device *fix = &user_devices(u)[k].fix;
                        fix->ts_ms = store_int(devices, dev_row + k, 2);
                        fix->lat = (float)store_double(devices, dev_row + k, 3);
                        fix->lon = (float)store_double(devices, dev_row + k, 4);
                }
        }
out:
        store_result_free(snaps);
        store_result_free(devices);
        store_array_fini(&ids);
        free(missing);
        free(snap_ids);
        free(dev_ids);
        return r;
}

/*
 * Users whose snapshots changed under us since the last look (a transfer
 * ran or ended, an operator cancelled or retried one, a snapshot was added
 * or edited, a new version was registered, a copy landed or was evicted: a
 * placement made or changed) are forgotten, to be loaded afresh with their
 * next report. A row carries its transaction's start
 * time, which can be before our last look though it committed after it:
 * the look reaches back CHANGES_OVERLAP further (forgetting a user twice
 * costs a reload). The scheduler's own queued moves are not news to it;
 * an operator's retry, queued too, is.
 */
#define CHANGES_OVERLAP "interval '30 seconds'"

void scheduler_forget_changed_users(struct scheduler *s) {
        struct store_result *res = NULL;
        int64_t upkeep_began = scheduler_upkeep_take_began(s->upkeep);
        char began[24];
        const char *since[2] = { s->changes_seen_at[0] ? s->changes_seen_at : NULL,
                                 upkeep_began >= 0 ? began : NULL };
        size_t forgotten = 0;

        snprintf(began, sizeof(began), "%lld", (long long)upkeep_began);
        /* Reaching back, too, to the start of the upkeep's passes that ended since. */
        if (store_exec(
                    s->db,
                    "WITH since AS (SELECT CASE WHEN $1::timestamptz IS NOT NULL THEN"
                    "   least($1::timestamptz, to_timestamp($2::int8 / 1e6))"
                    "   - " CHANGES_OVERLAP " END AS t)"
                    " SELECT now()::text, array_agg(DISTINCT user_id)::text FROM ("
                    " SELECT sn.user_id FROM since, transfers t JOIN snapshots sn ON sn.id = t.snapshot_id"
                    "  WHERE t.updated_at >= since.t"
                    "    AND (t.state <> 'queued' OR t.retry_of IS NOT NULL)"
                    " UNION ALL"
                    " SELECT user_id FROM since, snapshots"
                    "  WHERE created_at >= since.t OR updated_at >= since.t"
                    " UNION ALL"
                    " SELECT sn.user_id FROM since, placements p JOIN snapshots sn ON sn.id = p.snapshot_id"
                    "  WHERE p.created_at >= since.t OR p.updated_at >= since.t) changed",
                    2, since, &res) < 0) {
                scheduler_upkeep_give_back_began(s->upkeep, upkeep_began);
                return;
        }
        if (store_text(res, 0, 1)) {
                char **ids;
                size_t n;
                if (store_array_parse(store_text(res, 0, 1), &ids, &n) == 0) {
                        for (size_t i = 0; i < n; i++)
                                forgotten += ids[i] && user_table_remove(s->users, ids[i]);
                        store_array_items_free(ids, n);
                }
        }
        snprintf(s->changes_seen_at, sizeof(s->changes_seen_at), "%s", store_text(res, 0, 0));
        if (forgotten)
                log_debug("scheduler", "%zu users changed in PostgreSQL; reloading them",
                          forgotten);
        store_result_free(res);
}
