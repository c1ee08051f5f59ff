/*
 * Access control: every route says who may call it (route.h, enum
 * api_access); this file checks the bearer token against that.
 *
 *  - Device routes (/v1/locations, /v1/trips) take a device token, checked here
 *    with the keyring alone: no database round trip. The claims stay on the
 *    request: ingest refuses reports for another device or user, and a
 *    trip is the token's user's.
 *  - Operator routes take an operator token. Its SHA-256 is looked up among
 *    the unrevoked tokens (the secret itself is never stored); the token's
 *    role must reach the route's.
 *  - Agent routes (/v1/agent/) take an agent token, looked up the same way
 *    in agent_tokens; the principal is the agent of the token's datacenter,
 *    and the routes act for that datacenter only.
 *
 * A token found is remembered for --token-cache-s (by its SHA-256, with
 * what it grants), so a flood of requests costs no PostgreSQL round trip
 * each, and the API's operators keep working through a short outage. The
 * price: a token revoked through another process works here until then
 * (this process forgets at once).
 *
 * No or unknown credentials: 401. A known credential without the right: 403
 * (a device or operator token on an agent route, an agent token on an
 * operator route). Ingest knows device tokens only: anything else is 401.
 */
#include "api/access.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/input.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/route.h"
#include "api/state.h"
#include "auth/auth.h"
#include "auth/tokens.h"
#include "base/config.h"
#include "base/log.h"
#include "metrics/metrics.h"
#include "store/store.h"

static const char *bearer_token(struct request *req) {
        const char *h = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");

        if (!h || strncasecmp(h, "Bearer ", 7) != 0)
                return NULL;
        h += 7;
        h += strspn(h, " ");
        return *h ? h : NULL;
}

static enum MHD_Result unauthorized(struct request *req, const char *detail) {
        static const char *const challenge[] = { "WWW-Authenticate", "Bearer realm=\"homing\"",
                                                 NULL };
        metrics_counter_inc(req->api->auth_failures, NULL);
        return api_reply_problem_with(req, 401, "unauthorized", "Unauthorized", detail, NULL,
                                      challenge);
}

static enum MHD_Result forbidden(struct request *req, const char *detail) {
        return api_reply_problem(req, 403, "forbidden", "Forbidden", detail, NULL);
}

static const char *device_token_problem(int r) {
        switch (r) {
        case -EKEYEXPIRED:
                return "the device token has expired";
        case -ENOKEY:
                return "the device token's key is not (or no longer) known";
        case -EBADMSG:
                return "the device token's signature does not match";
        default:
                return "a device token (v1.<kid>.<payload>.<mac>) is required";
        }
}

static enum auth_role role_needed(enum api_access access) {
        switch (access) {
        case ACCESS_VIEWER:
                return AUTH_ROLE_VIEWER;
        case ACCESS_OPERATOR:
                return AUTH_ROLE_OPERATOR;
        case ACCESS_ADMIN:
                return AUTH_ROLE_ADMIN;
        default:
                return AUTH_ROLE_NONE;
        }
}

/* A token seen within --token-cache-s: true and req->who filled. */
static bool remembered(struct request *req, enum auth_token_kind kind, const char *hash) {
        struct api *a = req->api;
        double now = metrics_now();
        bool found = false;

        pthread_mutex_lock(&a->tokens_lock);
        for (size_t i = 0; i < sizeof(a->tokens_seen) / sizeof(a->tokens_seen[0]); i++) {
                const struct api_token_seen *e = &a->tokens_seen[i];
                if (e->until > now && e->kind == (int)kind && !strcmp(e->hash, hash)) {
                        req->who = e->who;
                        found = true;
                        break;
                }
        }
        pthread_mutex_unlock(&a->tokens_lock);
        return found;
}

/* Remembers req->who for `hash`, in place of the entry that expires first. */
static void remember(struct request *req, enum auth_token_kind kind, const char *hash) {
        struct api *a = req->api;
        struct api_token_seen *slot = &a->tokens_seen[0];

        if (a->cfg->token_cache_s <= 0)
                return;
        pthread_mutex_lock(&a->tokens_lock);
        for (size_t i = 0; i < sizeof(a->tokens_seen) / sizeof(a->tokens_seen[0]); i++)
                if (a->tokens_seen[i].until < slot->until)
                        slot = &a->tokens_seen[i];
        snprintf(slot->hash, sizeof(slot->hash), "%s", hash);
        slot->kind = (int)kind;
        slot->who = req->who;
        slot->until = metrics_now() + (double)a->cfg->token_cache_s;
        pthread_mutex_unlock(&a->tokens_lock);
}

void api_tokens_forget(struct api *a) {
        pthread_mutex_lock(&a->tokens_lock);
        memset(a->tokens_seen, 0, sizeof(a->tokens_seen));
        pthread_mutex_unlock(&a->tokens_lock);
}

/*
 * Looks the token up as `kind` (in the cache, else in PostgreSQL on
 * req->db, taken from the pool then); fills req->who. 1 found, 0 not, <0
 * database.
 */
static int lookup(struct request *req, enum auth_token_kind kind, const char *token) {
        struct auth_token t;
        char hash[65];
        int r;

        auth_sha256_hex(token, strlen(token), hash);
        if (remembered(req, kind, hash))
                return 1;
        if (!req->db)
                req->db = api_db_acquire(&req->api->pool);
        r = auth_token_lookup(req->db, kind, token, &t);
        if (r <= 0)
                return r;
        req->who.kind = kind == AUTH_TOKEN_OPERATOR ? PRINCIPAL_OPERATOR : PRINCIPAL_AGENT;
        req->who.token_id = t.id;
        snprintf(req->who.name, sizeof(req->who.name), "%s", t.name);
        if (kind == AUTH_TOKEN_OPERATOR)
                req->who.role = auth_role_parse(t.scope);
        else
                snprintf(req->who.datacenter_id, sizeof(req->who.datacenter_id), "%s", t.scope);
        remember(req, kind, hash);
        return 1;
}

/*
 * A bearer token that is not the kind the route takes: 403 when it is a
 * known credential of `kind`, 401 when not.
 */
static bool refuse_other_kind(struct request *req, const char *token, enum auth_token_kind kind,
                              const char *forbidden_detail, const char *unknown_detail,
                              enum MHD_Result *reply) {
        int r = lookup(req, kind, token);

        memset(&req->who, 0, sizeof(req->who));
        if (r < 0)
                *reply = api_reply_db_error(req);
        else if (r > 0)
                *reply = forbidden(req, forbidden_detail);
        else
                *reply = unauthorized(req, unknown_detail);
        return false;
}

/* The agent routes: an agent token, known and not revoked. */
static bool check_agent(struct request *req, const char *token, bool device_token,
                        enum MHD_Result *reply) {
        int r;

        if (device_token) {
                *reply = forbidden(req, "a device token may only post location reports and trips");
                return false;
        }
        if (auth_operator_token_wellformed(token))
                return refuse_other_kind(req, token, AUTH_TOKEN_OPERATOR,
                                         "an operator token cannot call the agent routes: "
                                         "they take an agent token (hag_...)",
                                         "the operator token is not known or was revoked", reply);
        if (!auth_agent_token_wellformed(token)) {
                *reply = unauthorized(req, "an agent token (hag_...) is required");
                return false;
        }
        r = lookup(req, AUTH_TOKEN_AGENT, token);
        if (r < 0) {
                *reply = api_reply_db_error(req);
                return false;
        }
        if (r == 0) {
                *reply = unauthorized(req, "the agent token is not known or was revoked");
                return false;
        }
        return true;
}

bool api_check_access(struct request *req, enum MHD_Result *reply) {
        enum api_access access = req->route->access;
        const char *token;
        struct auth_device_claims claims;
        int r;

        if (access == ACCESS_PUBLIC)
                return true;
        token = bearer_token(req);
        if (!token) {
                *reply = unauthorized(req, access == ACCESS_DEVICE
                                                   ? "send Authorization: Bearer <device token>"
                                           : access == ACCESS_AGENT
                                                   ? "send Authorization: Bearer <agent token>"
                                                   : "send Authorization: Bearer <operator token>");
                return false;
        }

        r = auth_device_token_verify(req->api->device_keys, token, (int64_t)time(NULL), &claims);
        if (access == ACCESS_AGENT)
                return check_agent(req, token, r == 0, reply);
        if (access == ACCESS_DEVICE) {
                if (r < 0) {
                        *reply = unauthorized(req, device_token_problem(r));
                        return false;
                }
                req->who.kind = PRINCIPAL_DEVICE;
                req->who.device = claims;
                snprintf(req->who.name, sizeof(req->who.name), "%s", claims.device_id);
                return true;
        }
        if (r == 0) {
                *reply = forbidden(req, "a device token may only post location reports and trips");
                return false;
        }
        if (auth_agent_token_wellformed(token))
                return refuse_other_kind(req, token, AUTH_TOKEN_AGENT,
                                         "an agent token may only call the /v1/agent/ routes",
                                         "the agent token is not known or was revoked", reply);
        if (!auth_operator_token_wellformed(token)) {
                *reply = unauthorized(req, "an operator token (hop_...) is required");
                return false;
        }
        r = lookup(req, AUTH_TOKEN_OPERATOR, token);
        if (r < 0) {
                *reply = api_reply_db_error(req);
                return false;
        }
        if (r == 0) {
                *reply = unauthorized(req, "the operator token is not known or was revoked");
                return false;
        }
        if (req->who.role < role_needed(access)) {
                char detail[320];
                snprintf(detail, sizeof(detail), "this needs the %s role; the token '%s' is %s",
                         auth_role_name(role_needed(access)), req->who.name,
                         auth_role_name(req->who.role));
                *reply = forbidden(req, detail);
                return false;
        }
        return true;
}
