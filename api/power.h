/*
 * power — /v1/agent/vms: what should run at the agent's datacenter, and
 * its fenced reports of powering VMs on and off; a failover test's
 * throwaway VMs and their reports.
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

/* A failover test's throwaway VMs (the rehearsal's): the VM locked, the report's body. */
extern const struct api_resource api_power_test_vm_resource;
extern const struct api_field api_power_test_fields[];
/* POST /v1/agent/failover-tests/vms/{id}: 200; the test is cleaned once none runs. */
enum MHD_Result api_power_test_report(struct request *req);
