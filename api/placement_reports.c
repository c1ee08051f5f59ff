/*
 * Placement reports (migration 027): the figures `homing replay --json`
 * writes — each policy's restore distances, transfers and bytes, and when
 * the replay has them its restore-distance CDF and transfers per day —
 * stored under a name for the dashboard's "Placement quality" page. An
 * operator posts the replay's JSON as it is (`POST
 * /v1/placement-reports?name=...`, or `homing replay --publish NAME`); its
 * shape is checked here, member by member, before anything is stored, so
 * the page can draw any report it lists. A report may be bigger than other
 * bodies (API_PLACEMENT_REPORT_MAX_BYTES, not --max-body-bytes: a sweep's
 * figures are). Viewers list and read them; operators delete them. Every
 * write is audited.
 */
#include "api/placement_reports.h"

#include <jansson.h>
#include <stdarg.h>
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
#include "store/store.h"

#define NAME_MAX_LEN 128
#define POLICY_NAME_MAX 192 /* the replay's own bound on a sweep point's name */
#define MAX_POLICIES 64     /* the replay's */
#define MAX_CDF_POINTS 1001
#define MAX_DAYS 3660
#define MAX_KM 40075.0 /* the Equator: no geodesic is longer than half of it */
#define MAX_COUNT 9.2e18

#define ITEM_JSON                                                     \
        "json_build_object('id', p.id, 'name', p.name, 'created_at'," \
        " homing_time(p.created_at), 'created_by', p.created_by, 'summary', p.summary)"

const struct api_resource api_placement_report_resource = {
        "placement_report",
        "/v1/placement-reports",
        "SELECT 0, " ITEM_JSON "::text FROM placement_reports p WHERE p.id = $1::bigint",
        "SELECT name FROM placement_reports WHERE id = $1::bigint FOR UPDATE",
        false,
        api_serial_id_valid,
        NULL,
};
#define resource api_placement_report_resource

/* ---- the report's shape ------------------------------------------------------------ */

/* Where the first problem is: a JSON pointer into the body, and what is wrong there. */
struct shape {
        char pointer[256];
        char why[128];
};

static bool bad(struct shape *s, const char *why, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(s->pointer, sizeof(s->pointer), fmt, ap);
        va_end(ap);
        snprintf(s->why, sizeof(s->why), "%s", why);
        return false;
}

static bool number_fits(struct shape *s, const json_t *v, double min, double max, bool whole,
                        const char *at) {
        double d;

        if (!json_is_number(v) || (whole && !json_is_integer(v)))
                return bad(s, whole ? "must be a whole number" : "must be a number", "%s", at);
        d = json_number_value(v);
        if (d < min || d > max) {
                char why[96];
                snprintf(why, sizeof(why), "must be within [%g, %g]", min, max);
                return bad(s, why, "%s", at);
        }
        return true;
}

/* obj's member `name` (at `at`/name): a number within [min, max]; absent is fine unless required. */
static bool member_number(struct shape *s, const json_t *obj, const char *at, const char *name,
                          bool required, double min, double max, bool whole) {
        const json_t *v = json_object_get(obj, name);
        char pointer[256];

        snprintf(pointer, sizeof(pointer), "%s/%s", at, name);
        if (!v)
                return required ? bad(s, "is required", "%s", pointer) : true;
        return number_fits(s, v, min, max, whole, pointer);
}

/* [[km, share], ...]: both rising, shares from 0 to 1. */
static bool cdf_valid(struct shape *s, const json_t *cdf, const char *at) {
        double last_km = 0, last_share = 0;
        size_t i;
        json_t *pt;

        if (!json_is_array(cdf) || json_array_size(cdf) > MAX_CDF_POINTS)
                return bad(s, "must be an array of at most 1001 [km, share] points", "%s", at);
        json_array_foreach(cdf, i, pt) {
                char p[288];
                double km, share;
                snprintf(p, sizeof(p), "%s/%zu", at, i);
                if (!json_is_array(pt) || json_array_size(pt) != 2)
                        return bad(s, "must be a [km, share] pair", "%s", p);
                snprintf(p, sizeof(p), "%s/%zu/0", at, i);
                if (!number_fits(s, json_array_get(pt, 0), 0, MAX_KM, false, p))
                        return false;
                snprintf(p, sizeof(p), "%s/%zu/1", at, i);
                if (!number_fits(s, json_array_get(pt, 1), 0, 1, false, p))
                        return false;
                km = json_number_value(json_array_get(pt, 0));
                share = json_number_value(json_array_get(pt, 1));
                if (km < last_km || share < last_share)
                        return bad(s, "must not fall below the point before it", "%s/%zu", at, i);
                last_km = km;
                last_share = share;
        }
        return true;
}

static bool day_valid(const char *day) {
        int y, m, d, end = 0;
        return day && strlen(day) == 10 && sscanf(day, "%4d-%2d-%2d%n", &y, &m, &d, &end) == 3 &&
               end == 10 && m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

/* The replay's older count by day, {"YYYY-MM-DD": transfers, ...}, which the page draws
 * when a report has no per_day. */
static bool day_counts_valid(struct shape *s, const json_t *days, const char *at) {
        const char *day;
        json_t *n;

        if (!json_is_object(days) || json_object_size(days) > MAX_DAYS)
                return bad(s, "must be an object of at most 3660 days", "%s", at);
        json_object_foreach((json_t *)days, day, n) {
                char p[288];
                snprintf(p, sizeof(p), "%s/%.16s", at, day);
                if (!day_valid(day))
                        return bad(s, "must be days, YYYY-MM-DD", "%s", p);
                if (!number_fits(s, n, 0, MAX_COUNT, true, p))
                        return false;
        }
        return true;
}

/* [{"day": "YYYY-MM-DD", "transfers": n, "bytes": n}, ...] */
static bool days_valid(struct shape *s, const json_t *days, const char *at) {
        size_t i;
        json_t *d;

        if (!json_is_array(days) || json_array_size(days) > MAX_DAYS)
                return bad(s, "must be an array of at most 3660 days", "%s", at);
        json_array_foreach(days, i, d) {
                char p[288];
                snprintf(p, sizeof(p), "%s/%zu", at, i);
                if (!json_is_object(d))
                        return bad(s, "must be an object", "%s", p);
                if (!day_valid(json_string_value(json_object_get(d, "day"))))
                        return bad(s, "must be a day, YYYY-MM-DD", "%s/day", p);
                if (!member_number(s, d, p, "transfers", true, 0, MAX_COUNT, true) ||
                    !member_number(s, d, p, "bytes", true, 0, MAX_COUNT, true))
                        return false;
        }
        return true;
}

/* p's distances `which` (restores, reports): {n, mean_km, p50_km, p95_km, p99_km}. */
static bool distances_valid(struct shape *s, const json_t *p, const char *at, const char *which) {
        static const char *const distances[] = { "mean_km", "p50_km", "p95_km", "p99_km" };
        const json_t *d = json_object_get(p, which);
        char sub[96];

        snprintf(sub, sizeof(sub), "%s/%s", at, which);
        if (!json_is_object(d))
                return bad(s, d ? "must be an object" : "is required", "%s", sub);
        if (!member_number(s, d, sub, "n", true, 0, MAX_COUNT, true))
                return false;
        for (size_t k = 0; k < 4; k++)
                if (!member_number(s, d, sub, distances[k], true, 0, MAX_KM, false))
                        return false;
        return true;
}

static bool policy_valid(struct shape *s, const json_t *list, size_t i, bool at_reports) {
        const json_t *p = json_array_get(list, i), *v;
        const char *name, *kind;
        char at[64], sub[96];

        snprintf(at, sizeof(at), "/policies/%zu", i);
        if (!json_is_object(p))
                return bad(s, "must be an object", "%s", at);
        name = json_string_value(json_object_get(p, "name"));
        if (!name || !*name || strlen(name) > POLICY_NAME_MAX)
                return bad(s, "must be a name of 1 to 192 characters", "%s/name", at);
        for (size_t k = 0; k < i; k++)
                if (!strcmp(name,
                            json_string_value(json_object_get(json_array_get(list, k), "name"))))
                        return bad(s, "names a policy named before", "%s/name", at);
        kind = json_string_value(json_object_get(p, "kind"));
        if (!kind || (strcmp(kind, "engine") && strcmp(kind, "oracle") && strcmp(kind, "home")))
                return bad(s, "must be engine, oracle or home", "%s/kind", at);
        /* the distances at restores, and at reports when the history had no restore */
        if (!distances_valid(s, p, at, "restores") ||
            (at_reports && !distances_valid(s, p, at, "reports")))
                return false;
        if (!member_number(s, p, at, "transfers", true, 0, MAX_COUNT, true) ||
            !member_number(s, p, at, "bytes", true, 0, MAX_COUNT, true) ||
            !member_number(s, p, at, "flaps", false, 0, MAX_COUNT, true))
                return false;
        if ((v = json_object_get(p, "pareto")) && !json_is_boolean(v))
                return bad(s, "must be true or false", "%s/pareto", at);
        if ((v = json_object_get(p, "goals"))) {
                const char *goal;
                json_t *ratio;
                if (!json_is_object(v))
                        return bad(s, "must be an object of ratios", "%s/goals", at);
                json_object_foreach((json_t *)v, goal, ratio) {
                        char gp[256];
                        snprintf(gp, sizeof(gp), "%s/goals/%.64s", at, goal);
                        if (!number_fits(s, ratio, 0, 1e9, false, gp))
                                return false;
                }
        }
        snprintf(sub, sizeof(sub), "%s/restore_cdf", at);
        if ((v = json_object_get(p, "restore_cdf")) && !cdf_valid(s, v, sub))
                return false;
        snprintf(sub, sizeof(sub), "%s/per_day", at);
        if ((v = json_object_get(p, "per_day")) && !days_valid(s, v, sub))
                return false;
        snprintf(sub, sizeof(sub), "%s/transfers_per_day", at);
        if ((v = json_object_get(p, "transfers_per_day")) && !day_counts_valid(s, v, sub))
                return false;
        return true;
}

/* The members the page reads; others (peaks, settings, ...) are kept as they come. */
static bool report_valid(struct shape *s, const json_t *report) {
        const json_t *list = json_object_get(report, "policies");
        const char *measured = json_string_value(json_object_get(report, "measured_at"));

        if (!member_number(s, report, "", "users", false, 0, MAX_COUNT, true) ||
            !member_number(s, report, "", "user_days", false, 0, 1e15, false) ||
            !member_number(s, report, "", "restores", false, 0, MAX_COUNT, true) ||
            !member_number(s, report, "", "reports", false, 0, MAX_COUNT, true))
                return false;
        if (measured && strcmp(measured, "restores") && strcmp(measured, "reports"))
                return bad(s, "must be restores or reports", "/measured_at");
        if (!measured && json_object_get(report, "measured_at"))
                return bad(s, "must be restores or reports", "/measured_at");
        if (!list)
                return bad(s, "is required", "/policies");
        if (!json_is_array(list) || json_array_size(list) < 1 ||
            json_array_size(list) > MAX_POLICIES)
                return bad(s, "must be an array of 1 to 64 policies", "/policies");
        for (size_t i = 0; i < json_array_size(list); i++)
                if (!policy_valid(s, list, i, measured && !strcmp(measured, "reports")))
                        return false;
        return true;
}

/* ?name= and the body: the replay's JSON, its shape checked; false after answering. */
bool api_placement_report_valid(struct request *req, enum MHD_Result *reply) {
        const char *name = api_query(req, "name");
        json_t *check = name ? json_string(name) : NULL; /* NULL too when not UTF-8 */
        struct shape s;

        json_decref(check);
        if (!check || !*name || strlen(name) > NAME_MAX_LEN) {
                *reply = api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                           "name (?name=) is required: the report's name, 1 to "
                                           "128 characters of UTF-8",
                                           NULL);
                return false;
        }
        req->input = api_body_object(req, reply);
        if (!req->input)
                return false;
        if (!report_valid(&s, req->input)) {
                *reply = api_reply_invalid(req, s.pointer, s.why);
                return false;
        }
        return true;
}

/* ---- the routes ------------------------------------------------------------------------ */

/* What a list shows without reading the reports: the run's size and each policy's headline
 * (its mean distance where the replay measured it: at restores, or at every report). */
static json_t *summary_of(const json_t *report) {
        const char *measured = json_string_value(json_object_get(report, "measured_at"));
        const char *at = measured && !strcmp(measured, "reports") ? "reports" : "restores";
        json_t *summary = json_object(), *policies = json_array(), *p;
        const char *keep[] = { "users", "user_days", "reports", "restores", "measured_at" };
        size_t i;

        if (!summary || !policies) {
                json_decref(summary);
                json_decref(policies);
                return NULL;
        }
        for (i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
                if (json_object_get(report, keep[i]))
                        json_object_set(summary, keep[i], json_object_get(report, keep[i]));
        json_array_foreach(json_object_get(report, "policies"), i, p) {
                const json_t *d = json_object_get(p, at);
                json_array_append_new(policies,
                                      json_pack("{s:O, s:O, s:O, s:O}", "name",
                                                json_object_get(p, "name"), "kind",
                                                json_object_get(p, "kind"), "mean_km",
                                                json_object_get(d, "mean_km"), "transfers",
                                                json_object_get(p, "transfers")));
        }
        json_object_set_new(summary, "policies", policies);
        return summary;
}

enum MHD_Result api_placement_reports_list(struct request *req) {
        return api_reply_list(req, true,
                              "SELECT p.id, " ITEM_JSON "::text"
                              " FROM placement_reports p"
                              " WHERE ($1::bigint IS NULL OR p.id < $1::bigint)"
                              " ORDER BY p.id DESC LIMIT $2::int",
                              0, NULL);
}

enum MHD_Result api_placement_reports_get(struct request *req) {
        const char *params[1] = { api_param(req, 0) };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int r;

        if (!api_serial_id_valid(params[0]))
                return api_reply_not_found(req, resource.name, params[0]);
        r = api_fetch_one(req,
                          "SELECT (" ITEM_JSON "::jsonb || jsonb_build_object('report', p.report))"
                          "::text FROM placement_reports p WHERE p.id = $1::bigint",
                          1, params, &res);
        if (r <= 0)
                return api_reply_not_found_or_db_error(req, r, resource.name, params[0]);
        ret = api_reply_raw(req, 200, store_text(res, 0, 0), NULL);
        store_result_free(res);
        return ret;
}

enum MHD_Result api_placement_reports_create(struct request *req) {
        const char *name = api_query(req, "name");
        json_t *summary = summary_of(req->input);
        char *report = json_dumps(req->input, JSON_COMPACT | JSON_REAL_PRECISION(17));
        char *summary_text = summary ? json_dumps(summary, JSON_COMPACT) : NULL;
        struct store_result *res = NULL;
        char location[64];
        const char *headers[3] = { "Location", location, NULL };
        enum MHD_Result ret;
        int r = report && summary_text ? api_begin(req) : -1;

        if (r == 0) {
                const char *params[4] = { name, req->who.name, report, summary_text };
                r = api_fetch_one(req,
                                  "WITH p AS (INSERT INTO placement_reports"
                                  " (name, created_by, report, summary)"
                                  " VALUES ($1, $2, $3::jsonb, $4::jsonb) RETURNING *)"
                                  " SELECT p.id, " ITEM_JSON "::text FROM p",
                                  4, params, &res);
                if (r == 0)
                        r = -1; /* an INSERT ... RETURNING returns its row */
        }
        if (r > 0)
                r = api_audit(req, "io.homing.placement_report.created", store_text(res, 0, 0),
                              json_pack("{s:I, s:s, s:O}", "placement_report_id",
                                        (json_int_t)store_int(res, 0, 0), "name", name, "summary",
                                        summary));
        if (r >= 0)
                r = api_commit(req);
        if (r < 0) {
                ret = api_reply_db_error(req);
        } else {
                snprintf(location, sizeof(location), "%s/%s", resource.collection,
                         store_text(res, 0, 0));
                ret = api_reply_raw(req, 201, store_text(res, 0, 1), headers);
        }
        store_result_free(res);
        json_decref(summary);
        free(summary_text);
        free(report);
        return ret;
}

enum MHD_Result api_placement_reports_delete(struct request *req) {
        const char *id = api_param(req, 0);
        const char *params[1] = { id };

        if (api_exec(req, "DELETE FROM placement_reports WHERE id = $1::bigint", 1, params, NULL) <
                    0 ||
            api_audit(req, "io.homing.placement_report.deleted", id,
                      json_pack("{s:I, s:s}", "placement_report_id",
                                (json_int_t)strtoll(id, NULL, 10), "name",
                                store_text(req->locked, 0, 0))) < 0 ||
            api_commit(req) < 0)
                return api_reply_db_error(req);
        return api_reply_empty(req, 204);
}
