/*
 * /v1/agent/: what the transfer agents call, each with an agent token that
 * speaks for one datacenter (req->who.datacenter_id). agent/README.md is the
 * contract; in short:
 *
 *  - An agent says where it answers its peers (PUT endpoint), claims the
 *    next due transfer *into* its datacenter (queued, or running under an
 *    expired lease; most urgent, then oldest: homing_transfer_claim() in
 *    migration 012), keeps it by reporting progress (which renews the
 *    lease), and ends it: succeeded (the digest of its copy must be the
 *    registered version's; the placement moves to it) or failed (retried
 *    after a back-off while attempts are left, else failed for good).
 *  - A claim hands out a pull ticket, 32 random bytes of which only the
 *    SHA-256 is kept. The source agent asks pulls/verify whether a ticket
 *    opens a transfer *from* its datacenter (or from it as the template's
 *    source) before it serves a byte.
 *  - The agent where a snapshot is active registers its new versions, one
 *    after the other; the active placement moves to the new version.
 *
 * Ownership: progress, succeeded and failed act only on a transfer that is
 * running under the caller's owner name (409 transfer-not-running
 * otherwise: it was cancelled, or its lease went to another owner). A
 * transfer of another datacenter is 404, as if it did not exist.
 *
 * Every write is one transaction with its audit event (io.homing.transfer.
 * running, succeeded, requeued, failed; io.homing.snapshot.version_registered),
 * except progress: a single conditional UPDATE, no event.
 */
#include "api/agent.h"

#include <errno.h>
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
#include "api/transfers.h"
#include "base/config.h"
#include "auth/auth.h"
#include "store/store.h"

#define LEASE_DEFAULT_S 30
#define LEASE_MIN_S 5
#define LEASE_MAX_S 3600

/* ---- helpers --------------------------------------------------------------------------- */

static bool hex64(const char *s) {
        if (!s || strlen(s) != 64)
                return false;
        for (size_t i = 0; i < 64; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static const char *body_string(const json_t *body, const char *name) {
        return json_string_value(json_object_get(body, name));
}

/* A whole-number member as decimal text into buf (NULL when absent). */
static const char *body_int(const json_t *body, const char *name, char buf[24]) {
        const json_t *v = json_object_get(body, name);
        if (!json_is_integer(v))
                return NULL;
        snprintf(buf, 24, "%lld", (long long)json_integer_value(v));
        return buf;
}

static enum MHD_Result not_running(struct request *req, const char *state, const char *owner,
                                   const char *mine) {
        char detail[384];

        if (strcmp(state, "running") != 0)
                snprintf(detail, sizeof(detail), "the transfer is %s, not running: stop", state);
        else
                snprintf(detail, sizeof(detail),
                         "the transfer's lease is held by '%.128s', not '%.128s': stop",
                         owner ? owner : "", mine);
        return api_reply_conflict(req, "transfer-not-running", detail);
}

/* An agent's write of its transfer ends as an operator's does: audited, committed, shown. */
static enum MHD_Result commit_transfer(struct request *req, const char *id, const char *snapshot,
                                       const char *audit_type, json_t *audit_data) {
        return api_transfer_commit_and_reply(req, id, 200, audit_type, snapshot, audit_data);
}

/* A transfer into the caller's datacenter, locked for the rest of the transaction. */
struct own_transfer {
        char state[16];
        char owner[257];
        bool has_owner;
        char snapshot[257];
        char version[24];
        char registered[65]; /* the registered version's digest, "" when none */
        int64_t attempts;
};

/* A transfer into the caller's datacenter, locked by the flow (flow.c) for the handler. */
const struct api_resource api_agent_transfer_resource = {
        "transfer",
        "/v1/transfers",
        API_SELECT_TRANSFER,
        "SELECT t.state, t.lease_owner, t.snapshot_id, t.version, v.content_sha256, t.attempts"
        " FROM transfers t LEFT JOIN snapshot_versions v"
        "   ON v.snapshot_id = t.snapshot_id AND v.version = t.version"
        " WHERE t.id = $1::bigint AND t.to_dc = $2 FOR UPDATE OF t",
        true,
        api_serial_id_valid,
        NULL,
};

static bool held_by(const struct own_transfer *t, const char *owner) {
        return !strcmp(t->state, "running") && t->has_owner && !strcmp(t->owner, owner);
}

/*
 * The locked transfer (req->locked) into *t, which the body's owner must
 * hold running. True, or false after answering 409.
 */
static bool held_transfer(struct request *req, struct own_transfer *t, enum MHD_Result *ret) {
        const struct store_result *res = req->locked;
        const char *owner = body_string(req->input, "owner");

        memset(t, 0, sizeof(*t));
        snprintf(t->state, sizeof(t->state), "%s", store_text(res, 0, 0));
        t->has_owner = store_text(res, 0, 1) != NULL;
        snprintf(t->owner, sizeof(t->owner), "%s", t->has_owner ? store_text(res, 0, 1) : "");
        snprintf(t->snapshot, sizeof(t->snapshot), "%s", store_text(res, 0, 2));
        snprintf(t->version, sizeof(t->version), "%s",
                 store_text(res, 0, 3) ? store_text(res, 0, 3) : "");
        snprintf(t->registered, sizeof(t->registered), "%s",
                 store_text(res, 0, 4) ? store_text(res, 0, 4) : "");
        t->attempts = store_int(res, 0, 5);
        if (!held_by(t, owner)) {
                *ret = not_running(req, t->state, t->owner, owner);
                return false;
        }
        return true;
}

/* ---- what the routes' bodies hold (router.c) ------------------------------------------- */

const struct api_field api_agent_endpoint_fields[] = {
        { "url", FIELD_STRING, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_agent_claim_fields[] = {
        { "owner", FIELD_STRING, true, false, 0, 0 },
        { "lease_s", FIELD_INTEGER, false, false, LEASE_MIN_S, LEASE_MAX_S },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_agent_progress_fields[] = {
        { "owner", FIELD_STRING, true, false, 0, 0 },
        { "bytes_done", FIELD_COUNT, true, false, 0, 0 },
        { "bytes_sent", FIELD_COUNT, true, false, 0, 0 },
        { "bytes_total", FIELD_COUNT, false, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_agent_succeeded_fields[] = {
        { "owner", FIELD_STRING, true, false, 0, 0 },
        { "content_sha256", FIELD_STRING, true, false, 0, 0 },
        { "bytes_sent", FIELD_COUNT, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_agent_pause_fields[] = {
        { "owner", FIELD_STRING, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_agent_failed_fields[] = {
        { "owner", FIELD_STRING, true, false, 0, 0 },
        { "error", FIELD_STRING, true, false, 0, 0 },
        { "retry", FIELD_BOOLEAN, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_agent_pull_verify_fields[] = {
        { "transfer_id", FIELD_COUNT, true, false, 0, 0 },
        { "ticket", FIELD_STRING, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_agent_version_register_fields[] = {
        { "version", FIELD_INTEGER, true, false, 1, 9.0e15 },
        { "content_sha256", FIELD_STRING, true, false, 0, 0 },
        { "size_bytes", FIELD_COUNT, true, false, 0, 0 },
        { "virtual_size", FIELD_COUNT, true, false, 0, 0 },
        { "config", FIELD_OBJECT, false, false, 0, 0 },
        { "changed_bytes", FIELD_COUNT, false, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_agent_evictions_fields[] = { { NULL, 0, false, false, 0, 0 } };

/* The snapshot an agent registers a version of, locked by the flow for the handler. */
const struct api_resource api_agent_snapshot_resource = {
        "snapshot",
        "/v1/snapshots",
        NULL,
        "SELECT s.version, s.size_bytes,"
        " (SELECT p.datacenter_id FROM placements p WHERE p.snapshot_id = s.id AND p.active),"
        " EXISTS (SELECT 1 FROM transfers t WHERE t.snapshot_id = s.id AND t.state = 'running'"
        "   AND t.kind = 'move'),"
        " EXISTS (SELECT 1 FROM snapshot_versions v"
        "   WHERE v.snapshot_id = s.id AND v.version = s.version)"
        " FROM snapshots s WHERE s.id = $1 FOR UPDATE",
        false,
        NULL,
        NULL,
};

/* A body's content_sha256: 64 lower-case hex digits. */
bool api_agent_digest_valid(struct request *req, enum MHD_Result *reply) {
        if (hex64(body_string(req->input, "content_sha256")))
                return true;
        *reply = api_reply_invalid(req, "/content_sha256", "is 64 lower-case hex digits");
        return false;
}

/* ---- PUT /v1/agent/endpoint ------------------------------------------------------------ */

static bool url_valid(const char *url) {
        size_t skip = !strncmp(url, "http://", 7) ? 7 : !strncmp(url, "https://", 8) ? 8 : 0;

        if (!skip || !url[skip])
                return false;
        for (const char *p = url; *p; p++)
                if ((unsigned char)*p <= ' ' || *p == 0x7f)
                        return false;
        return true;
}

enum MHD_Result api_agent_endpoint(struct request *req) {
        enum MHD_Result ret;
        json_t *body = req->input;
        const char *url;

        url = body_string(body, "url");
        if (!url_valid(url)) {
                ret = api_reply_invalid(req, "/url",
                                        "is an http:// or https:// URL without spaces");
                goto out;
        }
        {
                /* Only a change is written: an agent says it at every start. */
                const char *params[2] = { req->who.datacenter_id, url };
                if (api_exec(req,
                             "UPDATE datacenters SET agent_url = $2, updated_at = now()"
                             " WHERE id = $1 AND agent_url IS DISTINCT FROM $2",
                             2, params, NULL) < 0) {
                        ret = api_reply_db_error(req);
                        goto out;
                }
        }
        ret = api_reply_json(req, 200,
                             json_pack("{s:s, s:s}", "datacenter_id", req->who.datacenter_id, "url",
                                       url));
out:
        return ret;
}

/* ---- POST /v1/agent/evictions ----------------------------------------------------------- */

/*
 * The cached copies at the caller's datacenter that are to go (older than
 * --cache-max-age-s, or the oldest while the datacenter is above
 * --cache-high-water of its capacity), marked evicted in the same
 * transaction; the agent deletes their files. Every copy evicted is an
 * audit event.
 */
enum MHD_Result api_agent_evictions(struct request *req) {
        enum MHD_Result ret;
        json_t *items = NULL;
        struct store_result *res = NULL;
        char age[24], water[32];
        int r;

        snprintf(age, sizeof(age), "%ld", req->api->cfg->cache_max_age_s);
        snprintf(water, sizeof(water), "%.6f", req->api->cfg->cache_high_water);
        {
                const char *params[3] = { req->who.datacenter_id, age, water };
                r = api_begin(req);
                if (r == 0)
                        r = api_exec(req,
                                     "SELECT * FROM homing_cache_evict($1, $2::bigint, $3::float8)",
                                     3, params, &res);
        }
        items = json_array();
        for (size_t i = 0; r == 0 && i < store_rows(res); i++) {
                json_t *item = json_pack("{s:I, s:s, s:I, s:I}", "placement_id",
                                         (json_int_t)store_int(res, i, 0), "snapshot_id",
                                         store_text(res, i, 1), "version",
                                         (json_int_t)store_int(res, i, 2), "size_bytes",
                                         (json_int_t)store_int(res, i, 3));
                json_t *event = json_deep_copy(item);
                json_object_set_new(event, "datacenter_id", json_string(req->who.datacenter_id));
                json_array_append_new(items, item);
                r = api_audit(req, "io.homing.placement.evicted", store_text(res, i, 1), event);
        }
        if (r == 0)
                r = api_commit(req);
        if (r < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        ret = api_reply_json(req, 200, json_pack("{s:O}", "evicted", items));
out:
        json_decref(items);
        store_result_free(res);
        return ret;
}

/* ---- POST /v1/agent/claim --------------------------------------------------------------- */

/*
 * The job: the claimed transfer with what the agent needs to run it. The
 * template's source is the nearest datacenter (great circle; a ranking, so
 * the sphere is enough) that holds the template and has an agent, when the
 * target still lacks it. have_versions: the target's cached copies.
 */
static const char claim_sql[] =
        "WITH c AS (SELECT * FROM homing_transfer_claim($1, $2, $3::int, $4))"
        " SELECT c.id, c.snapshot_id, json_build_object("
        "  'transfer_id', c.id, 'snapshot_id', c.snapshot_id, 'version', c.version,"
        "  'content_sha256', v.content_sha256, 'template_id', c.template_id,"
        "  'template_present', x.present, 'from_dc', c.from_dc, 'source_url', src.agent_url,"
        "  'template_source_url', CASE WHEN x.present THEN NULL ELSE ("
        "    SELECT d.agent_url FROM template_replicas r JOIN datacenters d"
        "      ON d.id = r.datacenter_id"
        "    WHERE r.template_id = c.template_id AND d.id <> c.to_dc"
        "      AND d.agent_url IS NOT NULL AND d.status <> 'down'"
        "    ORDER BY asin(least(1, sqrt(power(sin(radians(d.lat - me.lat) / 2), 2)"
        "      + cos(radians(me.lat)) * cos(radians(d.lat))"
        "        * power(sin(radians(d.lon - me.lon) / 2), 2)))), d.id"
        "    LIMIT 1) END,"
        "  'priority', c.priority, 'bytes_total', c.bytes_total, 'lease_s', c.lease_s,"
        "  'lease_expires_at', homing_time(c.lease_expires_at), 'attempt', c.attempts,"
        "  'max_attempts', c.max_attempts,"
        "  'have_versions', coalesce((SELECT json_agg(h.version ORDER BY h.version) FROM"
        "    (SELECT DISTINCT p.version FROM placements p WHERE p.snapshot_id = c.snapshot_id"
        "     AND p.datacenter_id = c.to_dc AND NOT p.active AND p.evicted_at IS NULL) h),"
        "    '[]'::json))::text"
        " FROM c"
        " JOIN datacenters me ON me.id = c.to_dc"
        " LEFT JOIN datacenters src ON src.id = c.from_dc"
        " LEFT JOIN snapshot_versions v ON v.snapshot_id = c.snapshot_id AND v.version = c.version"
        " CROSS JOIN LATERAL (SELECT c.template_present OR EXISTS (SELECT 1"
        "   FROM template_replicas r WHERE r.template_id = c.template_id"
        "   AND r.datacenter_id = c.to_dc) AS present) x";

/*
 * Transfers into this datacenter whose agent went silent on their last
 * attempt (running, the lease run out, no attempts left) end failed rather
 * than be taken over forever, each with its event. In the claim's
 * transaction: what this claim finds dead, no other claim takes.
 */
static const char fail_abandoned_sql[] =
        "SELECT d.id, d.snapshot_id, homing_transfer_ended(d.id, 'failed',"
        "  format('its agent went silent: the lease ran out on attempt %s of %s', d.attempts,"
        "         d.max_attempts))"
        " FROM (SELECT id, snapshot_id, attempts, max_attempts FROM transfers"
        "  WHERE to_dc = $1 AND state = 'running' AND lease_expires_at < now()"
        "    AND attempts >= max_attempts"
        "  ORDER BY id FOR UPDATE SKIP LOCKED) d";

static int fail_abandoned(struct request *req) {
        struct store_result *dead = NULL, *res = NULL;
        const char *dc[1] = { req->who.datacenter_id };
        int r = api_exec(req, fail_abandoned_sql, 1, dc, &dead);

        for (size_t i = 0; r >= 0 && i < store_rows(dead); i++) {
                const char *id[1] = { store_text(dead, i, 0) };
                json_t *data, *transfer;

                if (!store_bool(dead, i, 2))
                        continue; /* ended meanwhile */
                r = api_fetch_one(req, API_SELECT_TRANSFER, 1, id, &res);
                if (r <= 0) {
                        r = r < 0 ? r : -EIO;
                        break;
                }
                transfer = json_loads(store_text(res, 0, 1), 0, NULL);
                res = store_result_free(res);
                data = json_pack("{s:I, s:O, s:O, s:b, s:o}", "transfer_id",
                                 (json_int_t)strtoll(id[0], NULL, 10), "error",
                                 json_object_get(transfer, "error"), "attempts",
                                 json_object_get(transfer, "attempts"), "retry", 0, "transfer",
                                 transfer);
                r = data ? api_audit(req, "io.homing.transfer.failed", store_text(dead, i, 1), data)
                         : -ENOMEM;
        }
        store_result_free(dead);
        return r < 0 ? r : 0;
}

enum MHD_Result api_agent_claim(struct request *req) {
        enum MHD_Result ret;
        json_t *body = req->input, *job = NULL, *data;
        struct store_result *res = NULL;
        char lease[24], hash[65], id[24], snapshot[257], *ticket = NULL;
        const char *owner;
        int r;

        owner = body_string(body, "owner");
        if (!body_int(body, "lease_s", lease))
                snprintf(lease, sizeof(lease), "%d", LEASE_DEFAULT_S);
        if (auth_secret_generate(&ticket) < 0) {
                ret = api_reply_problem(req, 500, "internal", "Internal error",
                                        "no random bytes for the pull ticket", NULL);
                goto out;
        }
        auth_sha256_hex(ticket, strlen(ticket), hash);
        if (api_begin(req) < 0 || fail_abandoned(req) < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        {
                const char *params[4] = { req->who.datacenter_id, owner, lease, hash };
                r = api_fetch_one(req, claim_sql, 4, params, &res);
        }
        if (r < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        if (r == 0) {
                /* Nothing to run; what fail_abandoned ended stays ended. */
                ret = api_commit(req) < 0 ? api_reply_db_error(req) : api_reply_empty(req, 204);
                goto out;
        }
        snprintf(id, sizeof(id), "%s", store_text(res, 0, 0));
        snprintf(snapshot, sizeof(snapshot), "%s", store_text(res, 0, 1));
        job = json_loads(store_text(res, 0, 2), 0, NULL);
        res = store_result_free(res);
        if (!job) {
                ret = api_reply_db_error(req);
                goto out;
        }
        data = json_pack("{s:I, s:s, s:O}", "transfer_id", (json_int_t)strtoll(id, NULL, 10),
                         "owner", owner, "attempt", json_object_get(job, "attempt"));
        {
                /* The event says what the claim made of the transfer; the
                 * answer is the job, with the ticket only it carries. */
                const char *params[1] = { id };
                if (api_fetch_one(req, API_SELECT_TRANSFER, 1, params, &res) <= 0) {
                        json_decref(data);
                        ret = api_reply_db_error(req);
                        goto out;
                }
                json_object_set_new(data, "transfer", json_loads(store_text(res, 0, 1), 0, NULL));
        }
        if (api_audit(req, "io.homing.transfer.running", snapshot, data) < 0 ||
            api_commit(req) < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        json_object_set_new(job, "ticket", json_string(ticket));
        ret = api_reply_json(req, 200, job);
        job = NULL;
out:
        if (ticket) {
                explicit_bzero(ticket, strlen(ticket));
                free(ticket);
        }
        json_decref(job);
        store_result_free(res);
        return ret;
}

/* ---- POST /v1/agent/transfers/{id}/progress ------------------------------------------- */

enum MHD_Result api_agent_progress(struct request *req) {
        const char *id = api_param(req, 0);
        enum MHD_Result ret;
        json_t *body = req->input;
        struct store_result *res = NULL;
        char done[24], sent[24];
        int r;

        if (!api_serial_id_valid(id)) {
                ret = api_reply_not_found(req, "transfer", id);
                goto out;
        }
        {
                /* The whole of the usual case: one statement, its own transaction. */
                const char *params[5] = { id, body_string(body, "owner"),
                                          body_int(body, "bytes_done", done),
                                          body_int(body, "bytes_sent", sent),
                                          req->who.datacenter_id };
                r = api_fetch_one(req,
                                  "UPDATE transfers SET bytes_done = $3::bigint,"
                                  " bytes_sent = $4::bigint,"
                                  " lease_expires_at = now() + make_interval(secs => lease_s),"
                                  " updated_at = now()"
                                  " WHERE id = $1::bigint AND to_dc = $5 AND state = 'running'"
                                  "   AND lease_owner = $2"
                                  " RETURNING homing_time(lease_expires_at), EXISTS ("
                                  "   SELECT 1 FROM transfers w WHERE w.to_dc = $5"
                                  "   AND w.state = 'queued' AND w.priority < transfers.priority"
                                  "   AND (w.not_before IS NULL OR w.not_before <= now()))",
                                  5, params, &res);
        }
        if (r < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        if (r == 1) {
                ret = api_reply_json(req, 200,
                                     json_pack("{s:s, s:s, s:b}", "state", "running",
                                               "lease_expires_at", store_text(res, 0, 0),
                                               "more_urgent_waiting", store_bool(res, 0, 1)));
                goto out;
        }
        {
                /* Why not: gone (or another datacenter's), or not ours any more. */
                const char *params[2] = { id, req->who.datacenter_id };
                r = api_fetch_one(req,
                                  "SELECT state, lease_owner FROM transfers"
                                  " WHERE id = $1::bigint AND to_dc = $2",
                                  2, params, &res);
        }
        if (r <= 0)
                ret = api_reply_not_found_or_db_error(req, r, "transfer", id);
        else
                ret = not_running(req, store_text(res, 0, 0), store_text(res, 0, 1),
                                  body_string(body, "owner"));
out:
        store_result_free(res);
        return ret;
}

/* ---- POST /v1/agent/transfers/{id}/succeeded ------------------------------------------ */

enum MHD_Result api_agent_succeeded(struct request *req) {
        const char *id = api_param(req, 0), *digest;
        enum MHD_Result ret;
        json_t *body = req->input;
        struct own_transfer t;
        char sent[24];
        int r;

        digest = body_string(body, "content_sha256");
        if (!held_transfer(req, &t, &ret))
                goto out;
        if (t.registered[0] && strcmp(t.registered, digest) != 0) {
                char detail[256];
                snprintf(detail, sizeof(detail),
                         "the copy's digest is not the one registered for version %s: it is "
                         "not trusted, nothing changed",
                         t.version);
                ret = api_reply_problem(req, 422, "digest-mismatch", "The copy is not verified",
                                        detail,
                                        json_pack("{s:[{s:s, s:s}], s:s}", "errors", "pointer",
                                                  "/content_sha256", "detail", detail,
                                                  "expected_sha256", t.registered));
                goto out;
        }
        {
                const char *params[2] = { id, body_int(body, "bytes_sent", sent) };
                const char *ended[2] = { id, digest };
                struct store_result *res = NULL;
                r = api_exec(req,
                             "UPDATE transfers SET bytes_sent = $2::bigint WHERE id = $1::bigint",
                             2, params, NULL);
                if (r >= 0)
                        r = api_fetch_one(req, "SELECT homing_transfer_succeeded($1::bigint, $2)",
                                          2, ended, &res);
                if (r > 0 && !store_bool(res, 0, 0))
                        r = -EIO;
                store_result_free(res);
                if (r < 0) {
                        ret = api_reply_db_error(req);
                        goto out;
                }
        }
        ret = commit_transfer(req, id, t.snapshot, "io.homing.transfer.succeeded",
                              json_pack("{s:I, s:s, s:I, s:O}", "transfer_id",
                                        (json_int_t)strtoll(id, NULL, 10), "content_sha256", digest,
                                        "version", (json_int_t)strtoll(t.version, NULL, 10),
                                        "bytes_sent", json_object_get(body, "bytes_sent")));
out:
        return ret;
}

/* ---- POST /v1/agent/transfers/{id}/pause ---------------------------------------------- */

/*
 * The agent steps aside for a more urgent transfer: this one goes back to
 * the queue as it was (the attempt it had is given back, the partial image
 * stays at the target, so the next claim resumes it).
 */
enum MHD_Result api_agent_pause(struct request *req) {
        const char *id = api_param(req, 0);
        enum MHD_Result ret;
        struct own_transfer t;
        int r;

        if (!held_transfer(req, &t, &ret))
                goto out;
        {
                const char *params[1] = { id };
                r = api_exec(req,
                             "UPDATE transfers SET state = 'queued', lease_owner = NULL,"
                             " lease_expires_at = NULL, pull_ticket_sha256 = NULL,"
                             " attempts = greatest(attempts - 1, 0), updated_at = now()"
                             " WHERE id = $1::bigint",
                             1, params, NULL);
        }
        if (r < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        ret = commit_transfer(req, id, t.snapshot, "io.homing.transfer.paused",
                              json_pack("{s:I, s:s}", "transfer_id",
                                        (json_int_t)strtoll(id, NULL, 10), "reason",
                                        "a more urgent transfer waits for this datacenter"));
out:
        return ret;
}

/* ---- POST /v1/agent/transfers/{id}/failed --------------------------------------------- */

enum MHD_Result api_agent_failed(struct request *req) {
        const char *id = api_param(req, 0), *error;
        enum MHD_Result ret;
        json_t *body = req->input;
        struct store_result *res = NULL;
        struct own_transfer t;
        bool retry, requeued = false;
        int r;

        error = body_string(body, "error");
        retry = json_is_true(json_object_get(body, "retry"));
        if (!held_transfer(req, &t, &ret))
                goto out;
        {
                const char *params[3] = { id, error, retry ? "true" : "false" };
                r = api_fetch_one(req, "SELECT homing_transfer_failed($1::bigint, $2, $3::boolean)",
                                  3, params, &res);
                if (r > 0 && !store_text(res, 0, 0))
                        r = -EIO;
                if (r > 0) {
                        requeued = !strcmp(store_text(res, 0, 0), "queued");
                        res = store_result_free(res);
                        /* A statement of its own: it sees what the function wrote. */
                        r = api_fetch_one(req,
                                          "SELECT homing_time(not_before) FROM transfers"
                                          " WHERE id = $1::bigint",
                                          1, params, &res);
                }
        }
        if (r <= 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        if (requeued)
                ret = commit_transfer(req, id, t.snapshot, "io.homing.transfer.requeued",
                                      json_pack("{s:I, s:s, s:I, s:s}", "transfer_id",
                                                (json_int_t)strtoll(id, NULL, 10), "error", error,
                                                "attempts", (json_int_t)t.attempts, "not_before",
                                                store_text(res, 0, 0) ? store_text(res, 0, 0)
                                                                      : ""));
        else
                ret = commit_transfer(req, id, t.snapshot, "io.homing.transfer.failed",
                                      json_pack("{s:I, s:s, s:I, s:b}", "transfer_id",
                                                (json_int_t)strtoll(id, NULL, 10), "error", error,
                                                "attempts", (json_int_t)t.attempts, "retry",
                                                retry));
out:
        store_result_free(res);
        return ret;
}

/* ---- POST /v1/agent/pulls/verify ------------------------------------------------------- */

/*
 * The ticket opens a running transfer to a peer when the caller is its
 * source (from_dc), or, while the target lacks the template, a datacenter
 * that holds the template (the target pulls the template from the nearest
 * one). "serves" says which.
 */
enum MHD_Result api_agent_pull_verify(struct request *req) {
        enum MHD_Result ret;
        json_t *body = req->input;
        struct store_result *res = NULL;
        char id[24], hash[65];
        const char *ticket;
        int r;

        ticket = body_string(body, "ticket");
        auth_sha256_hex(ticket, strlen(ticket), hash);
        {
                const char *params[3] = { body_int(body, "transfer_id", id), req->who.datacenter_id,
                                          hash };
                r = api_fetch_one(
                        req,
                        "SELECT json_build_object('transfer_id', t.id, 'snapshot_id', t.snapshot_id,"
                        "  'version', t.version, 'template_id', t.template_id, 'to_dc', t.to_dc,"
                        "  'serves', CASE WHEN t.from_dc = $2 THEN 'snapshot' ELSE 'template' END,"
                        "  'lease_expires_at', homing_time(t.lease_expires_at))::text"
                        " FROM transfers t"
                        " WHERE t.id = $1::bigint AND t.state = 'running'"
                        "   AND t.pull_ticket_sha256 = $3"
                        "   AND (t.from_dc = $2 OR (NOT t.template_present AND EXISTS (SELECT 1"
                        "     FROM template_replicas r WHERE r.template_id = t.template_id"
                        "     AND r.datacenter_id = $2)))",
                        3, params, &res);
        }
        if (r < 0)
                ret = api_reply_db_error(req);
        else if (r == 0)
                ret = api_reply_problem(req, 403, "forbidden", "Forbidden",
                                        "the ticket does not open a running transfer from this "
                                        "datacenter",
                                        NULL);
        else
                ret = api_reply_raw(req, 200, store_text(res, 0, 0), NULL);
        store_result_free(res);
        return ret;
}

/* ---- POST /v1/agent/snapshots/{id}/versions -------------------------------------------- */

#define VERSION_JSON                                                            \
        "json_build_object('snapshot_id', v.snapshot_id, 'version', v.version," \
        " 'content_sha256', v.content_sha256, 'size_bytes', v.size_bytes,"      \
        " 'virtual_size', v.virtual_size, 'config', v.config,"                  \
        " 'changed_bytes', v.changed_bytes,"                                    \
        " 'datacenter_id', v.datacenter_id, 'created_at', homing_time(v.created_at))"

enum MHD_Result api_agent_version_register(struct request *req) {
        const char *snapshot = api_param(req, 0), *digest, *dc = req->who.datacenter_id;
        enum MHD_Result ret;
        json_t *body = req->input, *data;
        const struct store_result *row = req->locked; /* the snapshot, locked by the flow */
        struct store_result *res = NULL;
        char version[24], size[24], vsize[24], old_size[24], detail[256], *config = NULL;
        long long current, wanted;
        bool fill_in;
        int r;

        digest = body_string(body, "content_sha256");
        body_int(body, "version", version);
        body_int(body, "size_bytes", size);
        body_int(body, "virtual_size", vsize);
        wanted = strtoll(version, NULL, 10);
        config = json_object_get(body, "config")
                         ? json_dumps(json_object_get(body, "config"), JSON_COMPACT)
                         : strdup("{}");
        if (!config) {
                ret = api_reply_db_error(req);
                goto out;
        }
        current = (long long)store_int(row, 0, 0);
        snprintf(old_size, sizeof(old_size), "%s", store_text(row, 0, 1));
        if (!store_text(row, 0, 2) || strcmp(store_text(row, 0, 2), dc) != 0) {
                snprintf(detail, sizeof(detail),
                         "the snapshot is active at %.64s, not here: only the datacenter "
                         "holding its active placement registers its versions",
                         store_text(row, 0, 2) ? store_text(row, 0, 2) : "no datacenter");
                ret = api_reply_conflict(req, "not-active-here", detail);
                goto out;
        }
        if (store_bool(row, 0, 3)) {
                ret = api_reply_conflict(req, "snapshot-in-transfer",
                                         "a transfer of the snapshot is running: register the "
                                         "new version once it has ended");
                goto out;
        }
        /* The next version; or the current one, once, when its content was
         * never registered (snapshots from before agents, or made by POST
         * /v1/snapshots at version 1). */
        fill_in = wanted == current && !store_bool(row, 0, 4);
        if (wanted != current + 1 && !fill_in) {
                snprintf(detail, sizeof(detail),
                         "the snapshot is at version %lld: the next one is %lld", current,
                         current + 1);
                ret = api_reply_problem(
                        req, 409, "not-next-version", "Conflict with the current state", detail,
                        json_pack("{s:I}", "next_version", (json_int_t)(current + 1)));
                goto out;
        }
        {
                char changed_buf[24];
                const char *changed = body_int(body, "changed_bytes", changed_buf);
                const char *params[8] = { snapshot, version, digest, size,
                                          vsize,    config,  dc,     changed };
                const char *placement[4] = { snapshot, version, digest, dc };
                const char *snap[3] = { snapshot, version, size };
                r = api_exec(req,
                             "INSERT INTO snapshot_versions (snapshot_id, version, content_sha256,"
                             " size_bytes, virtual_size, config, datacenter_id, changed_bytes)"
                             " VALUES ($1, $2::bigint, $3, $4::bigint, $5::bigint, $6::jsonb, $7,"
                             " $8::bigint)",
                             8, params, NULL);
                /* The active placement moves to the new version (the old copy
                 * stays, a cached one), or learns its digest. */
                if (r >= 0 && !fill_in)
                        r = api_exec(req,
                                     "UPDATE placements SET active = false, deactivated_at = now()"
                                     " WHERE snapshot_id = $1 AND active",
                                     1, placement, NULL);
                if (r >= 0 && !fill_in)
                        r = api_exec(
                                req,
                                "INSERT INTO placements (snapshot_id, datacenter_id, version,"
                                " active, content_sha256) VALUES ($1, $4, $2::bigint, true, $3)",
                                4, placement, NULL);
                if (r >= 0 && fill_in)
                        r = api_exec(req,
                                     "UPDATE placements SET content_sha256 = $3"
                                     " WHERE snapshot_id = $1 AND active AND version = $2::bigint",
                                     3, placement, NULL);
                if (r >= 0)
                        r = api_exec(req,
                                     "UPDATE snapshots SET version = $2::bigint,"
                                     " size_bytes = $3::bigint, updated_at = now() WHERE id = $1",
                                     3, snap, NULL);
                /* Transfers not yet started move the new version. */
                if (r >= 0)
                        r = api_exec(req,
                                     "UPDATE transfers SET version = $2::bigint, updated_at = now()"
                                     " WHERE snapshot_id = $1 AND state = 'queued'"
                                     "   AND version < $2::bigint",
                                     2, snap, NULL);
        }
        if (r >= 0 && strcmp(old_size, size) != 0) {
                const char *params[3] = { dc, size, old_size };
                r = api_exec(req,
                             "UPDATE datacenters SET used_bytes = greatest(used_bytes"
                             " + $2::bigint - $3::bigint, 0), updated_at = now() WHERE id = $1",
                             3, params, NULL);
        }
        if (r < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        {
                const char *params[2] = { snapshot, version };
                r = api_fetch_one(req,
                                  "SELECT " VERSION_JSON "::text FROM snapshot_versions v"
                                  " WHERE v.snapshot_id = $1 AND v.version = $2::bigint",
                                  2, params, &res);
        }
        if (r <= 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        data = json_pack("{s:s, s:I, s:s, s:s, s:I, s:I, s:b}", "snapshot_id", snapshot, "version",
                         (json_int_t)wanted, "content_sha256", digest, "datacenter_id", dc,
                         "size_bytes", (json_int_t)strtoll(size, NULL, 10), "virtual_size",
                         (json_int_t)strtoll(vsize, NULL, 10), "placement_moved", !fill_in);
        if (api_audit(req, "io.homing.snapshot.version_registered", snapshot, data) < 0 ||
            api_commit(req) < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        ret = api_reply_raw(req, 201, store_text(res, 0, 0), NULL);
out:
        free(config);
        store_result_free(res);
        return ret;
}
