/*
 * zones — /v1/zones, residency zones.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "api/input.h"
#include <stdbool.h>

struct request;

/* What the routes of /v1/zones declare (router.c): the resource, the body, its check. */
extern const struct api_resource api_zone_resource;
extern const struct api_field api_zone_fields[];
bool api_zone_valid(struct request *req, enum MHD_Result *reply);

enum MHD_Result api_zones_list(struct request *req);
enum MHD_Result api_zones_get(struct request *req);
enum MHD_Result api_zones_put(struct request *req);
enum MHD_Result api_zones_delete(struct request *req);
