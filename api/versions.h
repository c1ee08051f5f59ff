/*
 * versions — a snapshot's registered versions, the diff of two of them, and
 * new versions composed of a base and chosen items of another.
 */
#pragma once

#include <microhttpd.h>

#include "api/input.h"

struct request;

/* What the routes declare (router.c): bodies and locked resources. */
extern const struct api_field api_compose_fields[];
extern const struct api_resource api_compose_snapshot_resource;
extern const struct api_resource api_composition_resource;
extern const struct api_field api_agent_composition_claim_fields[];
extern const struct api_field api_agent_composition_succeeded_fields[];
extern const struct api_field api_agent_composition_failed_fields[];
extern const struct api_resource api_agent_composition_resource;
extern const struct api_field api_agent_disk_diff_claim_fields[];
extern const struct api_field api_agent_disk_diff_succeeded_fields[];
extern const struct api_resource api_agent_disk_diff_resource;

/* GET /v1/snapshots/{id}/versions: a page of them, oldest first. */
enum MHD_Result api_versions_list(struct request *req);
/*
 * GET /v1/snapshots/{id}/diff?from=&to=: what differs between two of them;
 * the disk part is queued for the agent on the first GET of a pair.
 */
enum MHD_Result api_versions_diff(struct request *req);
/*
 * POST /v1/snapshots/{id}/versions (operator): 202 and the composition,
 * queued for the agent of the snapshot's active datacenter; 422 for a
 * version this snapshot has not registered, a configuration path that is
 * not a JSON Pointer or names nothing, an extent outside the disk or not
 * whole blocks, nothing chosen; 409 when the snapshot is active nowhere.
 */
enum MHD_Result api_versions_compose(struct request *req);
/* GET /v1/compositions/{id}. */
enum MHD_Result api_compositions_get(struct request *req);
/* POST /v1/agent/compositions/claim: 200 the next one here (running now), or 204. */
enum MHD_Result api_agent_composition_claim(struct request *req);
/* POST /v1/agent/compositions/{id}/succeeded {version}: ended with a version it registered. */
enum MHD_Result api_agent_composition_succeeded(struct request *req);
/* POST /v1/agent/compositions/{id}/failed {error}. */
enum MHD_Result api_agent_composition_failed(struct request *req);
/* POST /v1/agent/diffs/claim: 200 the next disk diff to compute here (running now), or 204. */
enum MHD_Result api_agent_disk_diff_claim(struct request *req);
/* POST /v1/agent/diffs/{id}/succeeded {disk} and /failed {error}: the end of one. */
enum MHD_Result api_agent_disk_diff_succeeded(struct request *req);
enum MHD_Result api_agent_disk_diff_failed(struct request *req);
