/*
 * What the consumer loop and the what-if share: the policy from the
 * configuration, and a snapshot's state as PostgreSQL keeps it.
 */
#include <string.h>

#include "base/config.h"
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

/* The columns of a snapshot's state, in the order load_users reads them. */
const char scheduler_load_snapshots_sql[] =
        "SELECT s.user_id, s.id, s.template_id, s.size_bytes, s.allowed_zones::text,"
        "       p.datacenter_id, t.id, t.to_dc,"
        "       ps.candidate_dc, round(extract(epoch FROM ps.candidate_since) * 1000),"
        "       ps.candidate_reports, round(extract(epoch FROM ps.last_move_at) * 1000),"
        "       round(extract(epoch FROM ps.window_start) * 1000), ps.window_moves,"
        "       ps.last_outcome, ps.last_reason"
        " FROM snapshots s"
        " LEFT JOIN placements p ON p.snapshot_id = s.id AND p.active"
        " LEFT JOIN transfers t ON t.snapshot_id = s.id AND t.state IN ('queued', 'running')"
        " LEFT JOIN snapshot_policy_state ps ON ps.snapshot_id = s.id"
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
}

