/*
 * Evacuations of a datacenter as resources (migration 022). An operator
 * creates one with POST /v1/datacenters/{id}/evacuations: the scheduler's
 * planner names every snapshot active there with its target, level and
 * bytes, or why it cannot move. A dry run stores that plan and changes
 * nothing else; it runs later with POST /v1/evacuations/{id}/execute, or a
 * create without dry_run runs at once. Running needs the datacenter
 * drained first (PUT /v1/datacenters/{id}/status), so no move of a user's
 * goes there meanwhile. Cancel stops what has not switched over. Viewers
 * read the progress per priority level. Every write is audited.
 */
#include "api/evacuations.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/audit.h"
#include "api/input.h"
#include "api/parse.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/resource.h"
#include "api/state.h"
#include "store/store.h"

#define SELECT_ONE                                                       \
        "SELECT e.row_version, homing_evacuation_json(e.id, true)::text" \
        " FROM evacuations e WHERE e.id = $1::bigint"

const struct api_resource api_evacuation_resource = {
        "evacuation",
        "/v1/evacuations",
        SELECT_ONE,
        "SELECT e.state, e.datacenter_id, d.status FROM evacuations e"
        " JOIN datacenters d ON d.id = e.datacenter_id"
        " WHERE e.id = $1::bigint FOR UPDATE OF e, d",
        false,
        api_serial_id_valid,
        NULL,
};

const struct api_field api_evacuation_fields[] = {
        { "dry_run", FIELD_BOOLEAN, false, false, 0, 0 },
        { "gate", FIELD_STRING, false, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

bool api_evacuation_valid(struct request *req, enum MHD_Result *reply) {
        const char *gate = json_string_value(json_object_get(req->input, "gate"));

        if (!gate || !strcmp(gate, "done") || !strcmp(gate, "running"))
                return true;
        *reply = api_reply_invalid(req, "/gate",
                                   "is done (a level starts once the previous one is done) or "
                                   "running (once its transfers are under way)");
        return false;
}

/* Whether the evacuation of a datacenter in `status` may run now; *refused after answering 409. */
static enum MHD_Result refuse_to_run(struct request *req, const char *dc, const char *status,
                                     bool *refused) {
        const char *params[1] = { dc };
        struct store_result *res = NULL;
        char detail[256];
        enum MHD_Result ret = MHD_YES;
        int r;

        *refused = true;
        if (!strcmp(status, "down")) {
                snprintf(detail, sizeof(detail),
                         "datacenter %s is down: its snapshots fail over, they are not evacuated",
                         dc);
                return api_reply_conflict(req, "datacenter-down", detail);
        }
        if (strcmp(status, "draining") != 0) {
                snprintf(detail, sizeof(detail),
                         "datacenter %s is %s: drain it first (PUT /v1/datacenters/%s/status "
                         "{\"status\": \"draining\"}); a dry run needs no drain",
                         dc, status, dc);
                return api_reply_conflict(req, "datacenter-not-draining", detail);
        }
        r = api_fetch_one(
                req, "SELECT id FROM evacuations WHERE datacenter_id = $1 AND state = 'running'", 1,
                params, &res);
        if (r < 0) {
                ret = api_reply_db_error(req);
        } else if (r > 0) {
                snprintf(detail, sizeof(detail), "evacuation %s of %s is running",
                         store_text(res, 0, 0), dc);
                ret = api_reply_conflict(req, "evacuation-running", detail);
        } else {
                *refused = false;
        }
        store_result_free(res);
        return ret;
}

/* Reads the evacuation back, audits (subject: its datacenter), commits and answers with it. */
static enum MHD_Result commit_and_reply(struct request *req, const char *id, const char *dc,
                                        unsigned status, const char *const *types, json_t *data) {
        const char *params[1] = { id };
        struct store_result *res = NULL, *summary = NULL;
        char location[64];
        const char *headers[3] = { "Location", location, NULL };
        enum MHD_Result ret;
        int r = api_fetch_one(req, SELECT_ONE, 1, params, &res);

        if (r > 0)
                r = api_fetch_one(req, "SELECT homing_evacuation_json($1::bigint, false)::text", 1,
                                  params, &summary);
        json_object_set_new(data, "evacuation_id", json_integer(strtoll(id, NULL, 10)));
        if (r > 0)
                json_object_set_new(data, "evacuation",
                                    json_loads(store_text(summary, 0, 0), 0, NULL));
        for (size_t i = 0; r > 0 && types[i]; i++)
                r = api_audit(req, types[i], dc, json_deep_copy(data)) < 0 ? -1 : 1;
        json_decref(data);
        if (r <= 0 || api_commit(req) < 0) {
                store_result_free(res);
                store_result_free(summary);
                return api_reply_db_error(req);
        }
        snprintf(location, sizeof(location), "/v1/evacuations/%s", id);
        ret = api_reply_raw(req, status, store_text(res, 0, 1), status == 201 ? headers : NULL);
        store_result_free(res);
        store_result_free(summary);
        return ret;
}

enum MHD_Result api_evacuations_create(struct request *req) {
        const char *dc = api_param(req, 0), *status = store_text(req->locked, 0, 1);
        const json_t *dry = json_object_get(req->input, "dry_run");
        const char *gate = json_string_value(json_object_get(req->input, "gate"));
        bool dry_run = dry && json_is_true(dry);
        const char *types[3] = { "io.homing.evacuation.created", NULL, NULL };
        struct store_result *res = NULL;
        char id[24];
        enum MHD_Result ret;
        int r;

        if (!req->api->hooks.plan_evacuation)
                return api_reply_problem(req, 501, "not-implemented", "Not implemented",
                                         "this process was started without the scheduler's "
                                         "planner",
                                         NULL);
        if (dry_run && !strcmp(status, "down"))
                return api_reply_conflict(req, "datacenter-down",
                                          "the datacenter is down: its snapshots fail over, "
                                          "they are not evacuated");
        if (!dry_run) {
                bool refused;
                ret = refuse_to_run(req, dc, status, &refused);
                if (refused)
                        return ret;
                types[1] = "io.homing.evacuation.started";
        }
        {
                const char *params[4] = { dc, dry_run ? "true" : "false", gate ? gate : "done",
                                          req->who.name };
                r = api_fetch_one(req,
                                  "INSERT INTO evacuations (datacenter_id, state, gate, dry_run,"
                                  "  created_by, started_at)"
                                  " VALUES ($1, CASE WHEN $2::boolean THEN 'planned' ELSE 'running'"
                                  "  END, $3, $2::boolean, $4,"
                                  "  CASE WHEN $2::boolean THEN NULL ELSE now() END)"
                                  " RETURNING id",
                                  4, params, &res);
        }
        if (r <= 0) {
                store_result_free(res);
                return api_reply_db_error(req);
        }
        snprintf(id, sizeof(id), "%s", store_text(res, 0, 0));
        store_result_free(res);
        if (req->api->hooks.plan_evacuation(req->api->cfg, req->db, id) < 0)
                return api_reply_db_error(req);
        return commit_and_reply(req, id, dc, 201, types,
                                json_pack("{s:s, s:b}", "datacenter_id", dc, "dry_run", dry_run));
}

enum MHD_Result api_evacuations_execute(struct request *req) {
        const char *id = api_param(req, 0), *state = store_text(req->locked, 0, 0),
                   *dc = store_text(req->locked, 0, 1), *status = store_text(req->locked, 0, 2);
        const char *types[2] = { "io.homing.evacuation.started", NULL };
        char detail[160];
        enum MHD_Result ret;
        bool refused;

        if (strcmp(state, "planned") != 0) {
                snprintf(detail, sizeof(detail),
                         "the evacuation is %s; only a planned one (a dry run) can be executed",
                         state);
                return api_reply_conflict(req, "evacuation-not-planned", detail);
        }
        ret = refuse_to_run(req, dc, status, &refused);
        if (refused)
                return ret;
        {
                const char *params[1] = { id };
                if (api_exec(req,
                             "UPDATE evacuations SET state = 'running', started_at = now(),"
                             " updated_at = now() WHERE id = $1::bigint",
                             1, params, NULL) < 0)
                        return api_reply_db_error(req);
        }
        return commit_and_reply(req, id, dc, 200, types,
                                json_pack("{s:s, s:b}", "datacenter_id", dc, "dry_run", true));
}

enum MHD_Result api_evacuations_cancel(struct request *req) {
        const char *id = api_param(req, 0), *state = store_text(req->locked, 0, 0),
                   *dc = store_text(req->locked, 0, 1);
        const char *types[2] = { "io.homing.evacuation.cancelled", NULL };
        struct store_result *res = NULL;
        char detail[160], why[200];
        json_t *data;

        if (strcmp(state, "planned") != 0 && strcmp(state, "running") != 0) {
                snprintf(detail, sizeof(detail),
                         "the evacuation is %s; only a planned or running one can be cancelled",
                         state);
                return api_reply_conflict(req, "evacuation-not-cancellable", detail);
        }
        snprintf(why, sizeof(why), "evacuation %s cancelled by %s", id, req->who.name);
        {
                const char *params[2] = { id, why };
                if (api_fetch_one(req, "SELECT homing_evacuation_cancel($1::bigint, $2)", 2, params,
                                  &res) <= 0) {
                        store_result_free(res);
                        return api_reply_db_error(req);
                }
        }
        data = json_pack("{s:s, s:s, s:I}", "datacenter_id", dc, "from_state", state,
                         "items_cancelled", (json_int_t)store_int(res, 0, 0));
        store_result_free(res);
        return commit_and_reply(req, id, dc, 200, types, data);
}

enum MHD_Result api_evacuations_get(struct request *req) {
        const char *params[1] = { api_param(req, 0) };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int r;

        if (!api_serial_id_valid(params[0]))
                return api_reply_not_found(req, "evacuation", params[0]);
        r = api_fetch_one(req, SELECT_ONE, 1, params, &res);
        if (r <= 0)
                return api_reply_not_found_or_db_error(req, r, "evacuation", params[0]);
        ret = api_reply_raw(req, 200, store_text(res, 0, 1), NULL);
        store_result_free(res);
        return ret;
}

static bool state_valid(const char *s) {
        return !strcmp(s, "planned") || !strcmp(s, "running") || !strcmp(s, "done") ||
               !strcmp(s, "cancelled");
}

enum MHD_Result api_evacuations_list(struct request *req) {
        const char *dc = api_query(req, "datacenter_id"), *state = api_query(req, "state");

        if (state && !state_valid(state))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "state is planned, running, done or cancelled", NULL);
        {
                const char *filters[2] = { dc, state };
                return api_reply_list(req, true,
                                      "SELECT e.id, homing_evacuation_json(e.id, false)::text"
                                      " FROM evacuations e"
                                      " WHERE ($1::text IS NULL OR e.datacenter_id = $1)"
                                      "   AND ($2::text IS NULL OR e.state = $2)"
                                      "   AND ($3::bigint IS NULL OR e.id < $3::bigint)"
                                      " ORDER BY e.id DESC LIMIT $4::int",
                                      2, filters);
        }
}
