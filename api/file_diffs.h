/*
 * file_diffs — the guest files that differ between two versions of a
 * snapshot: a job for the agent of the snapshot's active datacenter (a
 * libguestfs appliance takes tens of seconds), asked by GET
 * /v1/snapshots/{id}/diff?files=true and answered by GET
 * /v1/file-diffs/{id}, with its phase and progress while it runs.
 */
#pragma once

#include <jansson.h>
#include <microhttpd.h>

#include "api/input.h"

struct request;

/* What the routes declare (router.c): bodies and locked resources. */
extern const struct api_field api_agent_file_diff_progress_fields[];
extern const struct api_field api_agent_file_diff_succeeded_fields[];
extern const struct api_field api_agent_file_diff_failed_fields[];
extern const struct api_resource api_agent_file_diff_resource;

/*
 * The file diff of versions `from` and `to` of snapshot `id` (both
 * registered): queued at the snapshot's active datacenter on the first ask,
 * and again when it failed more than a minute ago. *out: a new summary
 * {"id", "state", "phase", "progress", "datacenter_id", "unavailable",
 * "error", "href"}, or NULL when the snapshot is active nowhere. 0, or <0
 * when PostgreSQL failed.
 */
int api_file_diff_ask(struct request *req, const char *id, const char *from, const char *to,
                      json_t **out);

/*
 * GET /v1/file-diffs/{id}: the job, with its result once it succeeded; 501
 * (problem guest-files-unavailable) when libguestfs could not run at its
 * agent.
 */
enum MHD_Result api_file_diffs_get(struct request *req);

/* POST /v1/agent/file-diffs/claim: 200 the next file diff to compute here (running now), or 204. */
enum MHD_Result api_agent_file_diff_claim(struct request *req);
/* POST /v1/agent/file-diffs/{id}/progress {phase, percent}: how far a running one is. */
enum MHD_Result api_agent_file_diff_progress(struct request *req);
/* POST /v1/agent/file-diffs/{id}/succeeded {files} and /failed {error, unavailable}. */
enum MHD_Result api_agent_file_diff_succeeded(struct request *req);
enum MHD_Result api_agent_file_diff_failed(struct request *req);
