/*
 * placement_reports — /v1/placement-reports: `homing replay --json`'s
 * figures stored under a name, for the dashboard's "Placement quality" page.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

struct request;

/* The largest report taken, more than --max-body-bytes: a sweep's figures outgrow other
 * writes (api/README.md has the sizes measured). Only operators may send one. */
#define API_PLACEMENT_REPORT_MAX_BYTES (4L << 20)

/* What the routes declare (router.c): the resource the delete locks, the body's check. */
extern const struct api_resource api_placement_report_resource;
bool api_placement_report_valid(struct request *req, enum MHD_Result *reply);

enum MHD_Result api_placement_reports_list(struct request *req);
enum MHD_Result api_placement_reports_get(struct request *req);
enum MHD_Result api_placement_reports_create(struct request *req);
enum MHD_Result api_placement_reports_delete(struct request *req);
