/*
 * zones — /v1/zones, residency zones.
 */
#pragma once

#include <microhttpd.h>

struct request;

enum MHD_Result api_zones_list(struct request *req);
enum MHD_Result api_zones_get(struct request *req);
enum MHD_Result api_zones_put(struct request *req);
enum MHD_Result api_zones_delete(struct request *req);
