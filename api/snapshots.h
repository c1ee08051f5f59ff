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

/* 1 when the snapshot `id` exists, 0 after answering 404, <0 after answering 503. */
int api_snapshot_exists(struct request *req, const char *id, enum MHD_Result *ret);

/*
 * A page of the rows of the path's snapshot (its first parameter): 400 on a
 * bad page, 404 when the snapshot is not there, else `sql` with $1 its id,
 * $2 the cursor's key (a number) and $3 limit+1, answered as
 * api_reply_page_query.
 */
enum MHD_Result api_snapshot_page(struct request *req, const char *sql);
