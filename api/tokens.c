/*
 * Tokens, for admins: operator tokens (list without secrets, make one — its
 * secret is in the answer once and never again —, revoke) and device tokens
 * (minted with the first device key; nothing is stored, the signature is
 * the proof). Every one of these is an audit event, without the secret.
 */
#include "api/tokens.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/access.h"
#include "api/audit.h"
#include "api/input.h"
#include "api/parse.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/resource.h"
#include "api/state.h"
#include "auth/auth.h"
#include "auth/tokens.h"
#include "report/report.h"
#include "store/store.h"

#define TOKEN_JSON                                                              \
        "json_build_object('id', o.id, 'name', o.name, 'role', o.role,"         \
        " 'created_by', o.created_by, 'created_at', homing_time(o.created_at)," \
        " 'revoked_at', homing_time(o.revoked_at))"

/* operator_tokens.name's CHECK (migration 010) */
#define API_TOKEN_NAME_MAX 128

const struct api_field api_tokens_create_fields[] = {
        { "name", FIELD_STRING, true, false, 0, 0 },
        { "role", FIELD_STRING, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_device_tokens_create_fields[] = {
        { "device_id", FIELD_ID, true, false, 0, 0 },
        { "user_id", FIELD_ID, true, false, 0, 0 },
        { "ttl_s", FIELD_INTEGER, false, false, 60, 366 * 86400 },
        { NULL, 0, false, false, 0, 0 },
};

enum MHD_Result api_tokens_list(struct request *req) {
        return api_reply_list(req, true,
                              "SELECT o.id, " TOKEN_JSON "::text FROM operator_tokens o"
                              " WHERE ($1::bigint IS NULL OR o.id > $1::bigint)"
                              " ORDER BY o.id LIMIT $2::int",
                              0, NULL);
}

enum MHD_Result api_tokens_create(struct request *req) {
        enum MHD_Result ret;
        json_t *body = req->input, *doc;
        struct store_result *res = NULL;
        const char *name, *role;
        char *token = NULL, id_text[24], location[64];
        /* The secret is in this answer only: no cache may keep it. */
        const char *headers[5] = { "Location", location, "Cache-Control", "no-store", NULL };
        int64_t id;

        name = json_string_value(json_object_get(body, "name"));
        role = json_string_value(json_object_get(body, "role"));
        if (strlen(name) > API_TOKEN_NAME_MAX) {
                ret = api_reply_invalid(req, "/name", "must be 1 to 128 characters");
                goto out;
        }
        if (auth_role_parse(role) == AUTH_ROLE_NONE) {
                ret = api_reply_invalid(req, "/role", "is viewer, operator or admin");
                goto out;
        }
        if (api_begin(req) < 0 ||
            auth_operator_token_create(req->db, name, role, req->who.name, &token, &id) < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        snprintf(id_text, sizeof(id_text), "%lld", (long long)id);
        {
                const char *params[1] = { id_text };
                if (api_fetch_one(req,
                                  "SELECT o.id, " TOKEN_JSON "::text FROM operator_tokens o"
                                  " WHERE o.id = $1::bigint",
                                  1, params, &res) <= 0 ||
                    api_audit(req, "io.homing.token.created", id_text,
                              json_pack("{s:I, s:s, s:s}", "token_id", (json_int_t)id, "name", name,
                                        "role", role)) < 0 ||
                    api_commit(req) < 0) {
                        ret = api_reply_db_error(req);
                        goto out;
                }
        }
        doc = json_loads(store_text(res, 0, 1), 0, NULL);
        json_object_set_new(doc, "token", json_string(token));
        snprintf(location, sizeof(location), "/v1/tokens/%s", id_text);
        ret = api_reply(req, 201, doc, headers);
out:
        if (token) {
                explicit_bzero(token, strlen(token));
                free(token);
        }
        store_result_free(res);
        return ret;
}

enum MHD_Result api_tokens_revoke(struct request *req) {
        const char *id = api_param(req, 0);
        const char *params[1] = { id };
        struct store_result *res = NULL;
        int r;

        if (!api_serial_id_valid(id))
                return api_reply_not_found(req, "token", id);
        if (api_begin(req) < 0)
                return api_reply_db_error(req);
        r = api_fetch_one(req,
                          "UPDATE operator_tokens SET revoked_at = coalesce(revoked_at, now())"
                          " WHERE id = $1::bigint RETURNING name",
                          1, params, &res);
        if (r <= 0)
                return api_reply_not_found_or_db_error(req, r, "token", id);
        r = api_audit(req, "io.homing.token.revoked", id,
                      json_pack("{s:I, s:s}", "token_id", (json_int_t)strtoll(id, NULL, 10), "name",
                                store_text(res, 0, 0)));
        store_result_free(res);
        if (r < 0 || api_commit(req) < 0)
                return api_reply_db_error(req);
        api_tokens_forget(req->api);
        return api_reply_empty(req, 204);
}

enum MHD_Result api_device_tokens_create(struct request *req) {
        static const char *const no_store[] = { "Cache-Control", "no-store", NULL };
        enum MHD_Result ret;
        json_t *body = req->input, *ttl;
        const char *device, *user;
        char *token = NULL, expires[REPORT_TIME_LEN];
        int64_t exp_s;
        int r;

        if (auth_keyring_size(req->api->device_keys) == 0) {
                ret = api_reply_problem(req, 503, "no-device-token-keys",
                                        "Device tokens are not configured",
                                        "start homing with --device-token-keys", NULL);
                goto out;
        }
        device = json_string_value(json_object_get(body, "device_id"));
        user = json_string_value(json_object_get(body, "user_id"));
        ttl = json_object_get(body, "ttl_s");
        exp_s = (int64_t)time(NULL) + (ttl ? (int64_t)json_integer_value(ttl) : 30 * 86400);
        r = auth_device_token_mint(req->api->device_keys, device, user, exp_s, &token);
        if (r < 0) {
                ret = api_reply_problem(req, 500, "internal", "Internal error",
                                        "the token could not be made", NULL);
                goto out;
        }
        report_format_time(exp_s * 1000, expires);
        if (api_begin(req) < 0 ||
            api_audit(req, "io.homing.device_token.minted", device,
                      json_pack("{s:s, s:s, s:s, s:s}", "device_id", device, "user_id", user,
                                "expires_at", expires, "kid",
                                auth_keyring_signing_kid(req->api->device_keys))) < 0 ||
            api_commit(req) < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        ret = api_reply(req, 201,
                        json_pack("{s:s, s:s, s:s, s:s, s:s}", "token", token, "device_id", device,
                                  "user_id", user, "kid",
                                  auth_keyring_signing_kid(req->api->device_keys), "expires_at",
                                  expires),
                        no_store);
out:
        free(token);
        return ret;
}
