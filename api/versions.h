/*
 * versions — a snapshot's registered versions and the diff of two of them.
 */
#pragma once

#include <microhttpd.h>

struct request;

/* GET /v1/snapshots/{id}/versions: a page of them, oldest first. */
enum MHD_Result api_versions_list(struct request *req);
/* GET /v1/snapshots/{id}/diff?from=&to=: what differs between two of them. */
enum MHD_Result api_versions_diff(struct request *req);
