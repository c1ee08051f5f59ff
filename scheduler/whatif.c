/*
 * The what-if: the engine run over copies of a user's state, so an operator
 * can ask "what would homing do if this user were there, and why?" and get
 * the same answer the scheduler would give, with nothing written.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "scheduler/internal.h"
#include "scheduler/scheduler.h"
#include "scheduler/world.h"
#include "store/store.h"

static json_t *distance_json(double metres) {
        return isfinite(metres) ? json_real(round(metres * 1000) / 1000) : json_null();
}

static json_t *decision_json(const struct world *w, const struct engine_decision *d) {
        return json_pack("{s:s, s:s, s:s?, s:s?, s:o, s:o, s:I, s:I, s:b, s:b, s:s?, s:I, s:i}",
                         "outcome", d->outcome == ENGINE_MOVE ? "move" : "stay", "reason",
                         engine_reason_name(d->reason), "target_dc", world_site_id(w, d->target),
                         "nearest_dc", world_site_id(w, d->nearest), "current_distance_m",
                         distance_json(d->current_m), "target_distance_m",
                         distance_json(d->target_m), "bytes", (json_int_t)d->bytes, "bytes_to_send",
                         (json_int_t)d->send_bytes, "template_present", d->template_present,
                         "copy_present", d->copy_present, "supersedes_transfer_to",
                         world_site_id(w, d->superseded), "dwell_ms", (json_int_t)d->dwell_ms,
                         "dwell_reports", d->dwell_reports);
}

int scheduler_what_if(const struct config *cfg, struct store *db, const char *user_id, double lat,
                      double lon, int64_t ts_ms, char **json_out) {
        struct engine_policy policy;
        struct world *w = NULL;
        struct store_result *res = NULL;
        struct store_array ids;
        const char *param[1];
        json_t *doc = NULL, *items;
        int r;

        scheduler_policy_from_config(&policy, cfg);
        store_array_init(&ids);
        store_array_add_text(&ids, user_id);
        param[0] = store_array_text(&ids);
        r = param[0] ? world_new(&w) : -ENOMEM;
        if (r == 0)
                r = world_load(w, db);
        if (r == 0)
                r = store_exec(db, scheduler_load_snapshots_sql, 1, param, &res);
        if (r < 0)
                goto out;
        if (store_rows(res) == 0) {
                r = -ENOENT;
                goto out;
        }

        items = json_array();
        for (size_t row = 0; row < store_rows(res); row++) {
                struct tracked_snapshot snap = { 0 };
                struct engine_snapshot settled;
                struct engine_decision now, later;

                scheduler_fill_snapshot(w, &snap, res, row);
                settled = snap.policy;
                r = engine_decide(&policy, world_context(w), &snap.policy, lat, lon, ts_ms, &now);
                if (r < 0)
                        break;
                /* As if the user had been there for the whole dwell already. */
                if (now.target != ENGINE_NO_SITE) {
                        settled.candidate = now.target;
                        settled.candidate_since_ms = ts_ms - policy.dwell_ms;
                        settled.candidate_reports = policy.min_reports - 1;
                }
                r = engine_decide(&policy, world_context(w), &settled, lat, lon, ts_ms, &later);
                if (r < 0)
                        break;
                json_array_append_new(
                        items, json_pack("{s:s, s:s?, s:s?, s:o, s:o}", "snapshot_id",
                                         store_text(res, row, 1), "current_dc",
                                         store_text(res, row, 5), "transfer_in_flight_to",
                                         store_text(res, row, 7), "now", decision_json(w, &now),
                                         "once_settled", decision_json(w, &later)));
        }
        doc = json_pack("{s:s, s:f, s:f, s:o, s:{s:f, s:f, s:I, s:i, s:I, s:i, s:f}}", "user_id",
                        user_id, "lat", lat, "lon", lon, "snapshots", items, "policy", "margin_m",
                        policy.margin_m, "margin_ratio", policy.margin_ratio, "dwell_ms",
                        (json_int_t)policy.dwell_ms, "dwell_reports", policy.min_reports,
                        "cooldown_ms", (json_int_t)policy.cooldown_ms, "max_moves_per_day",
                        policy.max_moves_per_day, "km_per_gib", policy.km_per_gib);
        if (r == 0) {
                *json_out = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
                if (!*json_out)
                        r = -ENOMEM;
        }
out:
        json_decref(doc);
        store_result_free(res);
        store_array_fini(&ids);
        world_free(w);
        return r;
}
