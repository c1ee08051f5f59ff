/*
 * datacenters — /v1/datacenters, the catalog of sites.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "api/input.h"
#include <stdbool.h>

struct request;

/* What the routes of /v1/datacenters declare (router.c): the resource, the bodies, their checks. */
extern const struct api_resource api_datacenter_resource;
extern const struct api_field api_datacenter_fields[];        /* POST */
extern const struct api_field api_datacenter_patch_fields[];  /* PATCH */
extern const struct api_field api_datacenter_status_fields[]; /* PUT .../status */
/* The id's form, the status's and the country code's, when the body has them. */
bool api_datacenter_valid(struct request *req, enum MHD_Result *reply);

enum MHD_Result api_datacenters_list(struct request *req);
enum MHD_Result api_datacenters_nearest(struct request *req);
enum MHD_Result api_datacenters_get(struct request *req);
enum MHD_Result api_datacenters_create(struct request *req);
enum MHD_Result api_datacenters_update(struct request *req);
enum MHD_Result api_datacenters_delete(struct request *req);
enum MHD_Result api_datacenters_set_status(struct request *req);
