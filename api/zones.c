/*
 * /v1/zones: residency zones, GeoJSON (Multi)Polygons that snapshots may be
 * confined to (a snapshot's allowed_zones). Admins create or replace one
 * with PUT (If-Match honoured when replacing) and remove it (refused while
 * a snapshot names it). The GeoJSON is read by geo's zone reader (GEOS)
 * before anything is stored, so a zone the scheduler cannot use never
 * enters the database.
 */
#include "api/zones.h"

#include <errno.h>
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
#include "geo/geo.h"
#include "store/store.h"

#define ZONE_JSON                                                                             \
        "json_build_object('id', z.id, 'name', z.name, 'geojson', z.geojson,"                \
        " 'created_at', homing_time(z.created_at), 'updated_at', homing_time(z.updated_at))"

#define SELECT_ONE "SELECT z.row_version, " ZONE_JSON "::text FROM zones z WHERE z.id = $1"

static const struct api_resource resource = { "zone", "/v1/zones", SELECT_ONE };

enum MHD_Result api_zones_list(struct request *req) {
        struct api_page page;
        struct store_result *res = NULL;
        enum MHD_Result ret;

        if (!api_page_parse(req, &page, false, &ret))
                return ret;
        {
                const char *params[2] = { page.after, page.limit_plus_one };
                ret = api_exec(req,
                               "SELECT z.id, " ZONE_JSON "::text FROM zones z"
                               " WHERE ($1::text IS NULL OR z.id > $1) ORDER BY z.id LIMIT $2::int",
                               2, params, &res) < 0
                              ? api_reply_db_error(req)
                              : api_reply_page(req, &page, res, 1);
        }
        store_result_free(res);
        api_page_fini(&page);
        return ret;
}

enum MHD_Result api_zones_get(struct request *req) {
        return api_reply_one(req, &resource, api_param(req, 0));
}

enum MHD_Result api_zones_put(struct request *req) {
        static const struct api_field fields[] = {
                { "name", FIELD_STRING, true, false, 0, 0 },
                { "geojson", FIELD_OBJECT, true, false, 0, 0 },
                { NULL, 0, false, false, 0, 0 },
        };
        const char *id = api_param(req, 0);
        enum MHD_Result ret;
        json_t *body = api_body_object(req, &ret);
        struct store_result *res = NULL;
        char *geojson = NULL, err[256] = "";
        geo_zone *zone = NULL;
        bool exists;
        int r;

        if (!body)
                return ret;
        if (!api_check_fields(req, body, fields, &ret))
                goto out;
        if (!auth_id_valid(id)) {
                ret = api_reply_invalid(req, "", "zone ids are 1 to 64 letters, digits or -_.:@");
                goto out;
        }
        geojson = json_dumps(json_object_get(body, "geojson"), JSON_COMPACT);
        r = geojson ? geo_zone_new(&zone, id, geojson, err, sizeof(err)) : -ENOMEM;
        zone = geo_zone_unref(zone);
        if (r < 0) {
                ret = api_reply_invalid(req, "/geojson",
                                        *err ? err : "is not a GeoJSON Polygon or MultiPolygon");
                goto out;
        }

        if (api_begin(req) < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        {
                const char *params[1] = { id };
                r = api_fetch_one(req, "SELECT row_version FROM zones WHERE id = $1 FOR UPDATE", 1,
                                  params, &res);
        }
        if (r < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        exists = r == 1;
        if (exists && !api_if_match(req, store_int(res, 0, 0), false, &ret))
                goto out;
        store_result_free(res);
        res = NULL;
        {
                const char *params[3] = { id, json_string_value(json_object_get(body, "name")),
                                          geojson };
                r = api_exec(req,
                             exists ? "UPDATE zones SET name = $2, geojson = $3::jsonb,"
                                      " updated_at = now() WHERE id = $1"
                                    : "INSERT INTO zones (id, name, geojson) VALUES ($1, $2, $3::jsonb)",
                             3, params, NULL);
        }
        if (r < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        {
                const char *params[1] = { id };
                char location[192];
                if (api_fetch_one(req, SELECT_ONE, 1, params, &res) <= 0 ||
                    api_audit(req, exists ? "io.homing.zone.replaced" : "io.homing.zone.created", id,
                              json_pack("{s:s, s:s}", "zone_id", id, "name",
                                        json_string_value(json_object_get(body, "name")))) < 0 ||
                    api_commit(req) < 0) {
                        ret = api_reply_db_error(req);
                        goto out;
                }
                snprintf(location, sizeof(location), "/v1/zones/%s", id);
                ret = api_reply_row(req, exists ? 200 : 201, res, exists ? NULL : location);
        }
out:
        store_result_free(res);
        free(geojson);
        json_decref(body);
        return ret;
}

enum MHD_Result api_zones_delete(struct request *req) {
        const char *id = api_param(req, 0);
        const char *params[1] = { id };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int64_t version;
        long users;
        int r;

        if (api_begin(req) < 0)
                return api_reply_db_error(req);
        r = api_fetch_one(req,
                          "SELECT row_version, (SELECT count(*) FROM snapshots s"
                          "                     WHERE z.id = ANY (s.allowed_zones))"
                          " FROM zones z WHERE id = $1 FOR UPDATE",
                          1, params, &res);
        if (r <= 0)
                return r < 0 ? api_reply_db_error(req) : api_reply_not_found(req, "zone", id);
        version = store_int(res, 0, 0);
        users = (long)store_int(res, 0, 1);
        store_result_free(res);
        if (!api_if_match(req, version, false, &ret))
                return ret;
        if (users > 0) {
                char detail[128];
                snprintf(detail, sizeof(detail), "%ld snapshots are confined to this zone", users);
                return api_reply_conflict(req, "zone-in-use", detail);
        }
        if (api_exec(req, "DELETE FROM zones WHERE id = $1", 1, params, NULL) < 0 ||
            api_audit(req, "io.homing.zone.deleted", id, json_pack("{s:s}", "zone_id", id)) < 0 ||
            api_commit(req) < 0)
                return api_reply_db_error(req);
        return api_reply_empty(req, 204);
}
