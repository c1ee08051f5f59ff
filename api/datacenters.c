/*
 * /v1/datacenters: the catalog. Viewers list (by status, paged by id), read
 * one (with its ETag), and ask for the nearest; operators set the status
 * (drain one: the scheduler stops choosing it); admins add, change (If-Match
 * required) and remove them (refused while a datacenter holds active
 * placements, or while its history refers to it: set it down instead).
 *
 * Representations are built by PostgreSQL (DC_JSON) so every route shows
 * the same thing, including how many snapshots the datacenter holds. The
 * nearest are geo's k-nearest index over the active ones, rebuilt when a
 * datacenter has changed.
 */
#include "api/datacenters.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
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
#include "geo/geo.h"
#include "store/store.h"

#define DC_JSON                                                                                 \
        "json_build_object('id', d.id, 'name', d.name, 'provider', d.provider, 'city', d.city," \
        " 'country_code', d.country_code, 'lat', d.lat, 'lon', d.lon, 'status', d.status,"      \
        " 'capacity_bytes', d.capacity_bytes, 'used_bytes', d.used_bytes,"                      \
        " 'reserved_bytes', d.reserved_bytes, 'cached_bytes', homing_cache_bytes(d.id),"        \
        " 'agent_url', d.agent_url, 'failure_domain', d.failure_domain,"                        \
        " 'snapshots', (SELECT count(*) FROM placements p"                                      \
        "               WHERE p.datacenter_id = d.id AND p.active),"                            \
        " 'created_at', homing_time(d.created_at), 'updated_at', homing_time(d.updated_at))"

#define SELECT_ONE "SELECT d.row_version, " DC_JSON "::text FROM datacenters d WHERE d.id = $1"

const struct api_resource api_datacenter_resource = {
        "datacenter",  "/v1/datacenters",
        SELECT_ONE,    "SELECT row_version, status FROM datacenters WHERE id = $1 FOR UPDATE",
        false,         NULL,
        "datacenters",
};
#define resource api_datacenter_resource

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

const struct api_field api_datacenter_fields[] = {
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
        { "failure_domain", FIELD_ID, false, true, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_datacenter_patch_fields[] = {
        { "name", FIELD_STRING, false, false, 0, 0 },
        { "provider", FIELD_STRING, false, true, 0, 0 },
        { "city", FIELD_STRING, false, true, 0, 0 },
        { "country_code", FIELD_STRING, false, true, 0, 0 },
        { "lat", FIELD_NUMBER, false, false, -90, 90 },
        { "lon", FIELD_NUMBER, false, false, -180, 180 },
        { "capacity_bytes", FIELD_COUNT, false, false, 0, 0 },
        { "used_bytes", FIELD_COUNT, false, false, 0, 0 },
        { "failure_domain", FIELD_ID, false, true, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_datacenter_status_fields[] = {
        { "status", FIELD_STRING, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

bool api_datacenter_valid(struct request *req, enum MHD_Result *reply) {
        json_t *body = req->input;

        if (json_object_get(body, "id") &&
            !dc_id_valid(json_string_value(json_object_get(body, "id")))) {
                *reply = api_reply_invalid(req, "/id",
                                           "starts with a letter or digit and has no '@'");
                return false;
        }
        if (json_object_get(body, "status") &&
            !status_valid(json_string_value(json_object_get(body, "status")))) {
                *reply = api_reply_invalid(req, "/status", "is active, draining or down");
                return false;
        }
        if (json_string_value(json_object_get(body, "failure_domain")) &&
            !dc_id_valid(json_string_value(json_object_get(body, "failure_domain")))) {
                *reply = api_reply_invalid(req, "/failure_domain",
                                           "starts with a letter or digit and has no '@'");
                return false;
        }
        if (!country_valid(json_object_get(body, "country_code"))) {
                *reply = api_reply_invalid(req, "/country_code",
                                           "is two capital letters (ISO 3166-1)");
                return false;
        }
        return true;
}

enum MHD_Result api_datacenters_list(struct request *req) {
        const char *status = api_query(req, "status");

        if (status && !status_valid(status))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "status is active, draining or down", NULL);
        {
                const char *filters[1] = { status };
                return api_reply_list(req, false,
                                      "SELECT d.id, " DC_JSON "::text FROM datacenters d"
                                      " WHERE ($1::text IS NULL OR d.status = $1)"
                                      "   AND ($2::text IS NULL OR d.id > $2)"
                                      " ORDER BY d.id LIMIT $3::int",
                                      1, filters);
        }
}

enum MHD_Result api_datacenters_get(struct request *req) {
        return api_reply_one(req, &resource, api_param(req, 0));
}

/*
 * The active datacenters' geo index, as current as the table: a stamp of
 * their (id, row_version) — the trigger bumps row_version on every change —
 * says whether the one built last still holds. Returns a reference, or NULL
 * after answering.
 */
static geo_index *active_sites(struct request *req, enum MHD_Result *reply) {
        struct api *a = req->api;
        struct store_result *res = NULL;
        geo_index *index = NULL;
        geo_site *sites;
        char stamp[33];
        size_t n;
        int r;

        if (api_fetch_one(req,
                          "SELECT md5(coalesce(string_agg(id || ':' || row_version, ','"
                          " ORDER BY id), '')) FROM datacenters WHERE status = 'active'",
                          0, NULL, &res) <= 0) {
                *reply = api_reply_db_error(req);
                return NULL;
        }
        snprintf(stamp, sizeof(stamp), "%s", store_text(res, 0, 0));
        res = store_result_free(res);
        pthread_mutex_lock(&a->sites_lock);
        if (a->sites && !strcmp(a->sites_stamp, stamp))
                index = geo_index_ref(a->sites);
        pthread_mutex_unlock(&a->sites_lock);
        if (index)
                return index;

        if (api_exec(req, "SELECT id, lat, lon FROM datacenters WHERE status = 'active'", 0, NULL,
                     &res) < 0) {
                *reply = api_reply_db_error(req);
                return NULL;
        }
        n = store_rows(res);
        sites = calloc(n + 1, sizeof(*sites));
        r = sites ? 0 : -ENOMEM;
        for (size_t i = 0; r == 0 && i < n; i++)
                sites[i] = (geo_site){ .id = store_text(res, i, 0),
                                       .lat = store_double(res, i, 1),
                                       .lon = store_double(res, i, 2),
                                       .status = GEO_SITE_ACTIVE };
        if (r == 0)
                r = geo_index_new(&index, sites, n, NULL, 0);
        free(sites);
        store_result_free(res);
        if (r < 0) {
                *reply = api_reply_problem(req, 500, "internal", "Internal error",
                                           "the datacenters' index could not be built", NULL);
                return NULL;
        }
        pthread_mutex_lock(&a->sites_lock);
        geo_index_unref(a->sites);
        a->sites = geo_index_ref(index);
        snprintf(a->sites_stamp, sizeof(a->sites_stamp), "%s", stamp);
        pthread_mutex_unlock(&a->sites_lock);
        return index;
}

/* The k nearest active datacenters, nearest first (ties by id), each with its distance. */
enum MHD_Result api_datacenters_nearest(struct request *req) {
        double lat, lon, k = 1;
        struct store_result *res = NULL;
        enum MHD_Result ret = MHD_NO;
        geo_index *index;
        geo_hit *hits;
        json_t *ids, *items;
        char *ids_text;
        int n;

        if (!api_query_number(req, "lat", &lat) || !api_query_number(req, "lon", &lon) ||
            !geo_point_valid(lat, lon))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "lat in [-90, 90] and lon in [-180, 180] are required",
                                         NULL);
        if (api_query(req, "k") &&
            (!api_query_number(req, "k", &k) || k < 1 || k > 1000 || k != floor(k)))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "k must be a whole number from 1 to 1000", NULL);
        if (!(index = active_sites(req, &ret)))
                return ret;
        hits = calloc((size_t)k, sizeof(*hits));
        n = hits ? geo_index_nearest(index, lat, lon, NULL, hits, (size_t)k) : -ENOMEM;
        ids = json_array();
        for (int i = 0; i < n; i++)
                json_array_append_new(ids, json_string(geo_index_site_id(index, hits[i].site)));
        ids_text = json_dumps(ids, JSON_COMPACT);
        {
                const char *params[1] = { ids_text };
                if (n < 0 || !ids_text ||
                    api_exec(req,
                             "SELECT d.id, " DC_JSON "::text FROM datacenters d"
                             " WHERE d.id IN (SELECT jsonb_array_elements_text($1::jsonb))",
                             1, params, &res) < 0) {
                        ret = api_reply_db_error(req);
                        goto out;
                }
        }
        items = json_array();
        for (int i = 0; i < n; i++) {
                const char *id = json_string_value(json_array_get(ids, (size_t)i));
                for (size_t row = 0; row < store_rows(res); row++) {
                        json_t *dc;
                        if (strcmp(store_text(res, row, 0), id) != 0 ||
                            !(dc = json_loads(store_text(res, row, 1), 0, NULL)))
                                continue;
                        json_object_set_new(dc, "distance_m",
                                            json_real(round(hits[i].distance_m * 1000) / 1000));
                        json_array_append_new(items, dc);
                }
        }
        ret = api_reply_json(req, 200, json_pack("{s:o}", "items", items));
out:
        store_result_free(res);
        free(ids_text);
        json_decref(ids);
        free(hits);
        geo_index_unref(index);
        return ret;
}

enum MHD_Result api_datacenters_create(struct request *req) {
        if (api_begin(req) < 0)
                return api_reply_db_error(req);
        return api_create_and_reply(
                req, &resource,
                "INSERT INTO datacenters (id, name, provider, city, country_code,"
                "  lat, lon, status, capacity_bytes, used_bytes, failure_domain)"
                " SELECT j->>'id', j->>'name', j->>'provider', j->>'city',"
                "  j->>'country_code', (j->>'lat')::float8, (j->>'lon')::float8,"
                "  coalesce(j->>'status', 'active'),"
                "  coalesce((j->>'capacity_bytes')::bigint, 0),"
                "  coalesce((j->>'used_bytes')::bigint, 0), j->>'failure_domain'"
                " FROM (SELECT $1::jsonb AS j) b"
                " ON CONFLICT (id) DO NOTHING RETURNING id",
                "io.homing.datacenter.created");
}

/* Fails the datacenter's snapshots over (homing_failover); *failover: its id. */
static int start_failover(struct request *req, const char *id, long long *failover) {
        struct store_result *res = NULL;
        json_t *who = api_actor_json(req);
        char *actor = who ? json_dumps(who, JSON_COMPACT) : NULL;
        int r;

        json_decref(who);
        if (!actor)
                return -ENOMEM;
        /* A large site's failover is one long statement, and it must finish:
         * --pg-statement-timeout-ms is for reads, not for this. */
        if (api_exec(req, "SET LOCAL statement_timeout = 0", 0, NULL, NULL) < 0) {
                free(actor);
                return -EIO;
        }
        {
                const char *params[3] = { id, req->api->cfg->topic_audit, actor };
                r = api_fetch_one(req, "SELECT homing_failover($1, $2, $3::jsonb)", 3, params,
                                  &res);
        }
        if (r > 0)
                *failover = store_int(res, 0, 0);
        free(actor);
        store_result_free(res);
        return r <= 0 ? -EIO : 0;
}

enum MHD_Result api_datacenters_set_status(struct request *req) {
        const char *id = api_param(req, 0);
        const char *status = json_string_value(json_object_get(req->input, "status"));
        long long failover = 0;
        char before[16];
        json_t *data;
        int r = 0;

        snprintf(before, sizeof(before), "%s", store_text(req->locked, 0, 1));
        if (!strcmp(before, status))
                /* Already so: nothing changes, nothing to audit. */
                return api_commit_and_reply(req, &resource, id, 200, NULL, NULL);
        {
                const char *params[2] = { id, status };
                if (api_exec(req,
                             "UPDATE datacenters SET status = $2, updated_at = now() WHERE id = $1",
                             2, params, NULL) < 0)
                        return api_reply_db_error(req);
        }
        data = json_pack("{s:s, s:s, s:s}", "datacenter_id", id, "from", before, "to", status);
        if (!data)
                return api_reply_db_error(req);
        /* Down: its snapshots fail over now, in this transaction (migration 023).
         * Back: its failover ends. */
        if (!strcmp(status, "down"))
                r = start_failover(req, id, &failover);
        else if (!strcmp(before, "down")) {
                const char *params[1] = { id };
                r = api_exec(req, "SELECT homing_failover_end($1)", 1, params, NULL);
        }
        if (r < 0) {
                json_decref(data);
                return api_reply_db_error(req);
        }
        if (failover > 0)
                json_object_set_new(data, "failover_id", json_integer(failover));
        return api_commit_and_reply(req, &resource, id, 200, "io.homing.datacenter.status_changed",
                                    data);
}

enum MHD_Result api_datacenters_delete(struct request *req) {
        const char *id = api_param(req, 0);
        const char *params[1] = { id };
        struct store_result *res = NULL;
        long active, history;

        if (api_fetch_one(
                    req,
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
