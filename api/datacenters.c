/*
 * /v1/datacenters: the catalog. Viewers list (by status, paged by id), read
 * one (with its ETag), and ask for the nearest; operators set the status
 * (drain one: the scheduler stops choosing it); admins add, change (If-Match
 * required) and remove them (refused while a datacenter holds active
 * placements, or while its history refers to it: set it down instead).
 *
 * Representations are built by PostgreSQL (DC_JSON) so every route shows
 * the same thing, including how many snapshots the datacenter holds.
 */
#include "api/datacenters.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/audit.h"
#include "api/input.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/resource.h"
#include "geo/geo.h"
#include "store/store.h"

#define DC_JSON                                                                               \
        "json_build_object('id', d.id, 'name', d.name, 'provider', d.provider, 'city', d.city," \
        " 'country_code', d.country_code, 'lat', d.lat, 'lon', d.lon, 'status', d.status,"     \
        " 'capacity_bytes', d.capacity_bytes, 'used_bytes', d.used_bytes,"                      \
        " 'reserved_bytes', d.reserved_bytes, 'cached_bytes', homing_cache_bytes(d.id),"       \
        " 'agent_url', d.agent_url,"                                                           \
        " 'snapshots', (SELECT count(*) FROM placements p"                                      \
        "               WHERE p.datacenter_id = d.id AND p.active),"                           \
        " 'created_at', homing_time(d.created_at), 'updated_at', homing_time(d.updated_at))"

#define SELECT_ONE "SELECT d.row_version, " DC_JSON "::text FROM datacenters d WHERE d.id = $1"

static const struct api_resource resource = { "datacenter", "/v1/datacenters", SELECT_ONE };

static bool status_valid(const char *s) {
        return s && (!strcmp(s, "active") || !strcmp(s, "draining") || !strcmp(s, "down"));
}

/* The database's rule for datacenter ids: no '@', a letter or digit first. */
static bool dc_id_valid(const char *id) {
        return auth_id_valid(id) && !strchr(id, '@') &&
               ((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= 'A' && id[0] <= 'Z') ||
                (id[0] >= '0' && id[0] <= '9'));
}

static bool country_valid(const json_t *v) {
        const char *s = json_string_value(v);
        return !v || json_is_null(v) ||
               (s && strlen(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z');
}

static const struct api_field dc_fields[] = {
        { "id", FIELD_ID, true, false, 0, 0 },
        { "name", FIELD_STRING, true, false, 0, 0 },
        { "provider", FIELD_STRING, false, true, 0, 0 },
        { "city", FIELD_STRING, false, true, 0, 0 },
        { "country_code", FIELD_STRING, false, true, 0, 0 },
        { "lat", FIELD_NUMBER, true, false, -90, 90 },
        { "lon", FIELD_NUMBER, true, false, -180, 180 },
        { "status", FIELD_STRING, false, false, 0, 0 },
        { "capacity_bytes", FIELD_COUNT, false, false, 0, 0 },
        { "used_bytes", FIELD_COUNT, false, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

static const struct api_field dc_patch_fields[] = {
        { "name", FIELD_STRING, false, false, 0, 0 },
        { "provider", FIELD_STRING, false, true, 0, 0 },
        { "city", FIELD_STRING, false, true, 0, 0 },
        { "country_code", FIELD_STRING, false, true, 0, 0 },
        { "lat", FIELD_NUMBER, false, false, -90, 90 },
        { "lon", FIELD_NUMBER, false, false, -180, 180 },
        { "capacity_bytes", FIELD_COUNT, false, false, 0, 0 },
        { "used_bytes", FIELD_COUNT, false, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

enum MHD_Result api_datacenters_list(struct request *req) {
        const char *status = api_query(req, "status");
        struct api_page page;
        struct store_result *res = NULL;
        enum MHD_Result ret;

        if (status && !status_valid(status))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "status is active, draining or down", NULL);
        if (!api_page_parse(req, &page, false, &ret))
                return ret;
        {
                const char *params[3] = { status, page.after, page.limit_plus_one };
                if (api_exec(req,
                             "SELECT d.id, " DC_JSON "::text FROM datacenters d"
                             " WHERE ($1::text IS NULL OR d.status = $1)"
                             "   AND ($2::text IS NULL OR d.id > $2)"
                             " ORDER BY d.id LIMIT $3::int",
                             3, params, &res) < 0) {
                        api_page_fini(&page);
                        return api_reply_db_error(req);
                }
        }
        ret = api_reply_page(req, &page, res, 1);
        store_result_free(res);
        api_page_fini(&page);
        return ret;
}

enum MHD_Result api_datacenters_get(struct request *req) {
        return api_reply_one(req, &resource, api_param(req, 0));
}

struct ranked {
        const char *id;
        const char *json;
        double distance_m;
};

static int ranked_cmp(const void *pa, const void *pb) {
        const struct ranked *a = pa, *b = pb;
        if (a->distance_m != b->distance_m)
                return a->distance_m < b->distance_m ? -1 : 1;
        return strcmp(a->id, b->id);
}

enum MHD_Result api_datacenters_nearest(struct request *req) {
        double lat, lon, k = 1;
        struct store_result *res = NULL;
        struct ranked *ranked;
        json_t *items;
        size_t n;

        if (!api_query_number(req, "lat", &lat) || !api_query_number(req, "lon", &lon) ||
            !geo_point_valid(lat, lon))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "lat in [-90, 90] and lon in [-180, 180] are required",
                                         NULL);
        if (api_query(req, "k") &&
            (!api_query_number(req, "k", &k) || k < 1 || k > 1000 || k != floor(k)))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "k must be a whole number from 1 to 1000", NULL);
        if (api_exec(req,
                     "SELECT d.id, d.lat, d.lon, " DC_JSON "::text FROM datacenters d"
                     " WHERE d.status = 'active'",
                     0, NULL, &res) < 0)
                return api_reply_db_error(req);

        n = store_rows(res);
        ranked = calloc(n + 1, sizeof(*ranked));
        if (!ranked) {
                store_result_free(res);
                return MHD_NO;
        }
        for (size_t i = 0; i < n; i++) {
                ranked[i].id = store_text(res, i, 0);
                ranked[i].json = store_text(res, i, 3);
                ranked[i].distance_m = geo_distance_m(lat, lon, store_double(res, i, 1),
                                                      store_double(res, i, 2));
        }
        qsort(ranked, n, sizeof(*ranked), ranked_cmp);
        items = json_array();
        for (size_t i = 0; i < n && i < (size_t)k; i++) {
                json_t *dc = json_loads(ranked[i].json, 0, NULL);
                if (!dc)
                        continue;
                json_object_set_new(dc, "distance_m",
                                    json_real(round(ranked[i].distance_m * 1000) / 1000));
                json_array_append_new(items, dc);
        }
        free(ranked);
        store_result_free(res);
        return api_reply_json(req, 200, json_pack("{s:o}", "items", items));
}

enum MHD_Result api_datacenters_create(struct request *req) {
        enum MHD_Result ret;
        json_t *body = api_body_object(req, &ret);
        const char *id, *status;
        char *text;
        struct store_result *res = NULL;
        int r;

        if (!body)
                return ret;
        if (!api_check_fields(req, body, dc_fields, &ret))
                goto out;
        id = json_string_value(json_object_get(body, "id"));
        status = json_string_value(json_object_get(body, "status"));
        if (!dc_id_valid(id)) {
                ret = api_reply_invalid(req, "/id", "starts with a letter or digit and has no '@'");
                goto out;
        }
        if (json_object_get(body, "status") && !status_valid(status)) {
                ret = api_reply_invalid(req, "/status", "is active, draining or down");
                goto out;
        }
        if (!country_valid(json_object_get(body, "country_code"))) {
                ret = api_reply_invalid(req, "/country_code", "is two capital letters (ISO 3166-1)");
                goto out;
        }
        text = json_dumps(body, JSON_COMPACT);
        {
                const char *params[1] = { text };
                r = api_begin(req);
                if (r == 0)
                        r = api_fetch_one(
                                req,
                                "INSERT INTO datacenters (id, name, provider, city, country_code,"
                                "  lat, lon, status, capacity_bytes, used_bytes)"
                                " SELECT j->>'id', j->>'name', j->>'provider', j->>'city',"
                                "  j->>'country_code', (j->>'lat')::float8, (j->>'lon')::float8,"
                                "  coalesce(j->>'status', 'active'),"
                                "  coalesce((j->>'capacity_bytes')::bigint, 0),"
                                "  coalesce((j->>'used_bytes')::bigint, 0)"
                                " FROM (SELECT $1::jsonb AS j) b"
                                " ON CONFLICT (id) DO NOTHING RETURNING id",
                                1, params, &res);
        }
        free(text);
        store_result_free(res);
        if (r < 0)
                ret = api_reply_db_error(req);
        else if (r == 0)
                ret = api_reply_conflict(req, "already-exists", "a datacenter with this id exists");
        else
                ret = api_commit_and_reply(req, &resource,
                        id, 201, "io.homing.datacenter.created", json_object());
out:
        json_decref(body);
        return ret;
}

/* Locks the datacenter's row. 1 and its version, 0 not found, <0. */
static int lock_row(struct request *req, const char *id, int64_t *version, char *status,
                    size_t status_size) {
        const char *params[1] = { id };
        struct store_result *res = NULL;
        int r = api_begin(req);

        if (r < 0)
                return r;
        r = api_fetch_one(req, "SELECT row_version, status FROM datacenters WHERE id = $1 FOR UPDATE",
                          1, params, &res);
        if (r == 1) {
                *version = store_int(res, 0, 0);
                if (status)
                        snprintf(status, status_size, "%s", store_text(res, 0, 1));
        }
        store_result_free(res);
        return r;
}

enum MHD_Result api_datacenters_update(struct request *req) {
        const char *id = api_param(req, 0);
        enum MHD_Result ret;
        json_t *body = api_body_object(req, &ret);
        int64_t version;
        char *text;
        int r;

        if (!body)
                return ret;
        if (!api_check_fields(req, body, dc_patch_fields, &ret))
                goto out;
        if (json_object_size(body) == 0) {
                ret = api_reply_invalid(req, "", "name at least one member to change");
                goto out;
        }
        if (!country_valid(json_object_get(body, "country_code"))) {
                ret = api_reply_invalid(req, "/country_code", "is two capital letters (ISO 3166-1)");
                goto out;
        }
        r = lock_row(req, id, &version, NULL, 0);
        if (r <= 0) {
                ret = r < 0 ? api_reply_db_error(req) : api_reply_not_found(req, "datacenter", id);
                goto out;
        }
        if (!api_if_match(req, version, true, &ret))
                goto out;
        text = json_dumps(body, JSON_COMPACT);
        {
                const char *params[2] = { id, text };
                /* Members present in the patch replace the column; absent ones stay. */
                r = api_exec(req,
                             "UPDATE datacenters d SET"
                             " name = CASE WHEN j ? 'name' THEN j->>'name' ELSE d.name END,"
                             " provider = CASE WHEN j ? 'provider' THEN j->>'provider' ELSE d.provider END,"
                             " city = CASE WHEN j ? 'city' THEN j->>'city' ELSE d.city END,"
                             " country_code = CASE WHEN j ? 'country_code' THEN j->>'country_code'"
                             "                ELSE d.country_code END,"
                             " lat = CASE WHEN j ? 'lat' THEN (j->>'lat')::float8 ELSE d.lat END,"
                             " lon = CASE WHEN j ? 'lon' THEN (j->>'lon')::float8 ELSE d.lon END,"
                             " capacity_bytes = CASE WHEN j ? 'capacity_bytes'"
                             "   THEN (j->>'capacity_bytes')::bigint ELSE d.capacity_bytes END,"
                             " used_bytes = CASE WHEN j ? 'used_bytes'"
                             "   THEN (j->>'used_bytes')::bigint ELSE d.used_bytes END,"
                             " updated_at = now()"
                             " FROM (SELECT $2::jsonb AS j) b WHERE d.id = $1",
                             2, params, NULL);
        }
        free(text);
        if (r < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        ret = api_commit_and_reply(req, &resource, id, 200, "io.homing.datacenter.updated",
                                   json_pack("{s:O}", "changes", body));
out:
        json_decref(body);
        return ret;
}

enum MHD_Result api_datacenters_set_status(struct request *req) {
        static const struct api_field fields[] = {
                { "status", FIELD_STRING, true, false, 0, 0 },
                { NULL, 0, false, false, 0, 0 },
        };
        const char *id = api_param(req, 0), *status;
        enum MHD_Result ret;
        json_t *body = api_body_object(req, &ret);
        char before[16];
        int64_t version;
        int r;

        if (!body)
                return ret;
        if (!api_check_fields(req, body, fields, &ret))
                goto out;
        status = json_string_value(json_object_get(body, "status"));
        if (!status_valid(status)) {
                ret = api_reply_invalid(req, "/status", "is active, draining or down");
                goto out;
        }
        r = lock_row(req, id, &version, before, sizeof(before));
        if (r <= 0) {
                ret = r < 0 ? api_reply_db_error(req) : api_reply_not_found(req, "datacenter", id);
                goto out;
        }
        if (!api_if_match(req, version, false, &ret))
                goto out;
        if (!strcmp(before, status)) {
                /* Already so: nothing changes, nothing to audit. */
                ret = api_commit_and_reply(req, &resource, id, 200, NULL, NULL);
                goto out;
        }
        {
                const char *params[2] = { id, status };
                r = api_exec(req,
                             "UPDATE datacenters SET status = $2, updated_at = now() WHERE id = $1",
                             2, params, NULL);
        }
        if (r < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        ret = api_commit_and_reply(req, &resource, id, 200, "io.homing.datacenter.status_changed",
                                   json_pack("{s:s, s:s, s:s}", "datacenter_id", id, "from", before,
                                             "to", status));
out:
        json_decref(body);
        return ret;
}

enum MHD_Result api_datacenters_delete(struct request *req) {
        const char *id = api_param(req, 0);
        const char *params[1] = { id };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int64_t version;
        long active, history;
        int r = lock_row(req, id, &version, NULL, 0);

        if (r <= 0)
                return r < 0 ? api_reply_db_error(req) : api_reply_not_found(req, "datacenter", id);
        if (!api_if_match(req, version, false, &ret))
                return ret;
        if (api_fetch_one(req,
                          "SELECT (SELECT count(*) FROM placements WHERE datacenter_id = $1 AND active),"
                          " (SELECT count(*) FROM placements WHERE datacenter_id = $1)"
                          " + (SELECT count(*) FROM transfers WHERE from_dc = $1 OR to_dc = $1)",
                          1, params, &res) <= 0)
                return api_reply_db_error(req);
        active = (long)store_int(res, 0, 0);
        history = (long)store_int(res, 0, 1);
        store_result_free(res);
        if (active > 0) {
                char detail[160];
                snprintf(detail, sizeof(detail),
                         "the datacenter holds %ld active placements: drain it and wait until "
                         "they have moved",
                         active);
                return api_reply_conflict(req, "datacenter-in-use", detail);
        }
        if (history > 0)
                return api_reply_conflict(req, "datacenter-has-history",
                                          "placements or transfers of the past refer to this "
                                          "datacenter; set its status to down to retire it");
        if (api_exec(req, "DELETE FROM template_replicas WHERE datacenter_id = $1", 1, params,
                     NULL) < 0 ||
            api_exec(req, "DELETE FROM datacenters WHERE id = $1", 1, params, NULL) < 0 ||
            api_audit(req, "io.homing.datacenter.deleted", id,
                      json_pack("{s:s}", "datacenter_id", id)) < 0 ||
            api_commit(req) < 0)
                return api_reply_db_error(req);
        return api_reply_empty(req, 204);
}
