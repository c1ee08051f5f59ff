/*
 * /v1/templates: the VM templates snapshots are made from, and where each is
 * replicated (a transfer to a datacenter that holds the template moves only
 * the snapshot). Viewers read; admins add, change (If-Match required),
 * remove (refused while snapshots or transfers use the template), and record
 * or forget replicas. A replica change is a change of the template: its
 * ETag moves.
 */
#include "api/templates.h"

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
#include "store/store.h"

#define TPL_JSON                                                                              \
        "json_build_object('id', t.id, 'name', t.name, 'size_bytes', t.size_bytes,"           \
        " 'replicas', coalesce((SELECT json_agg(r.datacenter_id ORDER BY r.datacenter_id)"    \
        "                       FROM template_replicas r WHERE r.template_id = t.id), '[]')," \
        " 'created_at', homing_time(t.created_at), 'updated_at', homing_time(t.updated_at))"

#define SELECT_ONE "SELECT t.row_version, " TPL_JSON "::text FROM templates t WHERE t.id = $1"

const struct api_resource api_template_resource = {
        "template",  "/v1/templates",
        SELECT_ONE,  "SELECT row_version FROM templates WHERE id = $1 FOR UPDATE",
        false,       NULL,
        "templates",
};
#define resource api_template_resource

const struct api_field api_template_fields[] = {
        { "id", FIELD_ID, true, false, 0, 0 },
        { "name", FIELD_STRING, true, false, 0, 0 },
        { "size_bytes", FIELD_COUNT, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_template_patch_fields[] = {
        { "name", FIELD_STRING, false, false, 0, 0 },
        { "size_bytes", FIELD_COUNT, false, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

enum MHD_Result api_templates_list(struct request *req) {
        return api_reply_list(req, false,
                              "SELECT t.id, " TPL_JSON "::text FROM templates t"
                              " WHERE ($1::text IS NULL OR t.id > $1) ORDER BY t.id LIMIT $2::int",
                              0, NULL);
}

enum MHD_Result api_templates_get(struct request *req) {
        return api_reply_one(req, &resource, api_param(req, 0));
}

enum MHD_Result api_templates_create(struct request *req) {
        if (api_begin(req) < 0)
                return api_reply_db_error(req);
        return api_create_and_reply(req, &resource,
                                    "INSERT INTO templates (id, name, size_bytes)"
                                    " SELECT j->>'id', j->>'name', (j->>'size_bytes')::bigint"
                                    " FROM (SELECT $1::jsonb AS j) b"
                                    " ON CONFLICT (id) DO NOTHING RETURNING id",
                                    "io.homing.template.created");
}

enum MHD_Result api_templates_delete(struct request *req) {
        const char *id = api_param(req, 0);
        const char *params[1] = { id };
        struct store_result *res = NULL;
        int r;

        if (api_fetch_one(req,
                          "SELECT EXISTS (SELECT 1 FROM snapshots WHERE template_id = $1)"
                          "    OR EXISTS (SELECT 1 FROM transfers WHERE template_id = $1)",
                          1, params, &res) <= 0)
                return api_reply_db_error(req);
        r = store_bool(res, 0, 0);
        store_result_free(res);
        if (r)
                return api_reply_conflict(req, "template-in-use",
                                          "snapshots or transfers refer to this template");
        if (api_exec(req, "DELETE FROM templates WHERE id = $1", 1, params, NULL) < 0 ||
            api_audit(req, "io.homing.template.deleted", id,
                      json_pack("{s:s}", "template_id", id)) < 0 ||
            api_commit(req) < 0)
                return api_reply_db_error(req);
        return api_reply_empty(req, 204);
}

enum MHD_Result api_replicas_list(struct request *req) {
        const char *id = api_param(req, 0);
        const char *one[1] = { id };
        struct api_page page;
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int r;

        if (!api_page_parse(req, &page, false, &ret))
                return ret;
        r = api_fetch_one(req, "SELECT 1 FROM templates WHERE id = $1", 1, one, &res);
        store_result_free(res);
        res = NULL;
        if (r <= 0) {
                api_page_fini(&page);
                return api_reply_not_found_or_db_error(req, r, "template", id);
        }
        {
                const char *params[3] = { id, page.after, page.limit_plus_one };
                return api_reply_page_query(
                        req, &page,
                        "SELECT r.datacenter_id, json_build_object('template_id', r.template_id,"
                        "  'datacenter_id', r.datacenter_id,"
                        "  'created_at', homing_time(r.created_at))::text"
                        " FROM template_replicas r WHERE r.template_id = $1"
                        "  AND ($2::text IS NULL OR r.datacenter_id > $2)"
                        " ORDER BY r.datacenter_id LIMIT $3::int",
                        3, params);
        }
}

enum MHD_Result api_replicas_put(struct request *req) {
        const char *id = api_param(req, 0), *dc = api_param(req, 1);
        const char *params[2] = { id, dc };
        struct store_result *res = NULL;
        int r;

        r = api_fetch_one(req, "SELECT 1 FROM datacenters WHERE id = $1", 1, &params[1], &res);
        store_result_free(res);
        res = NULL;
        if (r <= 0)
                return api_reply_not_found_or_db_error(req, r, "datacenter", dc);
        r = api_fetch_one(req,
                          "INSERT INTO template_replicas (template_id, datacenter_id)"
                          " VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1",
                          2, params, &res);
        store_result_free(res);
        if (r < 0)
                return api_reply_db_error(req);
        if (r == 0) {
                /* Already recorded: say so, change nothing. */
                api_commit(req);
                return api_templates_get(req);
        }
        if (api_exec(req, "UPDATE templates SET updated_at = now() WHERE id = $1", 1, params,
                     NULL) < 0)
                return api_reply_db_error(req);
        return api_commit_and_reply(req, &resource, id, 201, "io.homing.template.replica_added",
                                    json_pack("{s:s, s:s}", "template_id", id, "datacenter_id",
                                              dc));
}

enum MHD_Result api_replicas_delete(struct request *req) {
        const char *id = api_param(req, 0), *dc = api_param(req, 1);
        const char *params[2] = { id, dc };
        struct store_result *res = NULL;
        int r;

        r = api_fetch_one(
                req,
                "DELETE FROM template_replicas WHERE template_id = $1 AND datacenter_id = $2"
                " RETURNING 1",
                2, params, &res);
        store_result_free(res);
        if (r <= 0)
                return api_reply_not_found_or_db_error(req, r, "replica at", dc);
        if (api_exec(req, "UPDATE templates SET updated_at = now() WHERE id = $1", 1, params,
                     NULL) < 0 ||
            api_audit(req, "io.homing.template.replica_removed", id,
                      json_pack("{s:s, s:s}", "template_id", id, "datacenter_id", dc)) < 0 ||
            api_commit(req) < 0)
                return api_reply_db_error(req);
        return api_reply_empty(req, 204);
}
