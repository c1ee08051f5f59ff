/*
 * /v1/failovers: what became of a site's snapshots when an operator
 * declared it down (migration 023 does the failover, in the status
 * change's transaction). A failover shows, per priority level, how many
 * snapshots failed over to a replica, how many of those the replica site's
 * agent has powered on under their new epoch (and when the last one was),
 * how many are unrecoverable until the site returns, and what was lost
 * (versions, seconds, bytes). Its snapshots are listed one by one. Once
 * the site is back, an operator fails them back: moves that send only what
 * the site's cached copy lacks. And
 * /v1/snapshots/{id}/restore answers a user's question: where will my next
 * restore come from, and what did a failover cost me.
 */
#include "api/failovers.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/audit.h"
#include "api/input.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/resource.h"
#include "api/state.h"
#include "base/config.h"
#include "store/store.h"

/* When the item's VM was first powered on under its failover epoch, over failover_items i. */
#define POWERED_ON_AT                                                                        \
        "(SELECT min(r.created_at) FROM power_records r WHERE r.snapshot_id = i.snapshot_id" \
        " AND r.datacenter_id = i.to_dc AND r.epoch = i.epoch AND r.state = 'powered_on')"

/* One level of failover f's progress, over its items i of that level. */
#define LEVEL_JSON                                                                  \
        "json_build_object('level', lv.level,"                                      \
        " 'snapshots', count(i.snapshot_id),"                                       \
        " 'failed_over', count(*) FILTER (WHERE i.outcome = 'failed_over'),"        \
        " 'to_power_on', count(*) FILTER (WHERE i.outcome = 'failed_over'"          \
        "                                 AND i.power = 'on'),"                     \
        " 'powered_on', count(i.powered_on_at),"                                    \
        " 'unrecoverable', count(*) FILTER (WHERE i.outcome = 'unrecoverable'),"    \
        " 'recovered', count(i.recovered_at),"                                      \
        " 'versions_lost', coalesce(sum(i.versions_lost), 0),"                      \
        " 'data_loss_s_max', round(coalesce(max(i.lag_s), 0)::numeric, 3),"         \
        " 'data_loss_bytes', coalesce(sum(i.bytes_behind), 0),"                     \
        " 'failback_queued', count(i.failback_transfer_id),"                        \
        " 'failed_back', count(*) FILTER (WHERE i.failback_state = 'succeeded'),"   \
        " 'last_powered_on_at', homing_time(max(i.powered_on_at)),"                 \
        " 'last_powered_on_after_s', round(extract(epoch FROM max(i.powered_on_at)" \
        "                                   - f.created_at)::numeric, 3))"

#define FAILOVER_JSON                                                                          \
        "json_build_object('id', f.id, 'datacenter_id', f.datacenter_id,"                      \
        " 'state', CASE WHEN f.ended_at IS NULL THEN 'open' ELSE 'ended' END,"                 \
        " 'created_at', homing_time(f.created_at), 'ended_at', homing_time(f.ended_at),"       \
        " 'levels', (SELECT json_agg(x.j ORDER BY x.level) FROM (SELECT lv.level, " LEVEL_JSON \
        "   AS j FROM generate_series(1, 5) lv(level)"                                         \
        "   LEFT JOIN (SELECT i.*, " POWERED_ON_AT " AS powered_on_at,"                        \
        "              (SELECT t.state FROM transfers t WHERE t.id = i.failback_transfer_id)"  \
        "              AS failback_state,"                                                     \
        "              (SELECT s.power FROM snapshots s WHERE s.id = i.snapshot_id) AS power"  \
        "              FROM failover_items i"                                                  \
        "              WHERE i.failover_id = f.id) i ON i.priority = lv.level"                 \
        "   GROUP BY lv.level) x))"

#define ITEM_JSON                                                                                \
        "json_build_object('failover_id', i.failover_id, 'snapshot_id', i.snapshot_id,"          \
        " 'priority', i.priority, 'outcome', i.outcome, 'from_dc', i.from_dc, 'to_dc', i.to_dc," \
        " 'epoch', i.epoch, 'version', i.version, 'newest_version', i.newest_version,"           \
        " 'versions_lost', i.versions_lost, 'lost', i.lost,"                                     \
        " 'data_loss_s', round(i.lag_s::numeric, 3), 'data_loss_bytes', i.bytes_behind,"         \
        " 'powered_on_at', homing_time(" POWERED_ON_AT "),"                                      \
        " 'recovered_at', homing_time(i.recovered_at),"                                          \
        " 'failback_transfer_id', i.failback_transfer_id,"                                       \
        " 'created_at', homing_time(i.created_at))"

static bool id_valid(const char *id) {
        return id && id[0] && strlen(id) < 19 && strspn(id, "0123456789") == strlen(id);
}

/* A failover locked for its failback: its site and the site's status. */
const struct api_resource api_failover_resource = {
        "failover",
        "/v1/failovers",
        NULL,
        "SELECT f.datacenter_id, d.status FROM failovers f"
        " JOIN datacenters d ON d.id = f.datacenter_id WHERE f.id = $1::bigint FOR UPDATE OF f",
        false,
        id_valid,
        NULL,
};

enum MHD_Result api_failovers_list(struct request *req) {
        const char *dc = api_query(req, "datacenter_id");
        const char *filters[1] = { dc };

        return api_reply_list(req, true,
                              "SELECT f.id, " FAILOVER_JSON "::text FROM failovers f"
                              " WHERE ($1::text IS NULL OR f.datacenter_id = $1)"
                              "   AND ($2::bigint IS NULL OR f.id < $2::bigint)"
                              " ORDER BY f.id DESC LIMIT $3::int",
                              1, filters);
}

enum MHD_Result api_failovers_get(struct request *req) {
        const char *params[1] = { api_param(req, 0) };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int r;

        if (!id_valid(params[0]))
                return api_reply_not_found(req, "failover", params[0]);
        r = api_fetch_one(req,
                          "SELECT " FAILOVER_JSON "::text FROM failovers f WHERE f.id = $1::bigint",
                          1, params, &res);
        ret = r <= 0 ? api_reply_not_found_or_db_error(req, r, "failover", params[0])
                     : api_reply_raw(req, 200, store_text(res, 0, 0), NULL);
        store_result_free(res);
        return ret;
}

/* The failback's optional body: what to do when the site lacks room for it all. */
static const struct api_field failback_fields[] = {
        { "when_full", FIELD_STRING, false, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

enum when_full { WHEN_FULL_REFUSE, WHEN_FULL_QUEUE_WHAT_FITS, WHEN_FULL_QUEUE_ALL };

/* The body's choice (an empty body: refuse); false after answering 4xx. */
static bool failback_when_full(struct request *req, enum when_full *out, enum MHD_Result *reply) {
        static const char *const names[] = { "refuse", "queue_what_fits", "queue_all" };
        const char *v;
        json_t *in;
        bool ok = false;

        *out = WHEN_FULL_REFUSE;
        if (req->body_len == 0)
                return true;
        in = api_body_object(req, reply);
        if (!in)
                return false;
        if (!api_check_fields(req, in, failback_fields, reply))
                goto out;
        v = json_string_value(json_object_get(in, "when_full"));
        if (!v) {
                ok = true;
                goto out;
        }
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (!strcmp(v, names[i])) {
                        *out = (enum when_full)i;
                        ok = true;
                        goto out;
                }
        *reply = api_reply_invalid(req, "/when_full", "is refuse, queue_what_fits or queue_all");
out:
        json_decref(in);
        return ok;
}

/*
 * The failback's moves against the room at the site (capacity less used
 * and reserved bytes), locked: `*room` is what to pass homing_failback
 * (NULL to queue all), `left` gets the snapshots that do not fit (most
 * urgent first, so the ones beyond the room). False after answering: 409
 * site-full under `refuse`, naming them, or 503.
 */
static bool failback_fits(struct request *req, const char *id, const char *dc, enum when_full mode,
                          char *room, size_t room_size, json_t *left, enum MHD_Result *reply) {
        struct store_result *res = NULL, *due = NULL;
        long long free_bytes, needed = 0;
        char detail[512];
        bool ok = false;
        size_t n;

        {
                const char *params[1] = { dc };
                if (api_fetch_one(req,
                                  "SELECT capacity_bytes - used_bytes - reserved_bytes"
                                  " FROM datacenters WHERE id = $1 FOR UPDATE",
                                  1, params, &res) <= 0) {
                        *reply = api_reply_db_error(req);
                        goto out;
                }
        }
        free_bytes = (long long)store_int(res, 0, 0);
        {
                const char *params[1] = { id };
                if (api_exec(
                            req,
                            "SELECT snapshot_id, running_bytes FROM homing_failback_due($1::bigint)"
                            " ORDER BY priority, snapshot_id",
                            1, params, &due) < 0) {
                        *reply = api_reply_db_error(req);
                        goto out;
                }
        }
        n = store_rows(due);
        for (size_t i = 0; i < n; i++)
                if ((long long)store_int(due, i, 1) > free_bytes &&
                    json_array_append_new(left, json_string(store_text(due, i, 0))) < 0) {
                        *reply = api_reply_db_error(req);
                        goto out;
                }
        if (n)
                needed = (long long)store_int(due, n - 1, 1);
        snprintf(room, room_size, "%lld", free_bytes);
        if (json_array_size(left) == 0 || mode == WHEN_FULL_QUEUE_WHAT_FITS) {
                ok = true;
                goto out;
        }
        if (mode == WHEN_FULL_QUEUE_ALL) {
                room[0] = '\0';
                ok = true;
                goto out;
        }
        {
                size_t at = (size_t)snprintf(
                        detail, sizeof(detail),
                        "%.64s has %lld bytes free and the failback needs %lld: %zu of %zu"
                        " snapshots do not fit (",
                        dc, free_bytes, needed, json_array_size(left), n);
                for (size_t i = 0; i < json_array_size(left) && at < sizeof(detail); i++)
                        at += (size_t)snprintf(detail + at, sizeof(detail) - at, "%s%s",
                                               i ? ", " : "",
                                               json_string_value(json_array_get(left, i)));
                if (at < sizeof(detail))
                        snprintf(detail + at, sizeof(detail) - at,
                                 "); send {\"when_full\": \"queue_what_fits\"} or"
                                 " \"queue_all\" to choose");
                *reply = api_reply_problem(req, 409, "site-full", "Conflict with the current state",
                                           detail,
                                           json_pack("{s:I, s:I, s:O}", "free_bytes",
                                                     (json_int_t)free_bytes, "bytes_needed",
                                                     (json_int_t)needed, "snapshots", left));
        }
out:
        store_result_free(due);
        store_result_free(res);
        return ok;
}

/*
 * Moves back to the returned site what still runs from the failover's
 * copies (homing_failback); 409 while the site is not active. Like any
 * move it needs room there: when the site lacks room for them all, 409
 * site-full names the snapshots that do not fit, unless the body says
 * {"when_full": "queue_what_fits"} (the most urgent ones that fit) or
 * "queue_all" (the operator's choice to exceed it). Answers 202 with the
 * failover, whose levels count what is queued and done.
 */
enum MHD_Result api_failovers_failback(struct request *req) {
        const char *id = api_param(req, 0);
        struct store_result *res = NULL;
        char dc[80], detail[192], room[24];
        enum when_full mode;
        json_t *left = NULL;
        long long queued;
        enum MHD_Result ret;

        if (!failback_when_full(req, &mode, &ret))
                return ret;
        /* The flow locked the failover: its site, and the site's status. */
        snprintf(dc, sizeof(dc), "%s", store_text(req->locked, 0, 0));
        if (strcmp(store_text(req->locked, 0, 1), "active") != 0) {
                snprintf(detail, sizeof(detail),
                         "%.64s is %.16s: set it active before moving its snapshots back", dc,
                         store_text(req->locked, 0, 1));
                return api_reply_conflict(req, "site-not-active", detail);
        }
        left = json_array();
        if (!left)
                return api_reply_db_error(req);
        if (!failback_fits(req, id, dc, mode, room, sizeof(room), left, &ret)) {
                json_decref(left);
                return ret;
        }
        {
                const char *params[3] = { id, req->api->cfg->topic_transfers,
                                          room[0] ? room : NULL };
                if (api_fetch_one(req, "SELECT homing_failback($1::bigint, $2, $3::bigint)", 3,
                                  params, &res) <= 0) {
                        store_result_free(res);
                        json_decref(left);
                        return api_reply_db_error(req);
                }
        }
        queued = store_int(res, 0, 0);
        res = store_result_free(res);
        {
                static const char *const modes[] = { "refuse", "queue_what_fits", "queue_all" };
                const char *params[1] = { id };
                /* What the room left behind, named in the event (queue_what_fits). */
                if (mode != WHEN_FULL_QUEUE_WHAT_FITS)
                        json_array_clear(left);
                if (api_audit(req, "io.homing.failover.failback_started", dc,
                              json_pack("{s:I, s:s, s:I, s:s, s:o}", "failover_id",
                                        (json_int_t)strtoll(id, NULL, 10), "datacenter_id", dc,
                                        "transfers", (json_int_t)queued, "when_full", modes[mode],
                                        "not_queued", left)) < 0 ||
                    api_fetch_one(req,
                                  "SELECT " FAILOVER_JSON
                                  "::text FROM failovers f WHERE f.id = $1::bigint",
                                  1, params, &res) <= 0 ||
                    api_commit(req) < 0) {
                        store_result_free(res);
                        return api_reply_db_error(req);
                }
        }
        ret = api_reply_raw(req, 202, store_text(res, 0, 0), NULL);
        store_result_free(res);
        return ret;
}

/* Its snapshots by id, `?outcome=` failed_over or unrecoverable. */
enum MHD_Result api_failovers_snapshots(struct request *req) {
        const char *id = api_param(req, 0), *outcome = api_query(req, "outcome");
        struct store_result *res = NULL;
        int r;

        if (outcome && strcmp(outcome, "failed_over") != 0 && strcmp(outcome, "unrecoverable") != 0)
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "outcome is failed_over or unrecoverable", NULL);
        if (!id_valid(id))
                return api_reply_not_found(req, "failover", id);
        {
                const char *params[1] = { id };
                r = api_fetch_one(req, "SELECT 1 FROM failovers WHERE id = $1::bigint", 1, params,
                                  &res);
                res = store_result_free(res);
                if (r <= 0)
                        return api_reply_not_found_or_db_error(req, r, "failover", id);
        }
        {
                const char *filters[2] = { id, outcome };
                return api_reply_list(req, false,
                                      "SELECT i.snapshot_id, " ITEM_JSON
                                      "::text FROM failover_items i"
                                      " WHERE i.failover_id = $1::bigint"
                                      "   AND ($2::text IS NULL OR i.outcome = $2)"
                                      "   AND ($3::text IS NULL OR i.snapshot_id > $3)"
                                      " ORDER BY i.snapshot_id LIMIT $4::int",
                                      2, filters);
        }
}

/*
 * Where the next restore comes from: `active` at a datacenter under an
 * epoch; `failed_over` while the snapshot is still where a failover put it
 * (active nowhere else since), with what that cost; `unrecoverable` while
 * its active site is down; `nowhere` without an active placement.
 */
enum MHD_Result api_snapshots_restore(struct request *req) {
        const char *params[1] = { api_param(req, 0) };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int r = api_fetch_one(
                req,
                "SELECT json_strip_nulls(json_build_object('snapshot_id', s.id,"
                " 'state', st.state, 'datacenter_id', p.datacenter_id, 'epoch', s.epoch,"
                " 'version', p.version,"
                " 'failover_id', CASE WHEN st.state IN ('failed_over', 'unrecoverable')"
                "   THEN i.failover_id END,"
                " 'from_dc', CASE WHEN st.state = 'failed_over' THEN i.from_dc END,"
                " 'versions_lost', CASE WHEN st.state = 'failed_over' THEN i.versions_lost END,"
                " 'lost_versions', CASE WHEN st.state = 'failed_over' THEN"
                "   (SELECT json_agg((e->>'version')::bigint) FROM jsonb_array_elements(i.lost) e)"
                "   END,"
                " 'data_loss_s', CASE WHEN st.state = 'failed_over'"
                "   THEN round(i.lag_s::numeric, 3) END,"
                " 'data_loss_bytes', CASE WHEN st.state = 'failed_over' THEN i.bytes_behind END,"
                " 'detail', CASE st.state"
                "   WHEN 'active' THEN format('restored from version %s at %s (epoch %s)',"
                "     p.version, p.datacenter_id, s.epoch)"
                "   WHEN 'failed_over' THEN format('failed over from %s to %s (epoch %s): restored'"
                " || ' from version %s; %s newer versions lost (%s s, %s bytes)',"
                "     i.from_dc, p.datacenter_id, s.epoch, p.version, i.versions_lost,"
                "     round(i.lag_s::numeric, 3), i.bytes_behind)"
                "   WHEN 'unrecoverable' THEN format('unrecoverable until %s returns: it is down and'"
                " || ' no warm replica held the snapshot', p.datacenter_id)"
                "   ELSE 'the snapshot has no active placement' END))::text"
                " FROM snapshots s"
                " LEFT JOIN placements p ON p.snapshot_id = s.id AND p.active"
                " LEFT JOIN datacenters d ON d.id = p.datacenter_id"
                " LEFT JOIN LATERAL (SELECT * FROM failover_items x WHERE x.snapshot_id = s.id"
                "   ORDER BY x.failover_id DESC LIMIT 1) i ON true"
                " CROSS JOIN LATERAL (SELECT CASE"
                "   WHEN p.id IS NULL THEN 'nowhere'"
                "   WHEN d.status = 'down' THEN 'unrecoverable'"
                "   WHEN i.outcome = 'failed_over' AND p.datacenter_id = i.to_dc AND NOT EXISTS ("
                "     SELECT 1 FROM placements q WHERE q.snapshot_id = s.id"
                "     AND q.datacenter_id <> i.to_dc AND q.epoch > i.epoch) THEN 'failed_over'"
                "   ELSE 'active' END AS state) st"
                " WHERE s.id = $1",
                1, params, &res);

        ret = r <= 0 ? api_reply_not_found_or_db_error(req, r, "snapshot", params[0])
                     : api_reply_raw(req, 200, store_text(res, 0, 0), NULL);
        store_result_free(res);
        return ret;
}

/* ---- test failover: the rehearsal ------------------------------------------------------ */

#define TEST_VM_JSON                                                                             \
        "json_build_object('id', v.id, 'name', 'fotest-' || v.id, 'snapshot_id', v.snapshot_id," \
        " 'datacenter_id', v.datacenter_id, 'priority', v.priority, 'version', v.version,"       \
        " 'state', v.state, 'reason', v.reason, 'updated_at', homing_time(v.updated_at))"

#define TEST_JSON                                                                                \
        "json_build_object('id', t.id, 'datacenter_id', t.datacenter_id, 'state', t.state,"      \
        " 'created_at', homing_time(t.created_at), 'cleanup_at', homing_time(t.cleanup_at),"     \
        " 'cleaned_at', homing_time(t.cleaned_at),"                                              \
        " 'counts', (SELECT json_build_object("                                                  \
        "   'vms', count(*), 'pending', count(*) FILTER (WHERE v.state = 'pending'),"            \
        "   'powered_on', count(*) FILTER (WHERE v.state = 'powered_on'),"                       \
        "   'failed', count(*) FILTER (WHERE v.state = 'failed'),"                               \
        "   'powered_off', count(*) FILTER (WHERE v.state = 'powered_off'))"                     \
        "   FROM failover_test_vms v WHERE v.test_id = t.id),"                                   \
        " 'vms', coalesce((SELECT json_agg(" TEST_VM_JSON " ORDER BY v.priority, v.snapshot_id)" \
        "   FROM failover_test_vms v WHERE v.test_id = t.id), '[]'::json))"

const struct api_field api_failover_test_fields[] = {
        { "datacenter_id", FIELD_ID, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

/* A rehearsal locked for its cleanup: its state. */
const struct api_resource api_failover_test_resource = {
        "failover test",
        "/v1/failover-tests",
        NULL,
        "SELECT state FROM failover_tests WHERE id = $1::bigint FOR UPDATE",
        false,
        id_valid,
        NULL,
};

/* One rehearsal's representation, read in the request's transaction. */
static int test_json(struct request *req, const char *id, struct store_result **res) {
        const char *params[1] = { id };
        return api_fetch_one(req,
                             "SELECT " TEST_JSON "::text FROM failover_tests t"
                             " WHERE t.id = $1::bigint",
                             1, params, res);
}

enum MHD_Result api_failover_tests_create(struct request *req) {
        const char *dc = json_string_value(json_object_get(req->input, "datacenter_id"));
        struct store_result *res = NULL;
        char id[24], detail[160];
        enum MHD_Result ret;
        int r;

        if (api_begin(req) < 0)
                return api_reply_db_error(req);
        {
                const char *params[1] = { dc };
                r = api_fetch_one(req, "SELECT status FROM datacenters WHERE id = $1 FOR SHARE", 1,
                                  params, &res);
        }
        if (r < 0)
                return api_reply_db_error(req);
        if (r == 0)
                return api_reply_invalid(req, "/datacenter_id", "is no datacenter");
        if (!strcmp(store_text(res, 0, 0), "down")) {
                store_result_free(res);
                snprintf(detail, sizeof(detail),
                         "%.64s is down: its failover is real, not a rehearsal", dc);
                return api_reply_conflict(req, "site-down", detail);
        }
        res = store_result_free(res);
        {
                const char *params[1] = { dc };
                if (api_fetch_one(req, "SELECT homing_failover_test($1)", 1, params, &res) <= 0) {
                        store_result_free(res);
                        return api_reply_db_error(req);
                }
        }
        snprintf(id, sizeof(id), "%s", store_text(res, 0, 0));
        res = store_result_free(res);
        if (test_json(req, id, &res) <= 0 ||
            api_audit(req, "io.homing.failover_test.started", dc,
                      json_pack("{s:I, s:s}", "failover_test_id", (json_int_t)strtoll(id, NULL, 10),
                                "datacenter_id", dc)) < 0 ||
            api_commit(req) < 0) {
                store_result_free(res);
                return api_reply_db_error(req);
        }
        {
                char location[64];
                const char *headers[] = { "Location", location, NULL };
                snprintf(location, sizeof(location), "/v1/failover-tests/%s", id);
                ret = api_reply_raw(req, 201, store_text(res, 0, 0), headers);
        }
        store_result_free(res);
        return ret;
}

enum MHD_Result api_failover_tests_list(struct request *req) {
        const char *dc = api_query(req, "datacenter_id");
        const char *filters[1] = { dc };

        return api_reply_list(req, true,
                              "SELECT t.id, " TEST_JSON "::text FROM failover_tests t"
                              " WHERE ($1::text IS NULL OR t.datacenter_id = $1)"
                              "   AND ($2::bigint IS NULL OR t.id < $2::bigint)"
                              " ORDER BY t.id DESC LIMIT $3::int",
                              1, filters);
}

enum MHD_Result api_failover_tests_get(struct request *req) {
        const char *id = api_param(req, 0);
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int r;

        if (!id_valid(id))
                return api_reply_not_found(req, "failover test", id);
        r = test_json(req, id, &res);
        ret = r <= 0 ? api_reply_not_found_or_db_error(req, r, "failover test", id)
                     : api_reply_raw(req, 200, store_text(res, 0, 0), NULL);
        store_result_free(res);
        return ret;
}

/*
 * Cleans the rehearsal up: its VMs are no longer wanted, so their agents
 * power them off and delete their overlays; one never started is off at
 * once. `cleaned` once none runs. Again on a rehearsal cleaning or cleaned:
 * 202, nothing changes.
 */
enum MHD_Result api_failover_tests_cleanup(struct request *req) {
        const char *id = api_param(req, 0);
        struct store_result *res = NULL;
        enum MHD_Result ret;
        bool running = !strcmp(store_text(req->locked, 0, 0), "running");
        const char *params[1] = { id };

        if (running &&
            (api_exec(req,
                      "UPDATE failover_tests SET state = 'cleaning', cleanup_at = now()"
                      " WHERE id = $1::bigint",
                      1, params, NULL) < 0 ||
             api_exec(req,
                      "UPDATE failover_test_vms SET state = 'powered_off', updated_at = now(),"
                      " reason = 'cleaned up before it started'"
                      " WHERE test_id = $1::bigint AND state = 'pending'",
                      1, params, NULL) < 0 ||
             api_exec(req, "SELECT homing_failover_test_settle($1::bigint)", 1, params, NULL) < 0 ||
             api_audit(req, "io.homing.failover_test.cleanup_requested", id,
                       json_pack("{s:I}", "failover_test_id", (json_int_t)strtoll(id, NULL, 10))) <
                     0))
                return api_reply_db_error(req);
        if (test_json(req, id, &res) <= 0 || api_commit(req) < 0) {
                store_result_free(res);
                return api_reply_db_error(req);
        }
        ret = api_reply_raw(req, 202, store_text(res, 0, 0), NULL);
        store_result_free(res);
        return ret;
}
