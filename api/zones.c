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

#define ZONE_JSON                                                             \
        "json_build_object('id', z.id, 'name', z.name, 'geojson', z.geojson," \
        " 'created_at', homing_time(z.created_at), 'updated_at', homing_time(z.updated_at))"

#define SELECT_ONE "SELECT z.row_version, " ZONE_JSON "::text FROM zones z WHERE z.id = $1"

const struct api_resource api_zone_resource = {
        "zone",
        "/v1/zones",
        SELECT_ONE,
        "SELECT row_version, (SELECT count(*) FROM snapshots s WHERE z.id = ANY (s.allowed_zones))"
        " FROM zones z WHERE id = $1 FOR UPDATE",
        false,
        NULL,
        "zones",
};
#define resource api_zone_resource

const struct api_field api_zone_fields[] = {
        { "name", FIELD_STRING, true, false, 0, 0 },
        { "geojson", FIELD_OBJECT, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

enum MHD_Result api_zones_list(struct request *req) {
        return api_reply_list(req, false,
                              "SELECT z.id, " ZONE_JSON "::text FROM zones z"
                              " WHERE ($1::text IS NULL OR z.id > $1) ORDER BY z.id LIMIT $2::int",
                              0, NULL);
}

enum MHD_Result api_zones_get(struct request *req) {
        return api_reply_one(req, &resource, api_param(req, 0));
}

/* The path's id, and the GeoJSON as geo's reader (GEOS) takes it: nothing else is stored. */
bool api_zone_valid(struct request *req, enum MHD_Result *reply) {
        const char *id = api_param(req, 0);
        char *geojson, err[256] = "";
        geo_zone *zone = NULL;
        int r;

        if (!auth_id_valid(id)) {
                *reply =
                        api_reply_invalid(req, "", "zone ids are 1 to 64 letters, digits or -_.:@");
                return false;
        }
        geojson = json_dumps(json_object_get(req->input, "geojson"), JSON_COMPACT);
        r = geojson ? geo_zone_new(&zone, id, geojson, err, sizeof(err)) : -ENOMEM;
        zone = geo_zone_unref(zone);
        free(geojson);
        if (r < 0) {
                *reply = api_reply_invalid(req, "/geojson",
                                           *err ? err : "is not a GeoJSON Polygon or MultiPolygon");
                return false;
        }
        return true;
}

enum MHD_Result api_zones_put(struct request *req) {
        const char *id = api_param(req, 0);
        const char *name = json_string_value(json_object_get(req->input, "name"));
        bool exists = req->locked != NULL;
        char *geojson = json_dumps(json_object_get(req->input, "geojson"), JSON_COMPACT);
        int r;

        {
                const char *params[3] = { id, name, geojson };
                r = geojson ? api_exec(req,
                                       exists ? "UPDATE zones SET name = $2, geojson = $3::jsonb,"
                                                " updated_at = now() WHERE id = $1"
                                              : "INSERT INTO zones (id, name, geojson)"
                                                " VALUES ($1, $2, $3::jsonb)",
                                       3, params, NULL)
                            : -ENOMEM;
        }
        free(geojson);
        if (r < 0)
                return api_reply_db_error(req);
        return api_commit_and_reply(req, &resource, id, exists ? 200 : 201,
                                    exists ? "io.homing.zone.replaced" : "io.homing.zone.created",
                                    json_pack("{s:s, s:s}", "zone_id", id, "name", name));
}

enum MHD_Result api_zones_delete(struct request *req) {
        const char *id = api_param(req, 0);
        const char *params[1] = { id };
        long users = (long)store_int(req->locked, 0, 1);

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
