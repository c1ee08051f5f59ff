/*
 * snapshots — /v1/snapshots, their placements and decisions.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "api/input.h"

struct request;

/* What the routes of /v1/snapshots declare (router.c): the resource, the bodies. */
extern const struct api_resource api_snapshot_resource;
extern const struct api_field api_snapshot_fields[];       /* POST */
extern const struct api_field api_snapshot_patch_fields[]; /* PATCH */
bool api_snapshot_valid(struct request *req, enum MHD_Result *reply);

enum MHD_Result api_snapshots_list(struct request *req);
enum MHD_Result api_snapshots_get(struct request *req);
enum MHD_Result api_snapshots_create(struct request *req);
enum MHD_Result api_snapshots_update(struct request *req);
enum MHD_Result api_snapshots_delete(struct request *req);
enum MHD_Result api_snapshots_placement(struct request *req);
enum MHD_Result api_snapshots_placements(struct request *req);
enum MHD_Result api_snapshots_decisions(struct request *req);
enum MHD_Result api_snapshots_replicas(struct request *req);
