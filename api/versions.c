/*
 * /v1/snapshots/{id}/versions and /v1/snapshots/{id}/diff: the versions an
 * agent registered for a snapshot (digest, sizes, the VM's configuration,
 * where it was written), and what differs between two of them. The
 * configurations are in PostgreSQL, so their diff (diff/diff.h) is made
 * here; the disks' is not: it is computed where both images are, by the
 * agent (`homing diff` on the datacenter's store), and the answer's "disk"
 * is null until agents take such jobs.
 */
#include "api/versions.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/input.h"
#include "api/parse.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/resource.h"
#include "diff/diff.h"
#include "store/store.h"

#define VERSION_JSON                                                            \
        "json_build_object('snapshot_id', v.snapshot_id, 'version', v.version," \
        " 'content_sha256', v.content_sha256, 'size_bytes', v.size_bytes,"      \
        " 'virtual_size', v.virtual_size, 'datacenter_id', v.datacenter_id,"    \
        " 'created_at', homing_time(v.created_at))"

/* 1 when the snapshot exists, 0 after answering 404, <0 after answering 503. */
static int snapshot_exists(struct request *req, const char *id, enum MHD_Result *ret) {
        const char *params[1] = { id };
        struct store_result *res = NULL;
        int r = api_fetch_one(req, "SELECT 1 FROM snapshots WHERE id = $1", 1, params, &res);

        store_result_free(res);
        if (r <= 0)
                *ret = api_reply_not_found_or_db_error(req, r, "snapshot", id);
        return r;
}

enum MHD_Result api_versions_list(struct request *req) {
        const char *id = api_param(req, 0);
        struct api_page page;
        struct store_result *res = NULL;
        enum MHD_Result ret;

        if (!api_page_parse(req, &page, true, &ret))
                return ret;
        if (snapshot_exists(req, id, &ret) > 0) {
                const char *params[3] = { id, page.after, page.limit_plus_one };
                ret = api_exec(req,
                               "SELECT v.version, " VERSION_JSON "::text FROM snapshot_versions v"
                               " WHERE v.snapshot_id = $1"
                               "   AND ($2::bigint IS NULL OR v.version > $2::bigint)"
                               " ORDER BY v.version LIMIT $3::int",
                               3, params, &res) < 0
                              ? api_reply_db_error(req)
                              : api_reply_page(req, &page, res, 1);
        }
        store_result_free(res);
        api_page_fini(&page);
        return ret;
}

/* A version number from the query: true and *out, false after answering 400. */
static bool version_arg(struct request *req, const char *name, const char **out,
                        enum MHD_Result *ret) {
        const char *v = api_query(req, name);

        if (!v || !api_serial_id_valid(v) || v[0] == '0') {
                *ret = api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "from and to are version numbers (whole numbers from 1)",
                                         NULL);
                return false;
        }
        *out = v;
        return true;
}

enum MHD_Result api_versions_diff(struct request *req) {
        const char *id = api_param(req, 0), *from = NULL, *to = NULL;
        struct store_result *res = NULL;
        json_t *row[2] = { NULL, NULL }, *changes = NULL, *patch = NULL;
        enum MHD_Result ret;
        char what[200];

        if (!version_arg(req, "from", &from, &ret) || !version_arg(req, "to", &to, &ret))
                return ret;
        if (snapshot_exists(req, id, &ret) <= 0)
                return ret;
        {
                const char *params[3] = { id, from, to };
                if (api_exec(req,
                             "SELECT v.version::text, " VERSION_JSON "::text, v.config::text"
                             " FROM snapshot_versions v"
                             " WHERE v.snapshot_id = $1 AND v.version IN ($2::bigint, $3::bigint)",
                             3, params, &res) < 0)
                        return api_reply_db_error(req);
        }
        for (size_t i = 0; i < store_rows(res); i++) {
                json_t *meta = json_loads(store_text(res, i, 1), 0, NULL);
                json_t *config = json_loads(store_text(res, i, 2), 0, NULL);
                const char *v = store_text(res, i, 0);

                json_object_set_new(meta, "config", config);
                for (int k = 0; k < 2; k++)
                        if (!strcmp(v, k ? to : from) && !row[k])
                                row[k] = json_incref(meta);
                json_decref(meta);
        }
        store_result_free(res);
        for (int k = 0; k < 2; k++)
                if (!row[k]) {
                        snprintf(what, sizeof(what), "version %s of snapshot", k ? to : from);
                        ret = api_reply_not_found(req, what, id);
                        goto out;
                }
        if (diff_config(json_object_get(row[0], "config"), json_object_get(row[1], "config"),
                        &changes, &patch) < 0) {
                ret = api_reply_problem(req, 503, "out-of-memory", "Out of memory",
                                        "the diff could not be made; try again", NULL);
                goto out;
        }
        json_object_del(row[0], "config");
        json_object_del(row[1], "config");
        ret = api_reply_json(req, 200,
                             json_pack("{s:s, s:I, s:I, s:[OO], s:{s:o, s:o}, s:n}", "snapshot_id",
                                       id, "from", (json_int_t)strtoll(from, NULL, 10), "to",
                                       (json_int_t)strtoll(to, NULL, 10), "versions", row[0],
                                       row[1], "config", "changes", changes, "patch", patch,
                                       "disk"));
out:
        json_decref(row[0]);
        json_decref(row[1]);
        return ret;
}
