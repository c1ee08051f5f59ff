/*
 * /v1/protection-policies: per priority level (1 most urgent to 5), how
 * many warm replicas its snapshots keep and how stale one may become (the
 * RPO, in seconds). Viewers read the five; operators replace one with PUT
 * (If-Match honoured), which the schedulers' replica pass follows at its
 * next run. A level has no replicas exactly when it has no RPO.
 */
#include "api/protection.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/input.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/resource.h"
#include "store/store.h"

#define POLICY_JSON                                                   \
        "json_build_object('level', p.level, 'replicas', p.replicas," \
        " 'rpo_s', p.rpo_s, 'updated_at', homing_time(p.updated_at))"

static bool level_valid(const char *id) {
        return id && id[0] >= '1' && id[0] <= '5' && !id[1];
}

const struct api_resource api_protection_resource = {
        "protection_policy",
        "/v1/protection-policies",
        "SELECT p.row_version, " POLICY_JSON "::text FROM protection_policies p"
        " WHERE p.level = $1::int",
        "SELECT row_version FROM protection_policies WHERE level = $1::int FOR UPDATE",
        false,
        level_valid,
        "protection_policies",
};
#define resource api_protection_resource

const struct api_field api_protection_fields[] = {
        { "replicas", FIELD_INTEGER, true, false, 0, 3 },
        { "rpo_s", FIELD_INTEGER, false, true, 10, 2592000 },
        { NULL, 0, false, false, 0, 0 },
};

/* An RPO goes with replicas, and only with them. */
bool api_protection_valid(struct request *req, enum MHD_Result *reply) {
        json_int_t replicas = json_integer_value(json_object_get(req->input, "replicas"));
        const json_t *rpo = json_object_get(req->input, "rpo_s");
        bool has_rpo = rpo && !json_is_null(rpo);

        if (replicas > 0 && !has_rpo) {
                *reply = api_reply_invalid(req, "/rpo_s",
                                           "is required with replicas: how stale one may become");
                return false;
        }
        if (replicas == 0 && has_rpo) {
                *reply = api_reply_invalid(req, "/rpo_s",
                                           "is null when the level keeps no replicas");
                return false;
        }
        return true;
}

enum MHD_Result api_protection_list(struct request *req) {
        struct store_result *res = NULL;
        enum MHD_Result ret;

        ret = api_exec(req,
                       "SELECT json_build_object('items', coalesce(json_agg(" POLICY_JSON
                       " ORDER BY p.level), '[]'))::text FROM protection_policies p",
                       0, NULL, &res) < 0
                      ? api_reply_db_error(req)
                      : api_reply_raw(req, 200, store_text(res, 0, 0), NULL);
        store_result_free(res);
        return ret;
}

enum MHD_Result api_protection_get(struct request *req) {
        return api_reply_one(req, &resource, api_param(req, 0));
}

enum MHD_Result api_protection_put(struct request *req) {
        const char *level = api_param(req, 0);
        char *text = json_dumps(req->input, JSON_COMPACT);
        int r;

        {
                const char *params[2] = { level, text };
                r = text ? api_exec(req,
                                    "UPDATE protection_policies SET"
                                    " replicas = ($2::jsonb->>'replicas')::int,"
                                    " rpo_s = ($2::jsonb->>'rpo_s')::int"
                                    " WHERE level = $1::int",
                                    2, params, NULL)
                         : -1;
        }
        free(text);
        if (r < 0)
                return api_reply_db_error(req);
        return api_commit_and_reply(
                req, &resource, level, 200, "io.homing.protection_policy.updated",
                json_pack("{s:i, s:O}", "level", level[0] - '0', "changes", req->input));
}
