/*
 * evacuations — planned evacuations of a datacenter: plans (dry runs),
 * execution, cancel, progress per priority level.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "api/input.h"

struct request;

/* What the routes declare (router.c): the evacuation locked, the create's body and its check. */
extern const struct api_resource api_evacuation_resource;
extern const struct api_field api_evacuation_fields[];
bool api_evacuation_valid(struct request *req, enum MHD_Result *reply);

enum MHD_Result api_evacuations_create(struct request *req);
enum MHD_Result api_evacuations_execute(struct request *req);
enum MHD_Result api_evacuations_cancel(struct request *req);
enum MHD_Result api_evacuations_get(struct request *req);
enum MHD_Result api_evacuations_list(struct request *req);
