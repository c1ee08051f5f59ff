/*
 * /v1/snapshots/{id}/versions and /v1/snapshots/{id}/diff: the versions an
 * agent registered for a snapshot (digest, sizes, the VM's configuration,
 * where it was written), and what differs between two of them. The
 * configurations are in PostgreSQL, so their diff (diff/diff.h) is made
 * here; the disks' is not: it is computed where both images are, by the
 * agent of the snapshot's active datacenter on its store: the first GET of
 * a pair queues it, and later ones answer its state, then its extents. A
 * new version composed of a base
 * and chosen items of another is checked here against the registered
 * versions (configurations, disk size) and queued as a composition for the
 * agent of the snapshot's active datacenter, which writes it in its store,
 * registers it and says how it went.
 */
#include "api/versions.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/audit.h"
#include "api/file_diffs.h"
#include "api/input.h"
#include "api/jobs.h"
#include "api/parse.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/resource.h"
#include "api/snapshots.h"
#include "diff/diff.h"
#include "store/store.h"

#define VERSION_JSON                                                            \
        "json_build_object('snapshot_id', v.snapshot_id, 'version', v.version," \
        " 'content_sha256', v.content_sha256, 'size_bytes', v.size_bytes,"      \
        " 'virtual_size', v.virtual_size, 'datacenter_id', v.datacenter_id,"    \
        " 'created_at', homing_time(v.created_at))"

enum MHD_Result api_versions_list(struct request *req) {
        return api_snapshot_page(req,
                                 "SELECT v.version, " VERSION_JSON "::text FROM snapshot_versions v"
                                 " WHERE v.snapshot_id = $1"
                                 "   AND ($2::bigint IS NULL OR v.version > $2::bigint)"
                                 " ORDER BY v.version LIMIT $3::int");
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

/*
 * The disk diff of versions `from` and `to`: the one asked before (queued,
 * running, failed with why, or succeeded with its extents), or a new one
 * queued for the agent of the snapshot's active datacenter. *out is NULL
 * when the snapshot is active nowhere. 0, or <0 when PostgreSQL failed.
 */
static int disk_diff(struct request *req, const char *id, const char *from, const char *to,
                     json_t **out) {
        const char *params[3] = { id, from, to };
        struct store_result *res = NULL;
        int r = api_exec(
                req,
                "WITH asked AS ("
                "  INSERT INTO disk_diffs (snapshot_id, from_version, to_version, datacenter_id)"
                "  SELECT $1, $2::bigint, $3::bigint, p.datacenter_id FROM placements p"
                "  WHERE p.snapshot_id = $1 AND p.active"
                "  ON CONFLICT (snapshot_id, from_version, to_version) DO NOTHING"
                "  RETURNING *)"
                " SELECT (jsonb_build_object('id', d.id, 'state', d.state,"
                "  'datacenter_id', d.datacenter_id, 'error', d.error)"
                "  || coalesce(d.result, '{}'))::text"
                " FROM (SELECT * FROM asked UNION ALL SELECT * FROM disk_diffs"
                "       WHERE snapshot_id = $1 AND from_version = $2::bigint"
                "         AND to_version = $3::bigint) d",
                3, params, &res);

        *out = r == 0 && store_rows(res) ? json_loads(store_text(res, 0, 0), 0, NULL) : NULL;
        store_result_free(res);
        return r;
}

enum MHD_Result api_versions_diff(struct request *req) {
        const char *id = api_param(req, 0), *from = NULL, *to = NULL;
        struct store_result *res = NULL;
        const char *files_arg = api_query(req, "files");
        json_t *row[2] = { NULL, NULL }, *changes = NULL, *patch = NULL, *disk = NULL;
        json_t *files = NULL, *doc;
        enum MHD_Result ret;
        char what[200];

        if (!version_arg(req, "from", &from, &ret) || !version_arg(req, "to", &to, &ret))
                return ret;
        if (files_arg && strcmp(files_arg, "true") && strcmp(files_arg, "false"))
                return api_reply_problem(req, 400, "invalid-query", "Invalid query",
                                         "files is true or false", NULL);
        if (api_snapshot_exists(req, id, &ret) <= 0)
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
        if (disk_diff(req, id, from, to, &disk) < 0 ||
            (files_arg && !strcmp(files_arg, "true") &&
             api_file_diff_ask(req, id, from, to, &files) < 0)) {
                json_decref(changes);
                json_decref(patch);
                json_decref(disk);
                ret = api_reply_db_error(req);
                goto out;
        }
        doc = json_pack("{s:s, s:I, s:I, s:[OO], s:{s:o, s:o}, s:o}", "snapshot_id", id, "from",
                        (json_int_t)strtoll(from, NULL, 10), "to",
                        (json_int_t)strtoll(to, NULL, 10), "versions", row[0], row[1], "config",
                        "changes", changes, "patch", patch, "disk", disk ? disk : json_null());
        /* The file part only when asked: its job opens both images in an appliance. */
        if (doc && files_arg && !strcmp(files_arg, "true"))
                json_object_set_new(doc, "files", files ? files : json_null());
        else
                json_decref(files);
        ret = api_reply_json(req, 200, doc);
out:
        json_decref(row[0]);
        json_decref(row[1]);
        return ret;
}

/* ---- compositions ------------------------------------------------------------------- */

#define COMPOSITION_JSON                                                                     \
        "json_build_object('id', c.id, 'snapshot_id', c.snapshot_id,"                        \
        " 'datacenter_id', c.datacenter_id, 'base', c.base_version, 'from', c.from_version," \
        " 'config', to_json(c.config_paths), 'disk_extents', c.disk_extents,"                \
        " 'whole_disk', c.whole_disk, 'files', to_json(c.guest_files),"                      \
        " 'state', c.state, 'version', c.version,"                                           \
        " 'error', c.error, 'requested_by', c.requested_by,"                                 \
        " 'created_at', homing_time(c.created_at), 'updated_at', homing_time(c.updated_at))"

const struct api_field api_compose_fields[] = {
        { "base", FIELD_INTEGER, true, false, 1, 9.0e15 },
        { "from", FIELD_INTEGER, true, false, 1, 9.0e15 },
        { "config", FIELD_ARRAY, false, false, 0, 1000 },
        { "disk_extents", FIELD_ARRAY, false, false, 0, 100000 },
        { "whole_disk", FIELD_BOOLEAN, false, false, 0, 0 },
        { "files", FIELD_ARRAY, false, false, 0, 1000 },
        { NULL, 0, false, false, 0, 0 },
};

/* The snapshot a composition is asked of, locked; column 1 its active datacenter. */
const struct api_resource api_compose_snapshot_resource = {
        "snapshot",
        "/v1/snapshots",
        NULL,
        "SELECT s.id, (SELECT p.datacenter_id FROM placements p"
        "   WHERE p.snapshot_id = s.id AND p.active)"
        " FROM snapshots s WHERE s.id = $1 FOR UPDATE",
        false,
        NULL,
        NULL,
};

const struct api_resource api_composition_resource = {
        "composition",
        "/v1/compositions",
        "SELECT (extract(epoch FROM c.updated_at) * 1e6)::bigint, " COMPOSITION_JSON
        "::text FROM compositions c WHERE c.id = $1::bigint",
        NULL,
        false,
        api_serial_id_valid,
        NULL,
};

/*
 * The end of a write to composition `cid` of snapshot `snapshot`: the event
 * (its data {"snapshot_id", "composition"} and `extra`'s members, taken),
 * with the snapshot as subject, then commit and answer the composition.
 */
static enum MHD_Result composition_commit(struct request *req, const char *snapshot,
                                          const char *cid, unsigned status, const char *type,
                                          json_t *extra) {
        const char *params[1] = { cid };
        struct store_result *res = NULL;
        json_t *data = extra ? extra : json_object();
        enum MHD_Result ret;

        if (api_fetch_one(req, api_composition_resource.select_one, 1, params, &res) <= 0) {
                json_decref(data);
                return api_reply_db_error(req);
        }
        json_object_set_new(data, "snapshot_id", json_string(snapshot));
        json_object_set_new(data, "composition", json_loads(store_text(res, 0, 1), 0, NULL));
        if (api_audit(req, type, snapshot, data) < 0 || api_commit(req) < 0)
                ret = api_reply_db_error(req);
        else
                ret = api_reply_row(req, status, res, NULL);
        store_result_free(res);
        return ret;
}

enum MHD_Result api_compositions_get(struct request *req) {
        if (!api_serial_id_valid(api_param(req, 0)))
                return api_reply_not_found(req, "composition", api_param(req, 0));
        return api_reply_one(req, &api_composition_resource, api_param(req, 0));
}

/* The registered version `v` of the snapshot: its configuration and disk size, or NULL. */
static json_t *registered(const struct store_result *res, long long v) {
        for (size_t i = 0; i < store_rows(res); i++)
                if (store_int(res, i, 0) == v)
                        return json_pack("{s:o, s:I}", "config",
                                         json_loads(store_text(res, i, 1), 0, NULL), "virtual_size",
                                         (json_int_t)store_int(res, i, 2));
        return NULL;
}

/*
 * The chosen extents: objects {offset, length} of whole blocks inside the
 * disk. True, or false after answering 422 naming the one refused.
 */
static bool extents_valid(struct request *req, const json_t *extents, uint64_t size,
                          enum MHD_Result *ret) {
        size_t i;
        json_t *e;
        char pointer[48];

        json_array_foreach(extents, i, e) {
                json_t *o = json_object_get(e, "offset"), *l = json_object_get(e, "length");
                const char *why = NULL;
                json_int_t off = json_integer_value(o), len = json_integer_value(l);

                snprintf(pointer, sizeof(pointer), "/disk_extents/%zu", i);
                if (!json_is_object(e) || json_object_size(e) != 2 || !json_is_integer(o) ||
                    !json_is_integer(l))
                        why = "is an object {\"offset\", \"length\"} of two whole numbers (bytes)";
                else if (off < 0 || len <= 0 || off % IMAGE_BLOCK || len % IMAGE_BLOCK)
                        why = "is not whole blocks of 4096 bytes";
                else if ((uint64_t)off >= size || (uint64_t)len > size - (uint64_t)off)
                        why = "lies outside the disk";
                if (why) {
                        *ret = api_reply_invalid(req, pointer, why);
                        return false;
                }
        }
        return true;
}

enum MHD_Result api_versions_compose(struct request *req) {
        const char *id = api_param(req, 0), *dc = store_text(req->locked, 0, 1);
        json_t *body = req->input, *paths = json_object_get(body, "config");
        json_t *extents = json_object_get(body, "disk_extents"), *base = NULL, *from = NULL;
        json_t *config = NULL, *files = json_object_get(body, "files");
        bool whole = json_is_true(json_object_get(body, "whole_disk"));
        long long vb = json_integer_value(json_object_get(body, "base"));
        long long vf = json_integer_value(json_object_get(body, "from"));
        struct store_result *res = NULL;
        const char **pointers = NULL;
        char sb[24], sf[24], pointer[48], detail[200];
        size_t n = json_array_size(paths), bad = 0;
        enum MHD_Result ret;
        int r;

        snprintf(sb, sizeof(sb), "%lld", vb);
        snprintf(sf, sizeof(sf), "%lld", vf);
        if (!n && !json_array_size(extents) && !whole && !json_array_size(files)) {
                ret = api_reply_invalid(req, "/config",
                                        "choose at least one item: config, disk_extents, "
                                        "whole_disk or files");
                goto out;
        }
        for (size_t i = 0; i < json_array_size(files); i++)
                if (!diff_file_item_valid(json_string_value(json_array_get(files, i)))) {
                        snprintf(pointer, sizeof(pointer), "/files/%zu", i);
                        ret = api_reply_invalid(req, pointer,
                                                "is not a guest file: [/dev/sdaN:]/absolute/path "
                                                "without . or .. steps");
                        goto out;
                }
        {
                const char *params[3] = { id, sb, sf };
                if (api_exec(req,
                             "SELECT version, config::text, virtual_size FROM snapshot_versions"
                             " WHERE snapshot_id = $1 AND version IN ($2::bigint, $3::bigint)",
                             3, params, &res) < 0) {
                        ret = api_reply_db_error(req);
                        goto out;
                }
        }
        base = registered(res, vb);
        from = registered(res, vf);
        if (!base || !from) {
                snprintf(detail, sizeof(detail), "is not a registered version of snapshot %s", id);
                ret = api_reply_invalid(req, base ? "/from" : "/base", detail);
                goto out;
        }
        if (json_integer_value(json_object_get(base, "virtual_size")) !=
            json_integer_value(json_object_get(from, "virtual_size"))) {
                ret = api_reply_invalid(req, "/from", "has another disk size than the base");
                goto out;
        }
        pointers = calloc(n + 1, sizeof(*pointers));
        for (size_t i = 0; pointers && i < n; i++)
                if (!(pointers[i] = json_string_value(json_array_get(paths, i)))) {
                        snprintf(pointer, sizeof(pointer), "/config/%zu", i);
                        ret = api_reply_invalid(req, pointer, "must be a string");
                        goto out;
                }
        r = pointers ? diff_config_take(json_object_get(base, "config"),
                                        json_object_get(from, "config"), pointers, n, &config, &bad)
                     : -ENOMEM;
        if (r < 0) {
                snprintf(pointer, sizeof(pointer), "/config/%zu", bad);
                ret = r == -ENOMEM
                              ? api_reply_db_error(req)
                              : api_reply_invalid(req, pointer,
                                                  r == -EINVAL ? "is not a JSON Pointer (RFC 6901)"
                                                  : r == -ENOENT
                                                          ? "names an item of neither version"
                                                          : "names an item whose parent the "
                                                            "base lacks: take the parent");
                goto out;
        }
        if (!extents_valid(req, extents,
                           (uint64_t)json_integer_value(json_object_get(base, "virtual_size")),
                           &ret))
                goto out;
        if (!dc) {
                ret = api_reply_conflict(req, "no-active-placement",
                                         "the snapshot is active nowhere: its agent composes");
                goto out;
        }
        {
                char *cfg = paths ? json_dumps(paths, JSON_COMPACT) : strdup("[]");
                char *ext = extents ? json_dumps(extents, JSON_COMPACT) : strdup("[]");
                char *gf = files ? json_dumps(files, JSON_COMPACT) : strdup("[]");
                const char *params[9] = {
                        id, dc, sb, sf, cfg, ext, whole ? "true" : "false", req->who.name, gf
                };
                store_result_free(res);
                res = NULL;
                r = cfg && ext && gf
                            ? api_exec(req,
                                       "INSERT INTO compositions (snapshot_id, datacenter_id,"
                                       " base_version, from_version, config_paths,"
                                       " disk_extents, whole_disk, requested_by, guest_files)"
                                       " SELECT $1, $2, $3::bigint, $4::bigint,"
                                       "  ARRAY(SELECT jsonb_array_elements_text($5::jsonb)),"
                                       "  $6::jsonb, $7::boolean, $8,"
                                       "  ARRAY(SELECT jsonb_array_elements_text($9::jsonb))"
                                       " RETURNING id::text",
                                       9, params, &res)
                            : -ENOMEM;
                free(cfg);
                free(ext);
                free(gf);
        }
        if (r < 0) {
                ret = api_reply_db_error(req);
                goto out;
        }
        ret = composition_commit(req, id, store_text(res, 0, 0), 202,
                                 "io.homing.snapshot.composition_requested", NULL);
out:
        free(pointers);
        store_result_free(res);
        json_decref(base);
        json_decref(from);
        json_decref(config);
        return ret;
}

/* ---- what agents call ----------------------------------------------------------------- */

const struct api_field api_agent_composition_claim_fields[] = { { NULL, 0, false, false, 0, 0 } };

const struct api_field api_agent_composition_succeeded_fields[] = {
        { "version", FIELD_INTEGER, true, false, 1, 9.0e15 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_agent_composition_failed_fields[] = {
        { "error", FIELD_STRING, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

/* A composition at the calling agent's datacenter, locked: its state and snapshot. */
const struct api_resource api_agent_composition_resource = {
        "composition",
        "/v1/compositions",
        NULL,
        "SELECT c.state, c.snapshot_id FROM compositions c"
        " WHERE c.id = $1::bigint AND c.datacenter_id = $2 FOR UPDATE",
        true,
        api_serial_id_valid,
        NULL,
};

enum MHD_Result api_agent_composition_claim(struct request *req) {
        return api_job_claim(
                req, "UPDATE compositions c SET state = 'running', claimed_at = now(),"
                     " updated_at = now()" API_JOB_CLAIMABLE(
                             "compositions",
                             "c") " RETURNING json_build_object('composition_id', c.id,"
                                  "  'snapshot_id', c.snapshot_id, 'base', c.base_version,"
                                  "  'from', c.from_version, 'config', to_json(c.config_paths),"
                                  "  'disk_extents', c.disk_extents, 'whole_disk', c.whole_disk,"
                                  "  'files', to_json(c.guest_files),"
                                  "  'version', (SELECT s.version + 1 FROM snapshots s"
                                  "              WHERE s.id = c.snapshot_id))::text");
}

enum MHD_Result api_agent_composition_succeeded(struct request *req) {
        const char *cid = api_param(req, 0), *snapshot = store_text(req->locked, 0, 1);
        char version[24];
        struct store_result *res = NULL;
        enum MHD_Result ret;
        int r;

        if (!api_job_running(req, "composition", "composition", &ret))
                return ret;
        snprintf(version, sizeof(version), "%lld",
                 (long long)json_integer_value(json_object_get(req->input, "version")));
        {
                const char *params[4] = { cid, snapshot, version, req->who.datacenter_id };
                r = api_exec(
                        req,
                        "UPDATE compositions c SET state = 'succeeded', version = $3::bigint,"
                        " error = NULL, updated_at = now()"
                        " WHERE c.id = $1::bigint AND EXISTS (SELECT 1 FROM snapshot_versions v"
                        "   WHERE v.snapshot_id = $2 AND v.version = $3::bigint"
                        "     AND v.datacenter_id = $4)",
                        4, params, &res);
        }
        if (r < 0)
                return api_reply_db_error(req);
        r = store_changed(res) == 1;
        store_result_free(res);
        if (!r)
                return api_reply_invalid(req, "/version",
                                         "is not a version this datacenter registered for the "
                                         "snapshot: register it first");
        return composition_commit(req, snapshot, cid, 200, "io.homing.snapshot.version_composed",
                                  json_pack("{s:s}", "datacenter_id", req->who.datacenter_id));
}

enum MHD_Result api_agent_composition_failed(struct request *req) {
        const char *cid = api_param(req, 0), *snapshot = store_text(req->locked, 0, 1);
        const char *params[2] = { cid, json_string_value(json_object_get(req->input, "error")) };
        enum MHD_Result ret;

        if (!api_job_running(req, "composition", "composition", &ret))
                return ret;
        if (api_exec(req,
                     "UPDATE compositions SET state = 'failed', error = $2, updated_at = now()"
                     " WHERE id = $1::bigint",
                     2, params, NULL) < 0)
                return api_reply_db_error(req);
        return composition_commit(req, snapshot, cid, 200, "io.homing.snapshot.composition_failed",
                                  json_pack("{s:s}", "datacenter_id", req->who.datacenter_id));
}

/* ---- disk diffs, at the agent --------------------------------------------------------- */

const struct api_field api_agent_disk_diff_claim_fields[] = { { NULL, 0, false, false, 0, 0 } };

const struct api_field api_agent_disk_diff_succeeded_fields[] = {
        { "disk", FIELD_OBJECT, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

/* A disk diff at the calling agent's datacenter, locked: its state. */
const struct api_resource api_agent_disk_diff_resource = {
        "disk diff",
        "/v1/snapshots",
        NULL,
        "SELECT d.state FROM disk_diffs d WHERE d.id = $1::bigint AND d.datacenter_id = $2"
        " FOR UPDATE",
        true,
        api_serial_id_valid,
        NULL,
};

enum MHD_Result api_agent_disk_diff_claim(struct request *req) {
        return api_job_claim(req,
                             "UPDATE disk_diffs d SET state = 'running', claimed_at = now(),"
                             " updated_at = now()" API_JOB_CLAIMABLE(
                                     "disk_diffs",
                                     "d") " RETURNING json_build_object('disk_diff_id', d.id,"
                                          "  'snapshot_id', d.snapshot_id, 'from', d.from_version,"
                                          "  'to', d.to_version)::text");
}

/* Ends the locked disk diff: `result` (JSON text) or `error`. */
static enum MHD_Result disk_diff_end(struct request *req, const char *result, const char *error) {
        const char *params[3] = { api_param(req, 0), result, error };
        enum MHD_Result ret;

        if (!api_job_running(req, "disk-diff", "disk diff", &ret))
                return ret;
        if (api_exec(req,
                     "UPDATE disk_diffs SET state = CASE WHEN $2::jsonb IS NULL THEN 'failed'"
                     " ELSE 'succeeded' END, result = $2::jsonb, error = $3, updated_at = now()"
                     " WHERE id = $1::bigint",
                     3, params, NULL) < 0 ||
            api_commit(req) < 0)
                return api_reply_db_error(req);
        ret = api_reply_json(req, 200,
                             json_pack("{s:s, s:s}", "id", api_param(req, 0), "state",
                                       result ? "succeeded" : "failed"));
        return ret;
}

enum MHD_Result api_agent_disk_diff_succeeded(struct request *req) {
        json_t *disk = json_object_get(req->input, "disk");
        const char *keep[] = { "virtual_size", "changed_bytes", "template_blocks_read", "extents" };
        json_t *result = json_object();
        char *text;
        enum MHD_Result ret;

        /* Only what a disk diff says, checked for its types. */
        for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
                json_t *v = json_object_get(disk, keep[i]);
                if (i < 3 ? !json_is_integer(v) || json_integer_value(v) < 0 : !json_is_array(v)) {
                        json_decref(result);
                        return api_reply_invalid(req, "/disk",
                                                 "is a disk diff: virtual_size, "
                                                 "changed_bytes, "
                                                 "template_blocks_read, extents");
                }
                json_object_set(result, keep[i], v);
        }
        text = json_dumps(result, JSON_COMPACT);
        json_decref(result);
        ret = text ? disk_diff_end(req, text, NULL) : api_reply_db_error(req);
        free(text);
        return ret;
}

enum MHD_Result api_agent_disk_diff_failed(struct request *req) {
        return disk_diff_end(req, NULL, json_string_value(json_object_get(req->input, "error")));
}
