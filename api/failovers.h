/*
 * failovers — /v1/failovers, what became of a down site's snapshots, and
 * /v1/snapshots/{id}/restore, where a user's next restore comes from.
 */
#pragma once

#include <microhttpd.h>

#include "api/resource.h"

struct request;

/* What the failback route locks (router.c). */
extern const struct api_resource api_failover_resource;

enum MHD_Result api_failovers_list(struct request *req);
enum MHD_Result api_failovers_get(struct request *req);
enum MHD_Result api_failovers_snapshots(struct request *req);
enum MHD_Result api_failovers_failback(struct request *req);
enum MHD_Result api_snapshots_restore(struct request *req);
