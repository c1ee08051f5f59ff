/*
 * templates — /v1/templates and their replicas.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "api/input.h"

struct request;

/* What the routes of /v1/templates declare (router.c): the resource, the bodies. */
extern const struct api_resource api_template_resource;
extern const struct api_field api_template_fields[];       /* POST */
extern const struct api_field api_template_patch_fields[]; /* PATCH */

enum MHD_Result api_templates_list(struct request *req);
enum MHD_Result api_templates_get(struct request *req);
enum MHD_Result api_templates_create(struct request *req);
enum MHD_Result api_templates_update(struct request *req);
enum MHD_Result api_templates_delete(struct request *req);
enum MHD_Result api_replicas_list(struct request *req);
enum MHD_Result api_replicas_put(struct request *req);
enum MHD_Result api_replicas_delete(struct request *req);
