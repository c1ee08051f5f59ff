/*
 * /v1/snapshots: users' VM snapshots, where each lives now (its active
 * placement), where it lived (the placement history) and why it moved or
 * stayed (the scheduler's decisions). Viewers read; admins add a snapshot
 * with its first placement, change its size, priority (1 most urgent to 5,
 * 3 by default) and allowed zones (If-Match required), and remove it
 * (refused while a transfer of it is queued or running).
 */
#include "api/snapshots.h"

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
#include "store/store.h"

/* A replica and its lag, over the view replica_lag (migrations 020, 029) as l:
 * a protection replica, or a copy pre-staged for a trip until ends_at. */
#define REPLICA_JSON                                                                \
        "json_build_object('datacenter_id', l.datacenter_id, 'version', l.version," \
        " 'newest_version', l.newest_version, 'lag_s', round(l.lag_s::numeric, 3)," \
        " 'bytes_behind', l.bytes_behind, 'rpo_s', l.rpo_s,"                        \
        " 'rpo_breached', coalesce(l.lag_s > l.rpo_s, false),"                      \
        " 'rpo_breached_at', homing_time(l.rpo_breached_at),"                       \
        " 'copied_at', homing_time(l.copied_at), 'reason', l.reason,"               \
        " 'trip_id', l.trip_id, 'ends_at', homing_time(l.ends_at))"

#define REPLICAS_OF(snapshot)                                                  \
        "coalesce((SELECT json_agg(" REPLICA_JSON " ORDER BY l.datacenter_id)" \
        " FROM replica_lag l WHERE l.snapshot_id = " snapshot "), '[]'::json)"

#define SNAP_REPLICAS REPLICAS_OF("s.id")

#define SNAP_JSON                                                                               \
        "json_build_object('id', s.id, 'user_id', s.user_id, 'template_id', s.template_id,"     \
        " 'size_bytes', s.size_bytes, 'priority', s.priority, 'version', s.version,"            \
        " 'allowed_zones', to_json(s.allowed_zones), 'power', s.power, 'epoch', s.epoch,"       \
        " 'placement', (SELECT json_build_object('datacenter_id', p.datacenter_id,"             \
        "                 'version', p.version, 'epoch', p.epoch,"                              \
        "                 'since', homing_time(p.created_at))"                                  \
        "               FROM placements p WHERE p.snapshot_id = s.id AND p.active),"            \
        " 'powered_on_at', coalesce((SELECT json_agg(l.datacenter_id ORDER BY l.datacenter_id)" \
        "   FROM (SELECT DISTINCT ON (r.datacenter_id) r.datacenter_id, r.state"                \
        "         FROM power_records r WHERE r.snapshot_id = s.id"                              \
        "         ORDER BY r.datacenter_id, r.id DESC) l WHERE l.state = 'powered_on'),"        \
        "   '[]'::json),"                                                                       \
        " 'replicas', " SNAP_REPLICAS ","                                                       \
        " 'created_at', homing_time(s.created_at), 'updated_at', homing_time(s.updated_at))"

#define SELECT_ONE "SELECT s.row_version, " SNAP_JSON "::text FROM snapshots s WHERE s.id = $1"

const struct api_resource api_snapshot_resource = {
        "snapshot",
        "/v1/snapshots",
        SELECT_ONE,
        "SELECT row_version, EXISTS (SELECT 1 FROM transfers t"
        "  WHERE t.snapshot_id = s.id AND t.state IN ('queued', 'running'))"
        " FROM snapshots s WHERE id = $1 FOR UPDATE",
        false,
        NULL,
        "snapshots",
};
#define resource api_snapshot_resource

const struct api_field api_snapshot_fields[] = {
        { "id", FIELD_ID, true, false, 0, 0 },
        { "user_id", FIELD_ID, true, false, 0, 0 },
        { "template_id", FIELD_ID, true, false, 0, 0 },
        { "size_bytes", FIELD_COUNT, true, false, 0, 0 },
        { "priority", FIELD_INTEGER, false, false, 1, 5 },
        { "allowed_zones", FIELD_ID_ARRAY, false, false, 0, 0 },
        { "datacenter_id", FIELD_ID, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_snapshot_patch_fields[] = {
        { "size_bytes", FIELD_COUNT, false, false, 0, 0 },
        { "priority", FIELD_INTEGER, false, false, 1, 5 },
        { "allowed_zones", FIELD_ID_ARRAY, false, false, 0, 0 },
        { "power", FIELD_STRING, false, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

/* A PATCH's desired power: on or off. */
bool api_snapshot_valid(struct request *req, enum MHD_Result *reply) {
        const json_t *power = json_object_get(req->input, "power");

        if (!power || !strcmp(json_string_value(power), "on") ||
            !strcmp(json_string_value(power), "off"))
                return true;
        *reply = api_reply_invalid(req, "/power", "is on or off");
        return false;
}

enum MHD_Result api_snapshots_list(struct request *req) {
        const char *user = api_query(req, "user_id"), *tpl = api_query(req, "template_id"),
                   *dc = api_query(req, "datacenter_id");
        const char *filters[3] = { user, tpl, dc };

        return api_reply_list(req, false,
                              "SELECT s.id, " SNAP_JSON "::text FROM snapshots s"
                              " WHERE ($1::text IS NULL OR s.user_id = $1)"
                              "   AND ($2::text IS NULL OR s.template_id = $2)"
                              "   AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM placements p"
                              "        WHERE p.snapshot_id = s.id AND p.active"
                              "          AND p.datacenter_id = $3))"
                              "   AND ($4::text IS NULL OR s.id > $4)"
                              " ORDER BY s.id LIMIT $5::int",
                              3, filters);
}

enum MHD_Result api_snapshots_get(struct request *req) {
        return api_reply_one(req, &resource, api_param(req, 0));
}

/* Every allowed zone must exist: 0 when they do, 1 and the first unknown one in out, <0. */
static int unknown_zone(struct request *req, const json_t *zones, char *out, size_t size) {
        struct store_result *res = NULL;
        char *text;
        int r;

        if (!zones || json_array_size(zones) == 0)
                return 0;
        text = json_dumps(zones, JSON_COMPACT);
        {
                const char *params[1] = { text };
                r = api_fetch_one(req,
                                  "SELECT z FROM jsonb_array_elements_text($1::jsonb) z"
                                  " WHERE NOT EXISTS (SELECT 1 FROM zones WHERE id = z) LIMIT 1",
                                  1, params, &res);
        }
        free(text);
        if (r == 1)
                snprintf(out, size, "%s", store_text(res, 0, 0));
        store_result_free(res);
        return r;
}

enum MHD_Result api_snapshots_create(struct request *req) {
        enum MHD_Result ret;
        json_t *body = req->input;
        struct store_result *res = NULL;
        char zone[AUTH_ID_MAX + 1];
        int r;

        if (api_begin(req) < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        {
                const char *params[2] = { json_string_value(json_object_get(body, "template_id")),
                                          json_string_value(json_object_get(body,
                                                                            "datacenter_id")) };
                r = api_fetch_one(req,
                                  "SELECT EXISTS (SELECT 1 FROM templates WHERE id = $1),"
                                  "       EXISTS (SELECT 1 FROM datacenters WHERE id = $2)",
                                  2, params, &res);
        }
        if (r <= 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        if (!store_bool(res, 0, 0) || !store_bool(res, 0, 1)) {
                bool tpl = store_bool(res, 0, 0);
                ret = api_reply_invalid(req, tpl ? "/datacenter_id" : "/template_id",
                                        tpl ? "no such datacenter" : "no such template");
                goto out;
        }
        store_result_free(res);
        res = NULL;
        r = unknown_zone(req, json_object_get(body, "allowed_zones"), zone, sizeof(zone));
        if (r != 0) {
                ret = r < 0 ? api_reply_db_error(req)
                            : api_reply_invalid(req, "/allowed_zones",
                                                "names a zone that does not exist");
                goto out;
        }
        ret = api_create_and_reply(
                req, &resource,
                "WITH s AS ("
                "  INSERT INTO snapshots (id, user_id, template_id, size_bytes, priority,"
                "                         allowed_zones)"
                "  SELECT j->>'id', j->>'user_id', j->>'template_id',"
                "   (j->>'size_bytes')::bigint, coalesce((j->>'priority')::int, 3),"
                "   coalesce(ARRAY(SELECT jsonb_array_elements_text(j->'allowed_zones')),"
                "            '{}')"
                "  FROM (SELECT $1::jsonb AS j) b"
                "  ON CONFLICT (id) DO NOTHING RETURNING id, version)"
                " INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
                " SELECT s.id, $1::jsonb->>'datacenter_id', s.version, true FROM s"
                " RETURNING snapshot_id",
                "io.homing.snapshot.created");
out:
        store_result_free(res);
        return ret;
}

enum MHD_Result api_snapshots_update(struct request *req) {
        char zone[AUTH_ID_MAX + 1];
        int r = unknown_zone(req, json_object_get(req->input, "allowed_zones"), zone, sizeof(zone));

        if (r != 0)
                return r < 0 ? api_reply_db_error(req)
                             : api_reply_invalid(req, "/allowed_zones",
                                                 "names a zone that does not exist");
        return api_patch(req);
}

enum MHD_Result api_snapshots_delete(struct request *req) {
        const char *id = api_param(req, 0);
        const char *params[1] = { id };

        if (store_bool(req->locked, 0, 1))
                return api_reply_conflict(req, "snapshot-in-transfer",
                                          "a transfer of this snapshot is queued or running: "
                                          "cancel it first");
        if (api_exec(req, "DELETE FROM snapshots WHERE id = $1", 1, params, NULL) < 0 ||
            api_audit(req, "io.homing.snapshot.deleted", id,
                      json_pack("{s:s}", "snapshot_id", id)) < 0 ||
            api_commit(req) < 0)
                return api_reply_db_error(req);
        return api_reply_empty(req, 204);
}

int api_snapshot_exists(struct request *req, const char *id, enum MHD_Result *ret) {
        const char *params[1] = { id };
        struct store_result *res = NULL;
        int r = api_fetch_one(req, "SELECT 1 FROM snapshots WHERE id = $1", 1, params, &res);

        store_result_free(res);
        if (r <= 0)
                *ret = api_reply_not_found_or_db_error(req, r, "snapshot", id);
        return r;
}

#define PLACEMENT_JSON                                                                 \
        "json_build_object('id', p.id, 'snapshot_id', p.snapshot_id,"                  \
        " 'datacenter_id', p.datacenter_id, 'version', p.version, 'active', p.active," \
        " 'replica', EXISTS (SELECT 1 FROM replicas r WHERE r.placement_id = p.id),"   \
        " 'epoch', p.epoch,"                                                           \
        " 'created_at', homing_time(p.created_at),"                                    \
        " 'deactivated_at', homing_time(p.deactivated_at))"

enum MHD_Result api_snapshots_placement(struct request *req) {
        const char *params[1] = { api_param(req, 0) };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int r;

        if (api_snapshot_exists(req, params[0], &ret) <= 0)
                return ret;
        r = api_fetch_one(req,
                          "SELECT p.id, " PLACEMENT_JSON "::text FROM placements p"
                          " WHERE p.snapshot_id = $1 AND p.active",
                          1, params, &res);
        if (r <= 0)
                return r < 0 ? api_reply_db_error(req)
                             : api_reply_not_found(req, "active placement of snapshot", params[0]);
        ret = api_reply_raw(req, 200, store_text(res, 0, 1), NULL);
        store_result_free(res);
        return ret;
}

enum MHD_Result api_snapshot_page(struct request *req, const char *sql) {
        const char *id = api_param(req, 0);
        struct api_page page;
        enum MHD_Result ret;

        if (!api_page_parse(req, &page, true, &ret))
                return ret;
        if (api_snapshot_exists(req, id, &ret) <= 0) {
                api_page_fini(&page);
                return ret;
        }
        {
                const char *params[3] = { id, page.after, page.limit_plus_one };
                return api_reply_page_query(req, &page, sql, 3, params);
        }
}

enum MHD_Result api_snapshots_placements(struct request *req) {
        return api_snapshot_page(req, "SELECT p.id, " PLACEMENT_JSON "::text FROM placements p"
                                      " WHERE p.snapshot_id = $1"
                                      "   AND ($2::bigint IS NULL OR p.id < $2::bigint)"
                                      " ORDER BY p.id DESC LIMIT $3::int");
}

/* Its replicas with their lag: a few (the policy allows 3), so one page. */
enum MHD_Result api_snapshots_replicas(struct request *req) {
        const char *params[1] = { api_param(req, 0) };
        struct store_result *res = NULL;
        enum MHD_Result ret;

        if (api_snapshot_exists(req, params[0], &ret) <= 0)
                return ret;
        ret = api_exec(req, "SELECT json_build_object('items', " REPLICAS_OF("$1") ")::text", 1,
                       params, &res) < 0
                      ? api_reply_db_error(req)
                      : api_reply_raw(req, 200, store_text(res, 0, 0), NULL);
        store_result_free(res);
        return ret;
}

enum MHD_Result api_snapshots_decisions(struct request *req) {
        /* Named columns: the decisions table grows, this answer keeps its shape. */
        return api_snapshot_page(
                req, "SELECT d.id, json_build_object('id', d.id, 'snapshot_id', d.snapshot_id,"
                     "  'user_id', d.user_id, 'device_id', d.device_id, 'outcome', d.outcome,"
                     "  'reason', d.reason, 'from_dc', d.from_dc, 'to_dc', d.to_dc,"
                     "  'from_distance_m', d.from_distance_m, 'to_distance_m', d.to_distance_m,"
                     "  'report_lat', d.report_lat, 'report_lon', d.report_lon,"
                     "  'report_ts', homing_time(d.report_ts), 'transfer_id', d.transfer_id,"
                     "  'details', d.details,"
                     "  'created_at', homing_time(d.created_at))::text"
                     " FROM decisions d WHERE d.snapshot_id = $1"
                     "   AND ($2::bigint IS NULL OR d.id < $2::bigint)"
                     " ORDER BY d.id DESC LIMIT $3::int");
}
