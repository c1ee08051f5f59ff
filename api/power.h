/*
 * power — /v1/agent/vms: what should run at the agent's datacenter, and
 * its fenced reports of powering VMs on and off.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "api/input.h"

struct request;

/* What the routes declare (router.c): the snapshot locked, the report's body and its check. */
extern const struct api_resource api_power_snapshot_resource;
extern const struct api_field api_power_fields[];
bool api_power_valid(struct request *req, enum MHD_Result *reply);

/* GET /v1/agent/vms */
enum MHD_Result api_power_list(struct request *req);
/* POST /v1/agent/vms/{id}/power: 201 the record, 409 when the fence refuses it. */
enum MHD_Result api_power_report(struct request *req);
