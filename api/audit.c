/*
 * Audit events: every operator's and agent's write queues a CloudEvents 1.0
 * structured event in the outbox, in the write's own transaction, with the
 * actor who made it (never a secret). The scheduler's relay publishes them
 * to the audit topic.
 */
#include "api/audit.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>

#include "api/pool.h"
#include "api/request.h"
#include "api/state.h"
#include "base/config.h"

json_t *api_actor_json(const struct request *req) {
        if (req->who.kind == PRINCIPAL_OPERATOR)
                return json_pack("{s:s, s:I, s:s, s:s}", "kind", "operator", "token_id",
                                 (json_int_t)req->who.token_id, "name", req->who.name, "role",
                                 auth_role_name(req->who.role));
        if (req->who.kind == PRINCIPAL_AGENT)
                return json_pack("{s:s, s:I, s:s, s:s}", "kind", "agent", "token_id",
                                 (json_int_t)req->who.token_id, "name", req->who.name,
                                 "datacenter_id", req->who.datacenter_id);
        if (req->who.kind == PRINCIPAL_DEVICE)
                return json_pack("{s:s, s:s, s:s}", "kind", "device", "device_id",
                                 req->who.device.device_id, "user_id", req->who.device.user_id);
        return json_pack("{s:s}", "kind", "anonymous");
}

int api_audit(struct request *req, const char *type, const char *subject, json_t *data) {
        char *text;
        int r;

        if (!data)
                return -ENOMEM;
        json_object_set_new(data, "actor", api_actor_json(req));
        text = json_dumps(data, JSON_COMPACT | JSON_REAL_PRECISION(15));
        json_decref(data);
        if (!text)
                return -ENOMEM;
        {
                const char *params[4] = { req->api->cfg->topic_audit, subject, type, text };
                /* The id is drawn once, here, and travels with the row: a resend by the
                 * relay carries the same id, so consumers can drop duplicates. */
                r = api_exec(req,
                             "INSERT INTO outbox (topic, key, payload)"
                             " SELECT $1, $2, homing_cloudevent('api-' || gen_random_uuid(),"
                             "  '/homing/api', $3::text, now(), $2::text, $4::jsonb)",
                             4, params, NULL);
        }
        free(text);
        return r;
}
