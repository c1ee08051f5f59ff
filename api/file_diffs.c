/*
 * File diffs: which guest files differ between two versions of a snapshot.
 * Only the agent of the snapshot's active datacenter holds both images,
 * and opening them takes a libguestfs appliance tens of seconds, so a GET
 * of the diff with files=true queues a job there (once per pair), the
 * agent claims it, says its phase and percent as it goes, and posts the
 * file list, or why it could not: `unavailable` when libguestfs cannot run
 * at that agent, which GET /v1/file-diffs/{id} answers as a 501 problem
 * naming libguestfs (the configuration and disk diffs do not need it).
 */
#include "api/file_diffs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jobs.h"
#include "api/parse.h"
#include "api/pool.h"
#include "api/reply.h"
#include "api/request.h"
#include "api/resource.h"
#include "store/store.h"

#define FILE_DIFF_SUMMARY                                                    \
        "jsonb_build_object('id', d.id, 'state', d.state, 'phase', d.phase," \
        " 'progress', d.progress, 'datacenter_id', d.datacenter_id,"         \
        " 'unavailable', d.unavailable, 'error', d.error,"                   \
        " 'href', '/v1/file-diffs/' || d.id)"

int api_file_diff_ask(struct request *req, const char *id, const char *from, const char *to,
                      json_t **out) {
        const char *params[3] = { id, from, to };
        struct store_result *res = NULL;
        int r = api_exec(
                req,
                "WITH asked AS ("
                "  INSERT INTO file_diffs (snapshot_id, from_version, to_version, datacenter_id)"
                "  SELECT $1, $2::bigint, $3::bigint, p.datacenter_id FROM placements p"
                "  WHERE p.snapshot_id = $1 AND p.active"
                "  ON CONFLICT (snapshot_id, from_version, to_version) DO UPDATE"
                "  SET state = 'queued', phase = NULL, progress = 0, error = NULL,"
                "      unavailable = false, claimed_at = NULL, updated_at = now(),"
                "      datacenter_id = EXCLUDED.datacenter_id"
                "  WHERE file_diffs.state = 'failed'"
                "    AND file_diffs.updated_at < now() - interval '1 minute'"
                "  RETURNING *)"
                " SELECT (" FILE_DIFF_SUMMARY ")::text FROM ("
                "  SELECT 0 AS k, * FROM asked UNION ALL SELECT 1, * FROM file_diffs"
                "  WHERE snapshot_id = $1 AND from_version = $2::bigint"
                "    AND to_version = $3::bigint) d ORDER BY d.k LIMIT 1",
                3, params, &res);

        *out = r == 0 && store_rows(res) ? json_loads(store_text(res, 0, 0), 0, NULL) : NULL;
        store_result_free(res);
        return r;
}

enum MHD_Result api_file_diffs_get(struct request *req) {
        const char *params[1] = { api_param(req, 0) };
        struct store_result *res = NULL;
        enum MHD_Result ret;
        json_t *job;
        char detail[600];

        if (!api_serial_id_valid(params[0]))
                return api_reply_not_found(req, "file diff", params[0]);
        if (api_exec(req,
                     "SELECT json_build_object('id', d.id, 'snapshot_id', d.snapshot_id,"
                     " 'from', d.from_version, 'to', d.to_version,"
                     " 'datacenter_id', d.datacenter_id, 'state', d.state, 'phase', d.phase,"
                     " 'progress', d.progress, 'unavailable', d.unavailable, 'error', d.error,"
                     " 'result', d.result, 'created_at', homing_time(d.created_at),"
                     " 'updated_at', homing_time(d.updated_at))::text"
                     " FROM file_diffs d WHERE d.id = $1::bigint",
                     1, params, &res) < 0) {
                store_result_free(res);
                return api_reply_db_error(req);
        }
        if (!store_rows(res)) {
                store_result_free(res);
                return api_reply_not_found(req, "file diff", params[0]);
        }
        job = json_loads(store_text(res, 0, 0), 0, NULL);
        store_result_free(res);
        if (!job)
                return api_reply_db_error(req);
        if (!json_is_true(json_object_get(job, "unavailable")))
                return api_reply_json(req, 200, job);
        snprintf(detail, sizeof(detail),
                 "libguestfs (Debian: libguestfs-tools) cannot run at the agent of datacenter "
                 "%s, so its guest files cannot be compared there: %s. The configuration and "
                 "disk diffs do not need it.",
                 json_string_value(json_object_get(job, "datacenter_id")),
                 json_string_value(json_object_get(job, "error")));
        ret = api_reply_problem(req, 501, "guest-files-unavailable",
                                "Guest files cannot be compared", detail,
                                json_pack("{s:o, s:s}", "file_diff", job, "missing", "libguestfs"));
        return ret;
}

/* ---- at the agent --------------------------------------------------------------------- */

const struct api_field api_agent_file_diff_progress_fields[] = {
        { "phase", FIELD_STRING, true, false, 0, 0 },
        { "percent", FIELD_COUNT, true, false, 0, 100 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_agent_file_diff_succeeded_fields[] = {
        { "files", FIELD_OBJECT, true, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

const struct api_field api_agent_file_diff_failed_fields[] = {
        { "error", FIELD_STRING, true, false, 0, 0 },
        { "unavailable", FIELD_BOOLEAN, false, false, 0, 0 },
        { NULL, 0, false, false, 0, 0 },
};

/* A file diff at the calling agent's datacenter, locked: its state. */
const struct api_resource api_agent_file_diff_resource = {
        "file diff",
        "/v1/file-diffs",
        NULL,
        "SELECT d.state FROM file_diffs d WHERE d.id = $1::bigint AND d.datacenter_id = $2"
        " FOR UPDATE",
        true,
        api_serial_id_valid,
        NULL,
};

enum MHD_Result api_agent_file_diff_claim(struct request *req) {
        return api_job_claim(
                req,
                "UPDATE file_diffs d SET state = 'running', claimed_at = now(),"
                " phase = 'claimed', progress = 0, updated_at = now()" API_JOB_CLAIMABLE(
                        "file_diffs", "d") " RETURNING json_build_object('file_diff_id', d.id,"
                                           "  'snapshot_id', d.snapshot_id, 'from', d.from_version,"
                                           "  'to', d.to_version)::text");
}

/* Runs `sql` ($1 the id, then n of a and b) on the locked, running file diff and commits. */
static enum MHD_Result file_diff_write(struct request *req, const char *sql, int n, const char *a,
                                       const char *b, const char *state) {
        const char *params[3] = { api_param(req, 0), a, b };
        enum MHD_Result ret;

        if (!api_job_running(req, "file-diff", "file diff", &ret))
                return ret;
        if (api_exec(req, sql, 1 + n, params, NULL) < 0 || api_commit(req) < 0)
                return api_reply_db_error(req);
        return api_reply_json(req, 200,
                              json_pack("{s:s, s:s}", "id", api_param(req, 0), "state", state));
}

enum MHD_Result api_agent_file_diff_progress(struct request *req) {
        char percent[16];

        snprintf(percent, sizeof(percent), "%lld",
                 (long long)json_integer_value(json_object_get(req->input, "percent")));
        return file_diff_write(req,
                               "UPDATE file_diffs SET phase = $2, progress = $3::int,"
                               " updated_at = now() WHERE id = $1::bigint",
                               2, json_string_value(json_object_get(req->input, "phase")), percent,
                               "running");
}

enum MHD_Result api_agent_file_diff_succeeded(struct request *req) {
        json_t *files = json_object_get(req->input, "files");
        const char *counts[] = { "added", "removed", "changed" };
        enum MHD_Result ret;
        char *text;

        /* What a file diff says, checked for its shape. */
        for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
                json_t *v = json_object_get(files, counts[i]);
                if (!json_is_integer(v) || json_integer_value(v) < 0)
                        return api_reply_invalid(req, "/files",
                                                 "is a file diff: filesystems, added, removed, "
                                                 "changed, truncated, files");
        }
        if (!json_is_array(json_object_get(files, "files")) ||
            !json_is_array(json_object_get(files, "filesystems")) ||
            !json_is_boolean(json_object_get(files, "truncated")))
                return api_reply_invalid(req, "/files",
                                         "is a file diff: filesystems, added, removed, changed, "
                                         "truncated, files");
        text = json_dumps(files, JSON_COMPACT);
        if (!text)
                return api_reply_db_error(req);
        ret = file_diff_write(req,
                              "UPDATE file_diffs SET state = 'succeeded', result = $2::jsonb,"
                              " phase = 'done', progress = 100, updated_at = now()"
                              " WHERE id = $1::bigint",
                              1, text, NULL, "succeeded");
        free(text);
        return ret;
}

enum MHD_Result api_agent_file_diff_failed(struct request *req) {
        return file_diff_write(
                req,
                "UPDATE file_diffs SET state = 'failed', error = $2, unavailable = $3::boolean,"
                " updated_at = now() WHERE id = $1::bigint",
                2, json_string_value(json_object_get(req->input, "error")),
                json_is_true(json_object_get(req->input, "unavailable")) ? "true" : "false",
                "failed");
}
