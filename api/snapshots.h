/*
 * snapshots — /v1/snapshots, their placements and decisions.
 */
#pragma once

#include <microhttpd.h>

struct request;

enum MHD_Result api_snapshots_list(struct request *req);
enum MHD_Result api_snapshots_get(struct request *req);
enum MHD_Result api_snapshots_create(struct request *req);
enum MHD_Result api_snapshots_update(struct request *req);
enum MHD_Result api_snapshots_delete(struct request *req);
enum MHD_Result api_snapshots_placement(struct request *req);
enum MHD_Result api_snapshots_placements(struct request *req);
enum MHD_Result api_snapshots_decisions(struct request *req);
