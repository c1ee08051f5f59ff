/*
 * /v1/transfers: the moves the scheduler queued, and the replicate transfers
 * that keep warm replicas current (kind). Viewers list them (by state,
 * datacenter, snapshot, kind and time, newest first) and read one;
 * operators cancel and retry (a retry keeps the kind).
 *
 * The state machine: queued → running → succeeded | failed; queued or
 * running → cancelled (an operator). A retry never rewrites history: it
 * queues a new transfer that names the old one (retry_of), from where the
 * snapshot is now to the old target, with the idempotency key
 * "retry-of-<id>" — so a transfer is retried at most once (retry the retry
 * if it fails too), and a double click queues one transfer, not two. The
 * new transfer reserves its bytes at the target, and its job goes to the
 * transfers topic through the outbox, like the scheduler's. Cancelling goes
 * through homing_transfer_ended() (migration 002), which releases them.
 */
#include "api/transfers.h"

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
#include "base/config.h"
#include "geo/geo.h"
#include "report/report.h"
#include "store/store.h"

#define SELECT_ONE API_SELECT_TRANSFER

static bool state_list_valid(const char *list) {
        static const char *const states[] = { "queued", "running", "succeeded", "failed",
                                              "cancelled" };
        for (const char *p = list; *p;) {
                size_t n = strcspn(p, ","), i;
                for (i = 0; i < sizeof(states) / sizeof(states[0]); i++)
                        if (strlen(states[i]) == n && !memcmp(states[i], p, n))
                                break;
                if (i == sizeof(states) / sizeof(states[0]))
                        return false;
                p += n;
                if (*p == ',')
                        p++;
        }
        return *list != '\0';
}

/* An RFC 3339 query argument as Unix milliseconds in text; false when malformed. */
static bool query_time(struct request *req, const char *name, char out[24], const char **param) {
        const char *v = api_query(req, name);
        int64_t ms;

        *param = NULL;
        if (!v)
                return true;
        if (report_parse_time(v, &ms) < 0)
                return false;
        snprintf(out, 24, "%lld", (long long)ms);
        *param = out;
        return true;
}

enum MHD_Result api_transfers_list(struct request *req) {
        const char *state = api_query(req, "state"), *dc = api_query(req, "datacenter_id"),
                   *snapshot = api_query(req, "snapshot_id"), *kind = api_query(req, "kind"),
                   *since, *until;
        char since_ms[24], until_ms[24];
        struct api_page page;
        enum MHD_Result ret;

        if (state && !state_list_valid(state))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "state is a comma-separated list of queued, running, "
                                         "succeeded, failed, cancelled",
                                         NULL);
        if (kind && strcmp(kind, "move") != 0 && strcmp(kind, "replicate") != 0 &&
            strcmp(kind, "evacuate") != 0)
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "kind is move, replicate or evacuate", NULL);
        if (!query_time(req, "since", since_ms, &since) ||
            !query_time(req, "until", until_ms, &until))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "since and until are RFC 3339 date-times", NULL);
        if (!api_page_parse(req, &page, true, &ret))
                return ret;
        {
                const char *params[8] = {
                        state, dc, snapshot, since, until, page.after, page.limit_plus_one, kind
                };
                return api_reply_page_query(
                        req, &page,
                        "SELECT t.id, " API_TRANSFER_JSON "::text FROM transfers t"
                        " WHERE ($1::text IS NULL OR t.state = ANY (string_to_array($1, ',')))"
                        "   AND ($2::text IS NULL OR t.from_dc = $2 OR t.to_dc = $2)"
                        "   AND ($3::text IS NULL OR t.snapshot_id = $3)"
                        "   AND ($4::text IS NULL OR t.created_at >= to_timestamp($4::float8 / 1000))"
                        "   AND ($5::text IS NULL OR t.created_at < to_timestamp($5::float8 / 1000))"
                        "   AND ($6::bigint IS NULL OR t.id < $6::bigint)"
                        "   AND ($8::text IS NULL OR t.kind = $8)"
                        " ORDER BY t.id DESC LIMIT $7::int",
                        8, params);
        }
}

enum MHD_Result api_transfers_get(struct request *req) {
        const char *params[1] = { api_param(req, 0) };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int r;

        if (!api_serial_id_valid(params[0]))
                return api_reply_not_found(req, "transfer", params[0]);
        r = api_fetch_one(req, SELECT_ONE, 1, params, &res);
        if (r <= 0)
                return api_reply_not_found_or_db_error(req, r, "transfer", params[0]);
        ret = api_reply_raw(req, 200, store_text(res, 0, 1), NULL);
        store_result_free(res);
        return ret;
}

enum MHD_Result api_transfer_commit_and_reply(struct request *req, const char *id, unsigned status,
                                              const char *audit_type, const char *subject,
                                              json_t *audit_data) {
        const char *params[1] = { id };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        char location[64];
        const char *headers[3] = { "Location", location, NULL };

        if (api_fetch_one(req, SELECT_ONE, 1, params, &res) <= 0) {
                json_decref(audit_data);
                return api_reply_db_error(req);
        }
        json_object_set_new(audit_data, "transfer", json_loads(store_text(res, 0, 1), 0, NULL));
        if (api_audit(req, audit_type, subject, audit_data) < 0 || api_commit(req) < 0) {
                store_result_free(res);
                return api_reply_db_error(req);
        }
        snprintf(location, sizeof(location), "/v1/transfers/%s", id);
        ret = api_reply_raw(req, status, store_text(res, 0, 1), status == 201 ? headers : NULL);
        store_result_free(res);
        return ret;
}

const struct api_resource api_transfer_resource = {
        "transfer", "/v1/transfers",
        SELECT_ONE, "SELECT state, snapshot_id FROM transfers WHERE id = $1::bigint FOR UPDATE",
        false,      api_serial_id_valid,
        NULL,
};

enum MHD_Result api_transfers_cancel(struct request *req) {
        const char *id = api_param(req, 0);
        const char *state = store_text(req->locked, 0, 0),
                   *snapshot = store_text(req->locked, 0, 1);
        char detail[128];

        if (strcmp(state, "queued") != 0 && strcmp(state, "running") != 0) {
                snprintf(detail, sizeof(detail),
                         "the transfer is %s; only queued or running ones can be cancelled", state);
                return api_reply_conflict(req, "transfer-not-cancellable", detail);
        }
        {
                /* The schema's own way to end a transfer: it also releases the
                 * bytes the transfer had reserved at its target. */
                char error[200];
                const char *params[2] = { id, error };
                snprintf(error, sizeof(error), "cancelled by %s", req->who.name);
                if (api_exec(req, "SELECT homing_transfer_ended($1::bigint, 'cancelled', $2)", 2,
                             params, NULL) < 0)
                        return api_reply_db_error(req);
        }
        return api_transfer_commit_and_reply(req, id, 200, "io.homing.transfer.cancelled", snapshot,
                                             json_pack("{s:I, s:s}", "transfer_id",
                                                       (json_int_t)strtoll(id, NULL, 10),
                                                       "from_state", state));
}

/* After a retry inserted nothing: why not. */
static enum MHD_Result retry_refused(struct request *req, const char *id) {
        const char *params[1] = { id };
        struct store_result *res = NULL;
        char detail[192];
        int r = api_fetch_one(
                req,
                "SELECT (SELECT r.id FROM transfers r WHERE r.retry_of = o.id),"
                "       (SELECT x.id FROM transfers x WHERE x.snapshot_id = o.snapshot_id"
                "          AND x.state IN ('queued', 'running') AND x.kind = o.kind"
                "          AND (o.kind = 'move' OR x.to_dc = o.to_dc)),"
                "       (SELECT p.datacenter_id = o.to_dc FROM placements p"
                "          WHERE p.snapshot_id = o.snapshot_id AND p.active),"
                "       (SELECT d.status FROM datacenters d WHERE d.id = o.to_dc)"
                " FROM transfers o WHERE o.id = $1::bigint",
                1, params, &res);
        enum MHD_Result ret;

        if (r <= 0)
                return api_reply_db_error(req);
        if (store_text(res, 0, 0)) {
                snprintf(detail, sizeof(detail), "transfer %s was retried already: transfer %s", id,
                         store_text(res, 0, 0));
                ret = api_reply_conflict(req, "already-retried", detail);
        } else if (store_text(res, 0, 1)) {
                snprintf(detail, sizeof(detail),
                         "transfer %s of the same snapshot is queued or running",
                         store_text(res, 0, 1));
                ret = api_reply_conflict(req, "snapshot-in-transfer", detail);
        } else if (store_bool(res, 0, 2)) {
                ret = api_reply_conflict(req, "already-there",
                                         "the snapshot is already active at the target");
        } else {
                snprintf(detail, sizeof(detail), "the target datacenter is %s, not active",
                         store_text(res, 0, 3) ? store_text(res, 0, 3) : "gone");
                ret = api_reply_conflict(req, "target-unavailable", detail);
        }
        store_result_free(res);
        return ret;
}

/* 1 when the point lies in one of the zones (rows of id, GeoJSON text), 0 when not, <0. */
static int in_some_zone(const struct store_result *zones, double lat, double lon) {
        for (size_t i = 0; i < store_rows(zones); i++) {
                geo_zone *z = NULL;
                char err[128];
                int r = geo_zone_new(&z, store_text(zones, i, 0), store_text(zones, i, 1), err,
                                     sizeof(err));
                if (r < 0)
                        return r; /* stored zones were checked on the way in */
                r = geo_zone_covers(z, lat, lon);
                geo_zone_unref(z);
                if (r != 0)
                        return r;
        }
        return 0;
}

/*
 * What the scheduler checks before it moves a snapshot, checked for an
 * operator's retry too: the target has room for the transfer's bytes, and
 * lies in one of the snapshot's allowed zones (when it has any). True to
 * go on, false after answering 409 target-full or target-outside-zones (or
 * 503).
 */
static bool retry_target_fits(struct request *req, const char *id, enum MHD_Result *reply) {
        const char *params[1] = { id };
        struct store_result *res = NULL, *zones = NULL;
        char detail[256];
        bool ok = false;
        int r = api_fetch_one(
                req,
                "SELECT d.capacity_bytes - d.used_bytes - d.reserved_bytes,"
                "  s.size_bytes + CASE WHEN EXISTS (SELECT 1 FROM template_replicas x"
                "    WHERE x.template_id = o.template_id AND x.datacenter_id = o.to_dc)"
                "    THEN 0 ELSE tpl.size_bytes END,"
                "  d.lat, d.lon, array_to_string(s.allowed_zones, ', '), o.snapshot_id, d.id"
                " FROM transfers o JOIN snapshots s ON s.id = o.snapshot_id"
                " JOIN templates tpl ON tpl.id = o.template_id"
                " JOIN datacenters d ON d.id = o.to_dc WHERE o.id = $1::bigint",
                1, params, &res);

        if (r < 0) {
                *reply = api_reply_db_error(req);
                return false;
        }
        if (r == 0)
                return true; /* the insert finds nothing either: retry_refused says why */
        if (store_int(res, 0, 0) < store_int(res, 0, 1)) {
                snprintf(detail, sizeof(detail),
                         "datacenter %s has %lld bytes free and the transfer needs %lld",
                         store_text(res, 0, 6), (long long)store_int(res, 0, 0),
                         (long long)store_int(res, 0, 1));
                *reply = api_reply_conflict(req, "target-full", detail);
                goto out;
        }
        if (*store_text(res, 0, 4)) {
                const char *zparams[1] = { store_text(res, 0, 5) };
                if (api_exec(req,
                             "SELECT z.id, z.geojson::text FROM zones z JOIN snapshots s"
                             " ON z.id = ANY (s.allowed_zones) WHERE s.id = $1",
                             1, zparams, &zones) < 0) {
                        *reply = api_reply_db_error(req);
                        goto out;
                }
                r = in_some_zone(zones, store_double(res, 0, 2), store_double(res, 0, 3));
                if (r <= 0) {
                        snprintf(detail, sizeof(detail),
                                 "datacenter %s lies outside the snapshot's allowed zones (%s)",
                                 store_text(res, 0, 6), store_text(res, 0, 4));
                        *reply = r < 0 ? api_reply_db_error(req)
                                       : api_reply_conflict(req, "target-outside-zones", detail);
                        goto out;
                }
        }
        ok = true;
out:
        store_result_free(zones);
        store_result_free(res);
        return ok;
}

enum MHD_Result api_transfers_retry(struct request *req) {
        const char *id = api_param(req, 0);
        const char *state = store_text(req->locked, 0, 0),
                   *snapshot = store_text(req->locked, 0, 1);
        struct store_result *res = NULL;
        char detail[128], new_id[24];
        enum MHD_Result ret;
        int r;

        if (strcmp(state, "failed") != 0 && strcmp(state, "cancelled") != 0) {
                snprintf(detail, sizeof(detail),
                         "the transfer is %s; only failed or cancelled ones can be retried", state);
                return api_reply_conflict(req, "transfer-not-retryable", detail);
        }
        if (!retry_target_fits(req, id, &ret))
                return ret;
        {
                const char *params[2] = { id, req->api->cfg->topic_transfers };
                /* ON CONFLICT without a target: the retry key, and the one open
                 * transfer per snapshot, both turn into "nothing inserted". The
                 * job is every writer's (homing_transfer_job, migration 033). */
                r = api_fetch_one(
                        req,
                        "WITH t AS ("
                        "  INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
                        "    template_present, priority, reason, idempotency_key, bytes_total,"
                        "    retry_of, kind)"
                        "  SELECT o.snapshot_id, p.datacenter_id, o.to_dc, o.template_id, x.present,"
                        "    o.priority, 'operator-retry', 'retry-of-' || o.id,"
                        "    s.size_bytes + CASE WHEN x.present THEN 0 ELSE tpl.size_bytes END, o.id, o.kind"
                        "  FROM transfers o"
                        "  JOIN snapshots s ON s.id = o.snapshot_id"
                        "  JOIN templates tpl ON tpl.id = o.template_id"
                        "  JOIN datacenters d ON d.id = o.to_dc AND d.status = 'active'"
                        "  LEFT JOIN placements p ON p.snapshot_id = o.snapshot_id AND p.active"
                        "  CROSS JOIN LATERAL (SELECT EXISTS (SELECT 1 FROM template_replicas r"
                        "    WHERE r.template_id = o.template_id AND r.datacenter_id = o.to_dc)"
                        "    AS present) x"
                        "  WHERE o.id = $1::bigint AND p.datacenter_id IS DISTINCT FROM o.to_dc"
                        "  ON CONFLICT DO NOTHING RETURNING *),"
                        " reserve AS ("
                        "  UPDATE datacenters d SET reserved_bytes = d.reserved_bytes + t.bytes_total,"
                        "   updated_at = now() FROM t WHERE d.id = t.to_dc),"
                        " job AS ("
                        "  INSERT INTO outbox (topic, key, payload)"
                        "  SELECT $2, t.snapshot_id, homing_transfer_job(t::transfers) FROM t)"
                        "SELECT id FROM t",
                        2, params, &res);
        }
        if (r < 0)
                return api_reply_db_error(req);
        if (r == 0)
                return retry_refused(req, id);
        snprintf(new_id, sizeof(new_id), "%s", store_text(res, 0, 0));
        store_result_free(res);
        return api_transfer_commit_and_reply(
                req, new_id, 201, "io.homing.transfer.retried", snapshot,
                json_pack("{s:I, s:I}", "transfer_id", (json_int_t)strtoll(new_id, NULL, 10),
                          "retry_of", (json_int_t)strtoll(id, NULL, 10)));
}
